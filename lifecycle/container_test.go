package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func wantLog(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// Every transition of the drawn state machine (state.go), through the
// lifecycle: created, running, exited, removed, each with its one event,
// and the plugins told of each step in order.
func TestContainerTransitions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.readyPod("p1", "team-a")
	c, err := e.m.CreateContainer(ctx, CreateRequest{PodID: "p1", Config: ctrConfig("web")})
	if err != nil {
		t.Fatal(err)
	}
	state := func() runtime.State {
		t.Helper()
		st, err := e.m.ContainerState(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.State
	}
	rec := e.pods.containers[c.ID]
	if rec.Phase != sandbox.Created || rec.ImageID != appImage.ID || rec.ImageRef != "reg/app:1" || state() != runtime.StateCreated {
		t.Fatalf("created: record %+v, state %s", rec, state())
	}
	if _, err := os.Stat(filepath.Join(e.m.bundle(c.ID), "config.json")); err != nil {
		t.Fatalf("created without a bundle: %v", err)
	}
	wantLog(t, "events after create", e.eventTypes(), "CREATED "+c.ID)

	if err := e.m.StartContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	if state() != runtime.StateRunning {
		t.Fatalf("started: %s", state())
	}
	if err := e.m.StartContainer(ctx, c); !errors.Is(err, ErrState) {
		t.Fatalf("second start: %v, want ErrState", err)
	}
	wantLog(t, "events after start", e.eventTypes(), "STARTED "+c.ID)

	if err := e.m.StopContainer(ctx, c, 0); err != nil {
		t.Fatal(err)
	}
	if state() != runtime.StateExited {
		t.Fatalf("stopped: %s", state())
	}
	if err := e.m.StopContainer(ctx, c, 0); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	wantLog(t, "events after two stops", e.eventTypes(), "STOPPED "+c.ID)

	if err := e.m.RemoveContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.nothingLeft(t, c.ID)
	wantLog(t, "events after remove", e.eventTypes(), "DELETED "+c.ID)
	if err := e.m.RemoveContainer(ctx, c); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	wantLog(t, "events after a second remove", e.eventTypes())
	// The second stop tells plugins again only that it stopped (they
	// count each container once, package nri).
	wantLog(t, "plugins", e.only("plugins."),
		"plugins.CreateContainer "+c.ID, "plugins.PostCreateContainer "+c.ID,
		"plugins.StartContainer "+c.ID, "plugins.PostStartContainer "+c.ID,
		"plugins.StopContainer "+c.ID, "plugins.StopContainer "+c.ID, "plugins.StopContainer "+c.ID,
		"plugins.RemoveContainer "+c.ID)
}

// A create that fails at any step leaves nothing behind, in reverse
// order of making, and frees the name: no record, storage container,
// image mount, bundle or runc state, no CREATED event; plugins that saw
// the create are told it is gone.
func TestCreateUndoesEveryStepThatFails(t *testing.T) {
	boom := errors.New("boom")
	for _, c := range []struct {
		step        string
		pluginsSaw  bool
		mountsTried bool
	}{
		{"pods.BeginContainer", false, false},
		{"images.CreateRootfs", false, false},
		{"images.MountImage sha256:vola", false, true},
		{"images.RunConfig", false, true},
		{"plugins.CreateContainer", false, true},
		{"rt.Create", true, true},
		{"pods.AddContainer", true, true},
	} {
		t.Run(c.step, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			e.readyPod("p1", "team-a")
			e.failOn(c.step, boom)
			cfg := ctrConfig("web", imageMount("/b", "reg/b:2", "reg/b:2"), imageMount("/a", "reg/a:1", "reg/a:1"))
			_, err := e.m.CreateContainer(ctx, CreateRequest{PodID: "p1", Config: cfg})
			if !errors.Is(err, boom) {
				t.Fatalf("create: %v, want the step's error", err)
			}
			id := "ctr1"
			e.nothingLeft(t, id)
			wantLog(t, "events", e.eventTypes())
			removed := slices.Contains(e.only("plugins.RemoveContainer"), "plugins.RemoveContainer "+id)
			if removed != c.pluginsSaw {
				t.Errorf("plugins told of the removal: %v, want %v", removed, c.pluginsSaw)
			}
			if tried := len(e.only("images.MountImage")) > 0; tried != c.mountsTried {
				t.Errorf("image volumes mounted: %v, want %v", tried, c.mountsTried)
			}
			// The name is free again.
			e.failOn(c.step, nil)
			if _, err := e.m.CreateContainer(ctx, CreateRequest{PodID: "p1", Config: cfg}); err != nil {
				t.Fatalf("create again after the failure: %v", err)
			}
		})
	}
}

// An undo that cannot finish keeps the Creating record, so start-up
// recovery finds the parts and removes them all.
func TestCreateWhoseUndoFailsIsFinishedByRecovery(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.readyPod("p1", "team-a")
	e.failOn("rt.Start", nil)
	e.failOn("pods.AddContainer", errors.New("disk gone"))
	e.failOn("rt.Delete", errors.New("runc wedged"))
	if _, err := e.m.CreateContainer(ctx, CreateRequest{PodID: "p1", Config: ctrConfig("web", imageMount("/a", "reg/a:1", "reg/a:1"))}); err == nil {
		t.Fatal("create succeeded")
	}
	rec := e.pods.containers["ctr1"]
	if rec == nil || rec.Phase != sandbox.Creating {
		t.Fatalf("record after a failed undo: %+v, want Creating", rec)
	}
	if _, err := e.pods.GetContainer("ctr1"); !errors.Is(err, sandbox.ErrContainerNotFound) {
		t.Fatalf("a Creating record is found by ID: %v", err)
	}
	e.failOn("rt.Delete", nil)
	e.m.Recover(ctx)
	e.nothingLeft(t, "ctr1")
}

// The images of a create are admitted by the image service under the
// stored pod's namespace, each as the pod spec names it; image volumes
// are paired with their own mounts (not by position among image mounts),
// and the record and the bundle say which image each volume holds.
func TestCreateAdmitsEveryImageUnderTheStoredPodsNamespace(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.readyPod("p1", "team-a")
	cfg := ctrConfig("web",
		imageMount("/b", "reg/b:2", "mirror.example/b:2"),
		&runtimeapi.Mount{ContainerPath: "/data", HostPath: "/srv/data"},
		imageMount("/a", "sha256:vola", "reg/a:1"),
	)
	c, err := e.m.CreateContainer(ctx, CreateRequest{PodID: "p1", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range e.images.admitted {
		if a.Namespace != "team-a" || a.Pod != "p1" || a.Container != "web" {
			t.Fatalf("admission %+v not under the stored pod", a)
		}
		kind := "image"
		if a.Volume {
			kind = "volume"
		}
		got = append(got, kind+" "+a.Image.ID+" as "+a.UserRef)
	}
	wantLog(t, "admissions", got, "image sha256:app as reg/app:1", "volume sha256:volb as mirror.example/b:2", "volume sha256:vola as reg/a:1")
	// Admission comes before anything is made.
	log := e.got()
	if i, j := slices.Index(log, "images.AdmitFor sha256:vola"), slices.Index(log, "pods.BeginContainer "+c.ID); i < 0 || j < i {
		t.Fatalf("made before admitted: %q", log)
	}
	rec := e.pods.containers[c.ID]
	var refs []string
	for _, m := range rec.Mounts {
		refs = append(refs, m.GetContainerPath()+"="+m.GetImage().GetImageRef())
	}
	wantLog(t, "recorded mounts", refs, "/b=sha256:volb", "/data=", "/a=sha256:vola")
	var sp specs.Spec
	data, err := os.ReadFile(filepath.Join(e.m.bundle(c.ID), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &sp); err != nil {
		t.Fatal(err)
	}
	src := map[string]string{}
	for _, m := range sp.Mounts {
		src[m.Destination] = m.Source
	}
	if !strings.HasSuffix(src["/b"], "/volb") || !strings.HasSuffix(src["/a"], "/vola") || src["/data"] != "/srv/data" {
		t.Fatalf("bundle mounts %v", src)
	}
	wantLog(t, "image mounts", e.only("images.MountImage"), "images.MountImage sha256:volb", "images.MountImage sha256:vola")
	if err := e.m.RemoveContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.nothingLeft(t, c.ID)
}

// A refusal of the image or of any image volume is the create's error,
// and nothing is made: no name, no record, no storage.
func TestCreateRefusedByPolicyMakesNothing(t *testing.T) {
	rej := &policy.Rejection{Reason: errors.New("A signature was required, but no signature exists")}
	for _, refused := range []string{"sha256:app", "sha256:vola"} {
		t.Run(refused, func(t *testing.T) {
			e := newEnv(t)
			e.readyPod("p1", "team-a")
			e.images.admitErr = map[string]error{refused: rej}
			_, err := e.m.CreateContainer(context.Background(), CreateRequest{PodID: "p1",
				Config: ctrConfig("web", imageMount("/b", "reg/b:2", "reg/b:2"), imageMount("/a", "reg/a:1", "reg/a:1"))})
			var got *policy.Rejection
			if !errors.As(err, &got) {
				t.Fatalf("create: %v, want the rejection", err)
			}
			if made := e.only("pods."); len(made) != 0 {
				t.Fatalf("made after a refusal: %q", made)
			}
			if len(e.pods.names) != 0 {
				t.Fatalf("names reserved after a refusal: %v", e.pods.names)
			}
		})
	}
}

// A pod that is missing or not ready gets no admission and no container.
func TestCreateInAPodThatCannotTakeIt(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.CreateContainer(context.Background(), CreateRequest{PodID: "gone", Config: ctrConfig("web")}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("missing pod: %v", err)
	}
	p := e.readyPod("p1", "team-a")
	p.State = sandbox.NotReady
	if _, err := e.m.CreateContainer(context.Background(), CreateRequest{PodID: "p1", Config: ctrConfig("web")}); !errors.Is(err, ErrState) {
		t.Fatalf("not-ready pod: %v", err)
	}
	if len(e.images.admitted) != 0 || len(e.got()) != 0 {
		t.Fatalf("work done: admitted %v, calls %q", e.images.admitted, e.got())
	}
}
