package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/cgroup"
)

const defaultConfigPath = "/etc/crivet/crivet.toml"

// Config is the daemon's whole configuration: every key of the TOML file
// is also a flag of the same name with '_' spelled '-'.
type Config struct {
	// Listen is the CRI unix socket, created with mode 0660.
	Listen string `toml:"listen"`
	// Root holds persistent state: images, container records.
	Root string `toml:"root"`
	// RunRoot holds state that must not survive a reboot.
	RunRoot string `toml:"runroot"`
	// StorageDriver is the containers/storage graph driver.
	StorageDriver string `toml:"storage_driver"`
	// SignaturePolicy is the node-wide containers-policy.json(5).
	SignaturePolicy string `toml:"signature_policy"`
	// SignaturePolicyDir holds per-namespace policies, <namespace>.json.
	SignaturePolicyDir string `toml:"signature_policy_dir"`
	// RegistriesConf is containers-registries.conf(5); drop-ins in <file>.d.
	RegistriesConf string `toml:"registries_conf"`
	// RegistriesD is the containers-registries.d(5) directory.
	RegistriesD string `toml:"registries_d"`
	// GlobalAuthFile is used for pulls that carry no credentials ("" = none).
	GlobalAuthFile string `toml:"global_auth_file"`
	// CNIConfigDir holds the node's CNI network configuration.
	CNIConfigDir string `toml:"cni_config_dir"`
	// CNIPluginDirs are searched, in order, for CNI plugin binaries.
	CNIPluginDirs []string `toml:"cni_plugin_dirs"`
	// Runtime is the OCI runtime binary (runc).
	Runtime string `toml:"runtime"`
	// PauseBinary is the static infra program for pods sharing a PID
	// namespace; "" = crivet-pause next to the crivet binary.
	PauseBinary string `toml:"pause_binary"`
	// StreamAddress is where exec/attach/port-forward are served.
	StreamAddress string `toml:"stream_address"`
	// SeccompProfileRoot resolves relative Localhost seccomp profiles.
	SeccompProfileRoot string `toml:"seccomp_profile_root"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `toml:"log_format"`
	// PullProgressTimeout fails a pull when the registry sends nothing for
	// that long (Go duration, "0" disables).
	PullProgressTimeout duration `toml:"pull_progress_timeout"`
	// MaxImageSize refuses images larger than this many bytes, declared or
	// uncompressed (0 = unlimited).
	MaxImageSize int64 `toml:"max_image_size"`
	// MaxLayers refuses images with more layers (0 = unlimited).
	MaxLayers int `toml:"max_layers"`
	// AuditLog receives one JSON line per signature decision: a file
	// path, "stdout", or "" for none.
	AuditLog string `toml:"audit_log"`
	// AuditLogMaxSize rotates the audit file to <file>.1 past this many
	// bytes (0 = never).
	AuditLogMaxSize int64 `toml:"audit_log_max_size"`
	// CgroupManager is the cgroup driver, "systemd" or "cgroupfs"; it must
	// match kubelet's cgroupDriver. "" = systemd when systemd is PID 1.
	CgroupManager string `toml:"cgroup_manager"`
}

// duration is a time.Duration written "5m", "30s" in TOML and flags.
type duration time.Duration

func (d duration) String() string { return time.Duration(d).String() }
func (d *duration) Set(v string) error {
	p, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	*d = duration(p)
	return nil
}
func (d duration) MarshalText() ([]byte, error)     { return []byte(d.String()), nil }
func (d *duration) UnmarshalText(text []byte) error { return d.Set(string(text)) }

func defaultConfig() Config {
	return Config{
		Listen:             "/run/crivet/crivet.sock",
		Root:               "/var/lib/crivet",
		RunRoot:            "/run/crivet",
		StorageDriver:      "overlay",
		SignaturePolicy:    "/etc/containers/policy.json",
		SignaturePolicyDir: "/etc/crivet/policies.d",
		RegistriesConf:     "/etc/containers/registries.conf",
		RegistriesD:        "/etc/containers/registries.d",
		CNIConfigDir:       "/etc/cni/net.d",
		CNIPluginDirs:      []string{"/opt/cni/bin", "/usr/lib/cni"},
		Runtime:            "runc",
		StreamAddress:      "127.0.0.1:0",
		SeccompProfileRoot: "/var/lib/kubelet/seccomp",
		LogLevel:           "info",
		LogFormat:          "text",

		PullProgressTimeout: duration(image.DefaultPullProgressTimeout),
		MaxImageSize:        image.DefaultMaxImageSize,
		MaxLayers:           image.DefaultMaxLayers,
		AuditLogMaxSize:     100 << 20,
	}
}

func bindFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "CRI unix socket")
	fs.StringVar(&c.Root, "root", c.Root, "persistent state directory")
	fs.StringVar(&c.RunRoot, "runroot", c.RunRoot, "runtime state directory (tmpfs)")
	fs.StringVar(&c.StorageDriver, "storage-driver", c.StorageDriver, "containers/storage graph driver (overlay, vfs)")
	fs.StringVar(&c.SignaturePolicy, "signature-policy", c.SignaturePolicy, "global signature policy, containers-policy.json(5)")
	fs.StringVar(&c.SignaturePolicyDir, "signature-policy-dir", c.SignaturePolicyDir, "directory of per-namespace policies <namespace>.json")
	fs.StringVar(&c.RegistriesConf, "registries-conf", c.RegistriesConf, "containers-registries.conf(5) file")
	fs.StringVar(&c.RegistriesD, "registries-d", c.RegistriesD, "containers-registries.d(5) directory")
	fs.StringVar(&c.GlobalAuthFile, "global-auth-file", c.GlobalAuthFile, "auth.json used when a pull carries no credentials")
	fs.StringVar(&c.CNIConfigDir, "cni-config-dir", c.CNIConfigDir, "CNI network configuration directory")
	fs.Var((*listFlag)(&c.CNIPluginDirs), "cni-plugin-dir", "CNI plugin directories, comma-separated, searched in order")
	fs.StringVar(&c.Runtime, "runtime", c.Runtime, "OCI runtime binary")
	fs.StringVar(&c.PauseBinary, "pause-binary", c.PauseBinary, "static infra program for pods sharing a PID namespace (default: crivet-pause beside crivet)")
	fs.StringVar(&c.StreamAddress, "stream-address", c.StreamAddress, "host:port of the exec/attach/port-forward server")
	fs.StringVar(&c.SeccompProfileRoot, "seccomp-profile-root", c.SeccompProfileRoot, "directory for relative Localhost seccomp profiles")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text, json")
	fs.Var(&c.PullProgressTimeout, "pull-progress-timeout", "fail a pull when the registry sends nothing for this long (0 disables)")
	fs.Int64Var(&c.MaxImageSize, "max-image-size", c.MaxImageSize, "refuse images larger than this many bytes, declared or uncompressed (0 = unlimited)")
	fs.IntVar(&c.MaxLayers, "max-layers", c.MaxLayers, "refuse images with more layers (0 = unlimited)")
	fs.StringVar(&c.AuditLog, "audit-log", c.AuditLog, `one JSON line per signature decision: a file, "stdout", or "" for none`)
	fs.Int64Var(&c.AuditLogMaxSize, "audit-log-max-size", c.AuditLogMaxSize, "rotate the audit file to <file>.1 past this many bytes (0 = never)")
	fs.StringVar(&c.CgroupManager, "cgroup-manager", c.CgroupManager, `cgroup driver, "systemd" or "cgroupfs", as kubelet's cgroupDriver (default: systemd when systemd is PID 1)`)
}

// loadConfig applies, in order: defaults, the config file, explicit flags.
func loadConfig(args []string, name string) (Config, error) {
	probe := defaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	configPath := fs.String("config", defaultConfigPath, "configuration file (TOML)")
	bindFlags(fs, &probe)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })

	cfg := defaultConfig()
	data, err := os.ReadFile(*configPath)
	switch {
	case err == nil:
		md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", *configPath, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return Config{}, fmt.Errorf("config %s: unknown keys %v", *configPath, und)
		}
	case errors.Is(err, fs_ErrNotExist) && !explicit:
		// No file at the default path: defaults.
	default:
		return Config{}, fmt.Errorf("config: %w", err)
	}
	// Flags given on the command line win over the file.
	final := flag.NewFlagSet(name, flag.ContinueOnError)
	bindFlags(final, &cfg)
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" || setErr != nil {
			return
		}
		setErr = final.Set(f.Name, f.Value.String())
	})
	return cfg, setErr
}

var fs_ErrNotExist = fs.ErrNotExist

func (c Config) validate() error {
	for k, v := range map[string]string{"listen": c.Listen, "root": c.Root, "runroot": c.RunRoot} {
		if v == "" {
			return fmt.Errorf("config: %s must be set", k)
		}
	}
	if c.PullProgressTimeout < 0 || c.MaxImageSize < 0 || c.MaxLayers < 0 || c.AuditLogMaxSize < 0 {
		return errors.New("config: pull_progress_timeout, max_image_size, max_layers and audit_log_max_size must not be negative")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("config: log_format %q: want text or json", c.LogFormat)
	}
	if _, err := cgroup.ParseDriver(c.CgroupManager); err != nil {
		return fmt.Errorf("config: cgroup_manager: %w", err)
	}
	return nil
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
