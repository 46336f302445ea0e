package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/policy"
	"github.com/spf13/cobra"
	crierrors "k8s.io/cri-api/pkg/errors"
)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import, export and list images of the node's store (air-gapped nodes)",
		Long: `Works on the image store of the configured root, whether a crivet daemon
serves it or not (containers/storage locks let both use it; a running daemon
sees the result without a restart). Imports are decided by the global
signature policy for the archive's transport (docker-archive, oci-archive,
oci), and containers from imported images are checked at creation against
the pod namespace's policy for that transport.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var format, name string
	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import docker-archive, oci-archive or OCI layout files",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withImages(cmd, true, func(ctx context.Context, images *image.Service) error {
				for _, file := range args {
					imgs, err := images.Import(ctx, image.ImportRequest{Path: file, Format: format, Name: name})
					for _, img := range imgs {
						fmt.Fprintf(cmd.OutOrStdout(), "imported %s %s\n", img.ID, strings.Join(img.RepoTags, " "))
					}
					if err != nil {
						return policyShape(err)
					}
				}
				return nil
			})
		},
	}
	imp.Flags().StringVar(&format, "format", "", "docker-archive, oci-archive or oci (default: from the file's content)")
	imp.Flags().StringVar(&name, "name", "", "name for an OCI image that carries no full name (archives of one image only)")
	var expFormat string
	exp := &cobra.Command{
		Use:   "export IMAGE FILE",
		Short: "Write a stored image to a docker-archive or oci-archive file (an oci-archive keeps its signatures and bundles)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withImages(cmd, false, func(ctx context.Context, images *image.Service) error {
				img, err := images.Export(ctx, image.ExportRequest{Image: args[0], Path: args[1], Format: expFormat})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "exported %s to %s\n", img.ID, args[1])
				return nil
			})
		},
	}
	exp.Flags().StringVar(&expFormat, "format", "", "docker-archive or oci-archive (default: the one that needs no conversion)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List stored images with their names and where they came from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withImages(cmd, false, func(ctx context.Context, images *image.Service) error {
				imgs, err := images.List()
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
				fmt.Fprintln(w, "IMAGE ID\tNAMES\tSIZE\tSOURCE")
				for _, img := range imgs {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", img.ID, strings.Join(img.RepoTags, ","), img.Size, imageSource(img))
				}
				return w.Flush()
			})
		},
	}
	cmd.AddCommand(imp, exp, list)
	return cmd
}

// withImages opens the configured store shared with a daemon that may be
// serving it, and runs f until SIGTERM or SIGINT.
func withImages(cmd *cobra.Command, audited bool, f func(context.Context, *image.Service) error) error {
	cfg, _, err := loadConfig(cmd.Flags())
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, _, err := newLogger(cfg, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	var auditLog *audit.Log
	if cfg.AuditLog != "" && audited {
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
	return f(ctx, images)
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

// imageSource says where an image came from, for list: the latest import or pull.
func imageSource(img *image.Image) string {
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
