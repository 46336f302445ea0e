package main

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// [nri] is off by default with NRI's own paths and timeouts; a drop-in
// can turn it on and set a key without repeating the others, and
// `crivet config` prints it back as a table.
func TestNRIConfigDefaultsAndDropIns(t *testing.T) {
	cfg, _, err := loadConfig(writeConfig(t, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.NRI
	if n.Enable || n.SocketPath != "/var/run/nri/nri.sock" || n.PluginPath != "/opt/nri/plugins" || n.PluginConfigPath != "/etc/nri/conf.d" ||
		time.Duration(n.RequestTimeout) != 2*time.Second || time.Duration(n.RegistrationTimeout) != 5*time.Second {
		t.Fatalf("defaults: %+v", n)
	}
	cfg, src, err := loadConfig(writeConfig(t, "[nri]\nsocket_path = \"/run/x/nri.sock\"\n", map[string]string{"50-nri.toml": "[nri]\nenable = true\nrequest_timeout = \"10s\"\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	n = cfg.NRI
	if !n.Enable || n.SocketPath != "/run/x/nri.sock" || time.Duration(n.RequestTimeout) != 10*time.Second || n.PluginPath != "/opt/nri/plugins" {
		t.Fatalf("merged: %+v", n)
	}
	if !strings.HasSuffix(src["nri.enable"], "50-nri.toml") {
		t.Errorf("source of nri.enable: %q", src["nri.enable"])
	}
	var back Config
	if _, err := toml.Decode(string(formatConfig(cfg, src)), &back); err != nil {
		t.Fatalf("crivet config output does not parse: %v\n%s", err, formatConfig(cfg, src))
	}
	if back.NRI != cfg.NRI {
		t.Errorf("round trip: %+v, want %+v", back.NRI, cfg.NRI)
	}
	cfg, _, err = loadConfig(writeConfig(t, "[nri]\nenable = true\nrequest_timeout = \"0s\"\n", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "request_timeout") {
		t.Errorf("a zero timeout: %v", err)
	}
}
