package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/crivet/crivet/policy"
	"github.com/spf13/cobra"
)

// exitCode ends the command with a status and no further message: the
// command has already said what it found (lint findings, a refusal).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// execute runs the command line and returns the process's exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	}
	fmt.Fprintln(stderr, "crivet:", err)
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "crivet [flags]",
		Short: "Kubernetes container runtime that verifies image signatures on the node",
		Long: `crivet is a CRI v1 container runtime. kubelet and crictl talk to it on a
unix socket; it runs containers with runc and sets up pod networks with CNI.
Every pull is checked against containers-policy.json(5), per namespace, and
every container create re-checks the pod namespace's policy, offline,
against the signatures stored at pull time.

Without a command, crivet serves the CRI (as "crivet serve").

Configuration: ` + defaultConfigPath + `, then ` + dropInDir(defaultConfigPath) + `/*.toml in
lexical order, then flags. Every key of the file is a flag of the same name
with '-' for '_'. "crivet config" shows the effective value of each key and
where it was set.`,
		Version:       version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return serve(cmd.Flags()) },
	}
	root.SetVersionTemplate("crivet {{.Version}}\nCRI API v1 (k8s.io/cri-api v0.37)\n")
	pf := root.PersistentFlags()
	pf.String("config", defaultConfigPath, "configuration file (TOML); drop-ins are read from <config>.d/*.toml")
	probe := defaultConfig()
	bindFlags(pf, &probe)

	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the CRI on the configured socket (the default command)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return serve(cmd.Flags()) },
	}
	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "crivet %s\nCRI API v1 (k8s.io/cri-api v0.37)\n", version)
		},
	}
	root.AddCommand(serveCmd, versionCmd, newConfigCmd(), newPolicyCmd(), newImageCmd(), newManCmd(root))
	return root
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check signature policy files and decisions",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	lint := &cobra.Command{
		Use:   "lint [FILE|DIR]",
		Short: "Check the policy files the daemon would use",
		Long: `Parses the global policy and every namespace file as the daemon would, checks
that every key, CA and keyring file they name exists and parses, and warns
about files never used, names that are not namespaces and namespace files
that accept what the global policy rejects.

For sigstoreBundle requirements it also checks the trusted_root.json (it
parses, and holds the CA, transparency logs, timestamp authorities and CT
logs the requirement's identity and thresholds need: a root that lacks one
would refuse every bundle) and the identity matchers (each regular
expression compiles; one that matches everything is a warning).

FILE is checked as a global policy, DIR as the namespace directory; without
either, the configured signature_policy and signature_policy_dir are.
Exit status: 0 no errors (warnings allowed), 1 errors.`,
		Args: cobra.MaximumNArgs(1),
		RunE: runPolicyLint,
	}
	cmd.AddCommand(lint, newPolicyCheckCmd())
	return cmd
}

func runPolicyLint(cmd *cobra.Command, args []string) error {
	cfg, _, err := loadConfig(cmd.Flags())
	if err != nil {
		return err
	}
	global, dir := cfg.SignaturePolicy, cfg.SignaturePolicyDir
	if len(args) == 1 {
		fi, err := os.Stat(args[0])
		if err != nil {
			return err
		}
		if fi.IsDir() {
			dir = args[0]
		} else {
			global, dir = args[0], ""
		}
	}
	out := cmd.OutOrStdout()
	findings := policy.Lint(global, dir)
	errs := 0
	for _, f := range findings {
		fmt.Fprintln(out, f)
		if f.Severity == "error" {
			errs++
		}
	}
	fmt.Fprintf(out, "%d errors, %d warnings (global %s, namespaces %s)\n", errs, len(findings)-errs, global, dir)
	if errs > 0 {
		return exitCode(1)
	}
	return nil
}
