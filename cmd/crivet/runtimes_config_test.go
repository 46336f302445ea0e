package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/spf13/pflag"
)

func writeConfig(t *testing.T, main string, dropIns map[string]string) *pflag.FlagSet {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "crivet.toml")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(dropIns) > 0 {
		if err := os.Mkdir(dropInDir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range dropIns {
			if err := os.WriteFile(filepath.Join(dropInDir(path), name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", defaultConfigPath, "")
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	return fs
}

// [runtimes.NAME] tables become handlers with their defaults filled in;
// a drop-in adds a handler without repeating the others.
func TestRuntimeHandlersFromConfigFileAndDropIns(t *testing.T) {
	flags := writeConfig(t, `
runroot = "/run/x"
runtime = "/usr/bin/runc"
[runtimes.test-handler]
runtime_path = "/usr/local/sbin/runc"
`, map[string]string{"50-other.toml": `
[runtimes.other]
runtime_root = "/run/other-root"
`})
	cfg, src, err := loadConfig(flags)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	got := cfg.runtimeHandlers()
	want := []runtime.Handler{
		{Name: "other", Runc: "/usr/bin/runc", Root: "/run/other-root"},
		{Name: "test-handler", Runc: "/usr/local/sbin/runc", Root: "/run/x/runc-test-handler"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("handlers %+v, want %+v", got, want)
	}
	if cfg.defaultRuncRoot() != "/run/x/runc" {
		t.Fatalf("default root %q", cfg.defaultRuncRoot())
	}
	if !strings.HasSuffix(src["runtimes.other"], "50-other.toml") {
		t.Fatalf("source of runtimes.other: %q", src["runtimes.other"])
	}
	entries := configEntries(cfg, src)
	if e, ok := entries["runtimes.test-handler"]; !ok || e.Value.(RuntimeHandler).RuntimePath != "/usr/local/sbin/runc" {
		t.Fatalf("crivet config entries: %+v", entries)
	}
	// `crivet config` prints a valid crivet.toml that keeps the handlers.
	var back Config
	if _, err := toml.Decode(string(formatConfig(cfg, src)), &back); err != nil {
		t.Fatalf("crivet config output does not parse: %v\n%s", err, formatConfig(cfg, src))
	}
	if back.Runtimes["other"].RuntimeRoot != "/run/other-root" || back.Runtimes["test-handler"].RuntimePath != "/usr/local/sbin/runc" {
		t.Fatalf("round trip: %+v", back.Runtimes)
	}
}

func TestRuntimeHandlerConfigErrorsAreClear(t *testing.T) {
	for _, c := range []struct {
		name, conf, want string
	}{
		{"the default's name", "[runtimes.runc]\nruntime_path = \"/x\"\n", "is the default handler, configured by the runtime key"},
		{"not a DNS label", "[runtimes.Kata_1]\n", "DNS label"},
		{"a root shared with the default", "runroot = \"/run/x\"\n[runtimes.a]\nruntime_root = \"/run/x/runc\"\n", `also the root of handler "runc"`},
		{"a root shared by two", "[runtimes.a]\nruntime_root = \"/r\"\n[runtimes.b]\nruntime_root = \"/r/\"\n", "each handler needs its own"},
		{"an unknown key", "[runtimes.a]\ncgroup_manager = \"systemd\"\n", "unknown keys"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, err := loadConfig(writeConfig(t, c.conf, nil))
			if err == nil {
				err = cfg.validate()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}
