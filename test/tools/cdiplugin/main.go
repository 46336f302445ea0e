// Command cdiplugin is a minimal Kubernetes device plugin for the kubelet
// lab (test/kubelet): it offers one device of a resource and answers
// Allocate with a CDI device name, which kubelet passes to the runtime in
// ContainerConfig.cdi_devices. That is how device plugins hand CDI
// devices to containers; the lab's crivet resolves the name from a spec
// file.
//
//	cdiplugin <device-plugin-dir> <resource> <cdi-device>
//	cdiplugin /var/lib/kubelet/device-plugins crivet.test/null crivet.test/dev=null0
//
// It registers with kubelet's socket in that directory, serves until
// killed, and registers again when kubelet restarts (kubelet removes the
// plugin sockets then).
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	cdiDevice string
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, s grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: []*pluginapi.Device{{ID: "dev0", Health: pluginapi.Healthy}}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			CdiDevices: []*pluginapi.CDIDevice{{Name: p.cdiDevice}},
		})
	}
	log.Printf("allocate: %d container(s) -> %s", len(req.ContainerRequests), p.cdiDevice)
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func register(dir, endpoint, resource string) error {
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: endpoint, ResourceName: resource, Options: &pluginapi.DevicePluginOptions{},
	})
	return err
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: cdiplugin <device-plugin-dir> <resource> <cdi-device>")
		os.Exit(2)
	}
	dir, resource, dev := os.Args[1], os.Args[2], os.Args[3]
	endpoint := "crivet-cdiplugin.sock"
	sock := filepath.Join(dir, endpoint)
	for {
		os.Remove(sock)
		l, err := net.Listen("unix", sock)
		if err != nil {
			log.Fatal(err)
		}
		srv := grpc.NewServer()
		pluginapi.RegisterDevicePluginServer(srv, &plugin{cdiDevice: dev})
		go srv.Serve(l)
		for err = register(dir, endpoint, resource); err != nil; err = register(dir, endpoint, resource) {
			log.Printf("register with kubelet: %v (retrying)", err)
			time.Sleep(time.Second)
		}
		log.Printf("registered %s as %s", resource, sock)
		// kubelet deletes plugin sockets when it restarts: register again.
		for {
			time.Sleep(2 * time.Second)
			if _, err := os.Stat(sock); err != nil {
				break
			}
		}
		srv.Stop()
	}
}
