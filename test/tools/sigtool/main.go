// sigtool keygen DIR PASS: a sigstore (cosign-format) key pair.
// sigtool sign KEY PASS REGISTRIES_D HOST:PORT/REPO:TAG...: sign those images
// in place (plain-http registry) with sigstore attachments.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/signer"
	"go.podman.io/image/v5/signature/sigstore"
	"go.podman.io/image/v5/types"
)

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: sigtool keygen DIR PASS | sign KEY PASS REGISTRIES_D REF...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "keygen":
		kp, err := sigstore.GenerateKeyPair([]byte(os.Args[3]))
		must(err)
		must(os.WriteFile(filepath.Join(os.Args[2], "cosign.key"), kp.PrivateKey, 0o600))
		must(os.WriteFile(filepath.Join(os.Args[2], "cosign.pub"), kp.PublicKey, 0o644))
	case "sign":
		key, pass, regd := os.Args[2], []byte(os.Args[3]), os.Args[4]
		tmp, err := os.MkdirTemp("", "sigtool")
		must(err)
		defer os.RemoveAll(tmp)
		conf := filepath.Join(tmp, "registries.conf")
		must(os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644))
		sc := &types.SystemContext{
			DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
			RegistriesDirPath:           regd,
			SystemRegistriesConfPath:    conf,
			SystemRegistriesConfDirPath: filepath.Join(tmp, "registries.conf.d"),
			AuthFilePath:                filepath.Join(tmp, "auth.json"),
			BlobInfoCacheDir:            tmp,
		}
		s, err := sigstore.NewSigner(sigstore.WithPrivateKeyFile(key, pass))
		must(err)
		defer s.Close()
		pc, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
		must(err)
		defer pc.Destroy()
		for _, ref := range os.Args[5:] {
			r, err := docker.ParseReference("//" + ref)
			must(err)
			_, err = copy.Image(context.Background(), pc, r, r, &copy.Options{
				Signers: []*signer.Signer{s}, SourceCtx: sc, DestinationCtx: sc,
				ReportWriter: io.Discard, PreserveDigests: true,
			})
			must(err)
		}
	default:
		panic("usage: sigtool keygen DIR PASS | sign KEY PASS REGISTRIES_D REF...")
	}
}
