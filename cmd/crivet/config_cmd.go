package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration and where each value was set",
		Long: `Prints every configuration key with its effective value, as TOML, each
followed by where it was set: "default", the file (the main file or a
drop-in), or "flag --name". The output is itself a valid crivet.toml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, src, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(configEntries(cfg, src))
			}
			_, err = out.Write(formatConfig(cfg, src))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {key: {value, source}} as JSON")
	return cmd
}

type configEntry struct {
	Value  any    `json:"value"`
	Source string `json:"source"`
}

// configEntries maps each key (and each signature_policy_modes entry, as
// "signature_policy_modes.<ns>") to its value and source.
func configEntries(cfg Config, src Sources) map[string]configEntry {
	out := map[string]configEntry{}
	v := reflect.ValueOf(cfg)
	for i, key := range configKeys() {
		if key == "signature_policy_modes" {
			for ns, mode := range cfg.SignaturePolicyModes {
				k := key + "." + ns
				out[k] = configEntry{Value: mode, Source: sourceOf(src, k)}
			}
			continue
		}
		if key == "runtimes" {
			for name, h := range cfg.Runtimes {
				k := key + "." + name
				out[k] = configEntry{Value: h, Source: sourceOf(src, k)}
			}
			continue
		}
		out[key] = configEntry{Value: v.Field(i).Interface(), Source: sourceOf(src, key)}
	}
	return out
}

func sourceOf(src Sources, key string) string {
	if s, ok := src[key]; ok {
		return s
	}
	return "default"
}

// formatConfig writes cfg as TOML, one key per line with its source as a
// trailing comment; tables come last, as TOML requires.
func formatConfig(cfg Config, src Sources) []byte {
	var b bytes.Buffer
	v := reflect.ValueOf(cfg)
	for i, key := range configKeys() {
		if key == "signature_policy_modes" || key == "runtimes" || key == "nri" {
			continue
		}
		var line bytes.Buffer
		_ = toml.NewEncoder(&line).Encode(map[string]any{key: v.Field(i).Interface()})
		fmt.Fprintf(&b, "%s  # %s\n", strings.TrimSpace(line.String()), sourceOf(src, key))
	}
	b.WriteString("\n[signature_policy_modes]  # enforce unless listed; \"*\": namespaces not listed\n")
	namespaces := make([]string, 0, len(cfg.SignaturePolicyModes))
	for ns := range cfg.SignaturePolicyModes {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	for _, ns := range namespaces {
		fmt.Fprintf(&b, "%q = %q  # %s\n", ns, cfg.SignaturePolicyModes[ns], sourceOf(src, "signature_policy_modes."+ns))
	}
	n := cfg.NRI
	fmt.Fprintf(&b, "\n[nri]  # %s\nenable = %t\nsocket_path = %q\nplugin_path = %q\nplugin_config_path = %q\nregistration_timeout = %q\nrequest_timeout = %q\n",
		sourceOf(src, "nri"), n.Enable, n.SocketPath, n.PluginPath, n.PluginConfigPath, n.RegistrationTimeout, n.RequestTimeout)
	for _, name := range slices.Sorted(maps.Keys(cfg.Runtimes)) {
		h := cfg.Runtimes[name]
		fmt.Fprintf(&b, "\n[runtimes.%s]  # %s\nruntime_path = %q\nruntime_root = %q\n", name, sourceOf(src, "runtimes."+name), h.RuntimePath, h.RuntimeRoot)
	}
	return b.Bytes()
}
