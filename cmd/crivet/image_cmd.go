package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/policy"
	crierrors "k8s.io/cri-api/pkg/errors"
)

const imageUsage = `usage:
  crivet image import FILE... [--format docker-archive|oci-archive|oci] [--name NAME] [flags]
  crivet image export IMAGE FILE [--format docker-archive|oci-archive] [flags]
  crivet image list [flags]
flags are the daemon's (--config, --root, --signature-policy, ...)`

// imageCmd works on the image store of the configured root, whether a
// crivet daemon serves it or not (containers/storage locks let both use
// it; the daemon sees the result without a restart). Imports are decided
// by the global signature policy for the archive's transport.
func imageCmd(args []string) error {
	if len(args) == 0 {
		return errors.New(imageUsage)
	}
	sub := args[0]
	own, rest, err := takeFlags(args[1:], "format", "name")
	if err != nil {
		return err
	}
	var pos []string
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	switch {
	case sub == "import" && len(pos) > 0:
	case sub == "export" && len(pos) == 2 && own["name"] == "":
	case sub == "list" && len(pos) == 0 && len(own) == 0:
	default:
		return errors.New(imageUsage)
	}
	cfg, err := loadConfig(rest, "crivet image "+sub)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	var auditLog *audit.Log
	if cfg.AuditLog != "" && sub == "import" {
		if auditLog, err = audit.Open(cfg.AuditLog, cfg.AuditLogMaxSize); err != nil {
			return err
		}
		defer auditLog.Close()
	}
	images, err := image.Open(image.Config{
		Root: cfg.Root, RunRoot: cfg.RunRoot, Driver: cfg.StorageDriver,
		RegistriesConf: cfg.RegistriesConf, RegistriesD: cfg.RegistriesD,
		Policies: policy.NewStore(cfg.SignaturePolicy, cfg.SignaturePolicyDir), Audit: auditLog, Logger: log,
		MaxImageSize: cfg.MaxImageSize, MaxLayers: cfg.MaxLayers,
		Shared: true,
	})
	if err != nil {
		return err
	}
	defer images.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	switch sub {
	case "import":
		for _, file := range pos {
			imgs, err := images.Import(ctx, image.ImportRequest{Path: file, Format: own["format"], Name: own["name"]})
			for _, img := range imgs {
				fmt.Printf("imported %s %s\n", img.ID, strings.Join(img.RepoTags, " "))
			}
			if err != nil {
				return policyShape(err)
			}
		}
	case "export":
		img, err := images.Export(ctx, image.ExportRequest{Image: pos[0], Path: pos[1], Format: own["format"]})
		if err != nil {
			return err
		}
		fmt.Printf("exported %s to %s\n", img.ID, pos[1])
	case "list":
		imgs, err := images.List()
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(w, "IMAGE ID\tNAMES\tSIZE\tSOURCE")
		for _, img := range imgs {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", img.ID, strings.Join(img.RepoTags, ","), img.Size, sourceOf(img))
		}
		return w.Flush()
	}
	return nil
}

// takeFlags removes --NAME VALUE and --NAME=VALUE (one or two dashes) of
// the given names from args, wherever they are.
func takeFlags(args []string, names ...string) (map[string]string, []string, error) {
	own := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		key, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !contains(names, key) {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 == len(args) {
				return nil, nil, fmt.Errorf("flag --%s needs a value", key)
			}
			i++
			val = args[i]
		}
		own[key] = val
	}
	return own, rest, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// policyShape words a signature-policy refusal as the CRI does
// (SignatureValidationFailed: ...), so operators see one shape everywhere.
func policyShape(err error) error {
	var (
		rej     *policy.Rejection
		fileErr *policy.FileError
	)
	if errors.As(err, &rej) || errors.As(err, &fileErr) || errors.Is(err, policy.ErrRefused) {
		return fmt.Errorf("%s: %w", crierrors.ErrSignatureValidationFailed, err)
	}
	return err
}

// sourceOf says where an image came from, for list: the latest import or pull.
func sourceOf(img *image.Image) string {
	if img.Record == nil || len(img.Record.References) == 0 {
		return "-"
	}
	r := img.Record.References[len(img.Record.References)-1]
	when := r.Pulled.Format(time.DateTime)
	if r.Import != nil {
		return r.Import.Transport + ":" + r.Import.Path + " (" + when + ")"
	}
	return "docker://" + r.Resolved + " (" + when + ")"
}
