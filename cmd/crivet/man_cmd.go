package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	md2man "github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// newManCmd writes crivet(8), a page per subcommand, and crivet.toml(5),
// all generated from the command tree and the flag definitions, so the
// pages cannot drift from the binary.
func newManCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the manual pages crivet(8) and crivet.toml(5) to DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Section: "8", Source: "crivet " + version, Manual: "crivet manual"}
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			page := md2man.Render(configManPage())
			return os.WriteFile(filepath.Join(dir, "crivet.toml.5"), page, 0o644)
		},
	}
}

// configManPage is crivet.toml(5) in the markdown md2man reads.
func configManPage() []byte {
	var b bytes.Buffer
	b.WriteString("% CRIVET.TOML 5 crivet configuration\n\n# NAME\ncrivet.toml - configuration of the crivet container runtime\n\n")
	b.WriteString("# SYNOPSIS\n**" + defaultConfigPath + "**, **" + dropInDir(defaultConfigPath) + "/*.toml**\n\n")
	b.WriteString(`# DESCRIPTION
crivet reads its configuration from a TOML file, then from every *.toml file
in the drop-in directory beside it, in lexical order; a later file sets only
the keys it names. Command-line flags win over files. Every key below is also
a flag of the same name with '-' for '_'. Unknown keys are errors.
**crivet config** prints the effective value of every key and where it was set.

SIGHUP reloads log_level, signature_policy_modes and the metrics toggle,
and runs each runtime handler's runc features again; other keys are
reported as needing a restart.

# KEYS
`)
	fs := pflag.NewFlagSet("doc", pflag.ContinueOnError)
	probe := defaultConfig()
	bindFlags(fs, &probe)
	fs.VisitAll(func(f *pflag.Flag) {
		key := strings.ReplaceAll(f.Name, "-", "_")
		def := f.DefValue
		if def == "" || def == "[]" {
			def = `""`
		}
		fmt.Fprintf(&b, "**%s** (%s, default %s)\n: %s\n\n", key, f.Value.Type(), def, f.Usage)
	})
	b.WriteString(`**[signature_policy_modes]** (table)
: Enforcement per namespace: "enforce" (default) or "warn". In warn mode a
would-be refusal is admitted, logged, written to the audit log with outcome
"warned", and shown in ContainerStatus. The key "*" applies to namespaces not
listed; without it every namespace is enforced.

**[runtimes.NAME]** (table)
: A RuntimeClass handler named NAME (a DNS label) besides the default one,
"runc", which the runtime key configures. **runtime_path**: its runc binary
(default: the runtime key's). **runtime_root**: runc's --root (default
<runroot>/runc-NAME; each handler needs its own). A pod whose RuntimeClass
names NAME runs every container with that runc; an unknown handler is
refused. The cgroup driver is the node's for every handler. Changes need a
restart. **crictl info** shows each handler's runc, version and features.

**[nri]** (table)
: NRI plugins, off by default. **enable** (default false); **socket_path**
where plugins connect (default /var/run/nri/nri.sock; "" = none may
connect); **plugin_path** (default /opt/nri/plugins), executables named
NN-name that crivet starts, with **plugin_config_path** (default
/etc/nri/conf.d) holding their NN-name.conf; **registration_timeout**
(default 5s) and **request_timeout** (default 2s): a plugin that takes longer
is dropped and the step goes on. Plugins may adjust a container's OCI spec
but never its root filesystem (a mount at /, the mount or user namespace,
io.crivet.* annotations, CDI devices are refused and the create fails).
Changes need a restart. **crictl info** lists the connected plugins.

# EXAMPLE
    # /etc/crivet/crivet.toml.d/50-rollout.toml
    log_level = "debug"
    [signature_policy_modes]
    staging = "warn"

# FILES
**/etc/containers/policy.json**, **/etc/crivet/policies.d/<namespace>.json**

# SEE ALSO
crivet(8), containers-policy.json(5), containers-registries.d(5), containers-registries.conf(5)
`)
	return b.Bytes()
}
