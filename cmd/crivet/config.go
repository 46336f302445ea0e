package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/internal/reserve"
	"github.com/crivet/crivet/lifecycle/nri"
	"github.com/crivet/crivet/metrics"
	"github.com/crivet/crivet/oci/cdi"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/policy"
	"github.com/spf13/pflag"
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
	// StorageReserve is the size in bytes of the ballast file kept in the
	// root so that crivet can start, stop and remove on a full disk (0 =
	// none).
	StorageReserve int64 `toml:"storage_reserve"`
	// AuditLog receives one JSON line per signature decision: a file
	// path, "stdout", or "" for none.
	AuditLog string `toml:"audit_log"`
	// AuditLogMaxSize rotates the audit file to <file>.1 past this many
	// bytes (0 = never).
	AuditLogMaxSize int64 `toml:"audit_log_max_size"`
	// CgroupManager is the cgroup driver, "systemd" or "cgroupfs"; it must
	// match kubelet's cgroupDriver. "" = systemd when systemd is PID 1.
	CgroupManager string `toml:"cgroup_manager"`
	// MetricsAddress serves Prometheus metrics on host:port/metrics; ""
	// = off. A missing host (":9090") means 127.0.0.1.
	MetricsAddress string `toml:"metrics_address"`
	// SignaturePolicyModes sets a namespace's enforcement: "enforce" (the
	// default) or "warn" (a would-be refusal is admitted, logged, audited
	// and counted as warned). The key "*" applies to namespaces without an
	// entry; the global policy is only ever warn when set here explicitly.
	SignaturePolicyModes map[string]string `toml:"signature_policy_modes"`
	// Runtimes are the RuntimeClass handlers besides the default one (named
	// "runc", run by the runtime key): [runtimes.NAME] tables.
	Runtimes map[string]RuntimeHandler `toml:"runtimes"`
	// CDISpecDirs are the directories of CDI spec files, in increasing
	// priority; empty disables CDI (a container asking for a CDI device
	// is then refused).
	CDISpecDirs []string `toml:"cdi_spec_dirs"`
	// NRI is the [nri] table: NRI plugins (off by default).
	NRI NRIConfig `toml:"nri"`
}

// NRIConfig is the [nri] table. With enable = false (the default) crivet
// opens no socket and starts no plugin, and every step runs as without
// NRI.
type NRIConfig struct {
	Enable bool `toml:"enable" json:"enable"`
	// SocketPath is where external plugins connect ("" = none connect;
	// only pre-registered plugins run).
	SocketPath string `toml:"socket_path" json:"socket_path"`
	// PluginPath holds pre-registered plugins (executables named
	// NN-name) that crivet starts; PluginConfigPath their configuration.
	PluginPath       string `toml:"plugin_path" json:"plugin_path"`
	PluginConfigPath string `toml:"plugin_config_path" json:"plugin_config_path"`
	// RegistrationTimeout bounds a plugin's registration; RequestTimeout
	// bounds each call to a plugin (a plugin that takes longer is dropped
	// and the step goes on without it).
	RegistrationTimeout duration `toml:"registration_timeout" json:"registration_timeout"`
	RequestTimeout      duration `toml:"request_timeout" json:"request_timeout"`
}

// RuntimeHandler is one [runtimes.NAME] table: a named runc configuration
// that a RuntimeClass with handler NAME selects. The cgroup driver is the
// node's (cgroup_manager) for every handler: kubelet has only one.
type RuntimeHandler struct {
	// RuntimePath is the runc binary; "" = the runtime key's.
	RuntimePath string `toml:"runtime_path" json:"runtime_path"`
	// RuntimeRoot is runc's --root; "" = <runroot>/runc-NAME. Each
	// handler needs its own, so two runc versions never share state.
	RuntimeRoot string `toml:"runtime_root" json:"runtime_root"`
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
func (d *duration) Type() string                    { return "duration" }

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
		StorageReserve:      reserve.DefaultSize,
		AuditLogMaxSize:     100 << 20,
		NRI: NRIConfig{
			SocketPath: nri.DefaultSocketPath, PluginPath: nri.DefaultPluginPath, PluginConfigPath: nri.DefaultPluginConfigPath,
			RegistrationTimeout: duration(nri.DefaultRegistrationTimeout), RequestTimeout: duration(nri.DefaultRequestTimeout),
		},
		CDISpecDirs: slices.Clone(cdi.DefaultSpecDirs),
	}
}

func bindFlags(fs *pflag.FlagSet, c *Config) {
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
	fs.StringSliceVar(&c.CNIPluginDirs, "cni-plugin-dir", c.CNIPluginDirs, "CNI plugin directories, comma-separated, searched in order")
	fs.StringVar(&c.Runtime, "runtime", c.Runtime, "OCI runtime binary")
	fs.StringVar(&c.PauseBinary, "pause-binary", c.PauseBinary, "static infra program for pods sharing a PID namespace (default: crivet-pause beside crivet)")
	fs.StringVar(&c.StreamAddress, "stream-address", c.StreamAddress, "host:port of the exec/attach/port-forward server")
	fs.StringVar(&c.SeccompProfileRoot, "seccomp-profile-root", c.SeccompProfileRoot, "directory for relative Localhost seccomp profiles")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text, json")
	fs.Var(&c.PullProgressTimeout, "pull-progress-timeout", "fail a pull when the registry sends nothing for this long (0 disables)")
	fs.Int64Var(&c.MaxImageSize, "max-image-size", c.MaxImageSize, "refuse images larger than this many bytes, declared or uncompressed (0 = unlimited)")
	fs.IntVar(&c.MaxLayers, "max-layers", c.MaxLayers, "refuse images with more layers (0 = unlimited)")
	fs.Int64Var(&c.StorageReserve, "storage-reserve", c.StorageReserve, "bytes kept free in the root by a ballast file, released when the disk is full so crivet can start, stop and remove (0 = none)")
	fs.StringVar(&c.AuditLog, "audit-log", c.AuditLog, `one JSON line per signature decision: a file (locked through <file>.lock beside it), "stdout", or "" for none`)
	fs.Int64Var(&c.AuditLogMaxSize, "audit-log-max-size", c.AuditLogMaxSize, "rotate the audit file to <file>.1 past this many bytes (0 = never)")
	fs.StringVar(&c.MetricsAddress, "metrics-address", c.MetricsAddress, `host:port serving Prometheus metrics at /metrics ("" = off; ":9090" = 127.0.0.1:9090)`)
	fs.StringSliceVar(&c.CDISpecDirs, "cdi-spec-dir", c.CDISpecDirs, `CDI spec file directories, comma-separated, in increasing priority ("" disables CDI)`)
	fs.StringVar(&c.CgroupManager, "cgroup-manager", c.CgroupManager, `cgroup driver, "systemd" or "cgroupfs", as kubelet's cgroupDriver (default: systemd when systemd is PID 1)`)
}

// Sources says where each configuration key's value came from: "default",
// a file path, or "flag --name".
type Sources map[string]string

// dropInDir is where drop-ins for the config file at path live.
func dropInDir(path string) string { return path + ".d" }

// loadConfig applies, in order: defaults, the config file, its drop-ins
// (<config>.d/*.toml, lexical order), then the flags set on the command
// line. Unknown keys are errors: a typo must not silently keep a default.
func loadConfig(flags *pflag.FlagSet) (Config, Sources, error) {
	cfg := defaultConfig()
	src := Sources{}
	for _, k := range configKeys() {
		src[k] = "default"
	}
	configPath, explicit := defaultConfigPath, false
	if f := flags.Lookup("config"); f != nil {
		configPath, explicit = f.Value.String(), f.Changed
	}
	files := []string{configPath}
	if _, err := os.Stat(configPath); err != nil {
		if !errors.Is(err, fs.ErrNotExist) || explicit {
			return Config{}, nil, fmt.Errorf("config: %w", err)
		}
		files = nil // no file at the default path: defaults
	}
	dropIns, err := filepath.Glob(filepath.Join(dropInDir(configPath), "*.toml"))
	if err != nil {
		return Config{}, nil, fmt.Errorf("config: %w", err)
	}
	sort.Strings(dropIns)
	for _, file := range append(files, dropIns...) {
		if err := applyFile(&cfg, src, file); err != nil {
			return Config{}, nil, err
		}
	}
	// Flags given on the command line win over the files.
	final := pflag.NewFlagSet("final", pflag.ContinueOnError)
	bindFlags(final, &cfg)
	var setErr error
	flags.Visit(func(f *pflag.Flag) {
		if setErr != nil || final.Lookup(f.Name) == nil {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			setErr = final.Lookup(f.Name).Value.(pflag.SliceValue).Replace(sv.GetSlice())
		} else {
			setErr = final.Set(f.Name, f.Value.String())
		}
		src[strings.ReplaceAll(f.Name, "-", "_")] = "flag --" + f.Name
	})
	if setErr != nil {
		return Config{}, nil, setErr
	}
	return cfg, src, nil
}

// applyFile decodes one TOML file over cfg. Tables (signature_policy_modes,
// runtimes) merge key by key, so a drop-in can add one namespace's mode or
// one runtime handler.
func applyFile(cfg *Config, src Sources, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	modes := maps.Clone(cfg.SignaturePolicyModes)
	cfg.SignaturePolicyModes = nil
	runtimes := maps.Clone(cfg.Runtimes)
	cfg.Runtimes = nil
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(cfg)
	if err != nil {
		return fmt.Errorf("config %s: %w", file, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("config %s: unknown keys %v", file, und)
	}
	if modes == nil {
		modes = map[string]string{}
	}
	maps.Copy(modes, cfg.SignaturePolicyModes)
	cfg.SignaturePolicyModes = modes
	// A drop-in adds or replaces whole handlers, by name.
	if runtimes == nil && cfg.Runtimes != nil {
		runtimes = map[string]RuntimeHandler{}
	}
	maps.Copy(runtimes, cfg.Runtimes)
	cfg.Runtimes = runtimes
	for _, k := range md.Keys() {
		src[strings.Join(k, ".")] = file
	}
	return nil
}

// configKeys lists every top-level key, in the order of Config's fields.
func configKeys() []string {
	t := reflect.TypeOf(Config{})
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("toml"); k != "" && k != "-" {
			keys = append(keys, strings.Split(k, ",")[0])
		}
	}
	return keys
}

func (c Config) validate() error {
	for k, v := range map[string]string{"listen": c.Listen, "root": c.Root, "runroot": c.RunRoot} {
		if v == "" {
			return fmt.Errorf("config: %s must be set", k)
		}
	}
	if c.PullProgressTimeout < 0 || c.MaxImageSize < 0 || c.MaxLayers < 0 || c.AuditLogMaxSize < 0 || c.StorageReserve < 0 {
		return errors.New("config: pull_progress_timeout, max_image_size, max_layers, audit_log_max_size and storage_reserve must not be negative")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("config: log_format %q: want text or json", c.LogFormat)
	}
	if _, err := cgroup.ParseDriver(c.CgroupManager); err != nil {
		return fmt.Errorf("config: cgroup_manager: %w", err)
	}
	if c.MetricsAddress != "" {
		if _, _, err := metrics.ListenAddress(c.MetricsAddress); err != nil {
			return fmt.Errorf("config: metrics_address: %w", err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.NRI.Enable && (c.NRI.RegistrationTimeout <= 0 || c.NRI.RequestTimeout <= 0) {
		return errors.New("config: [nri] registration_timeout and request_timeout must be positive")
	}
	if err := c.validateRuntimes(); err != nil {
		return err
	}
	for ns, mode := range c.SignaturePolicyModes {
		if ns != policy.AnyNamespace && policy.ValidateNamespace(ns) != nil {
			return fmt.Errorf("config: signature_policy_modes: %q is not a namespace name (or \"*\")", ns)
		}
		if _, err := policy.ParseMode(mode); err != nil {
			return fmt.Errorf("config: signature_policy_modes.%s: %w", ns, err)
		}
	}
	return nil
}

// handlerName is Kubernetes' rule for a RuntimeClass handler (a DNS
// label), which is also what kubelet can send.
var handlerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func (c Config) validateRuntimes() error {
	roots := map[string]string{filepath.Clean(c.defaultRuncRoot()): runtime.DefaultHandler}
	for _, name := range slices.Sorted(maps.Keys(c.Runtimes)) {
		if name == runtime.DefaultHandler {
			return fmt.Errorf("config: [runtimes.%s]: %q is the default handler, configured by the runtime key", name, name)
		}
		if len(name) > 63 || !handlerName.MatchString(name) {
			return fmt.Errorf("config: [runtimes.%q]: a runtime handler name is a DNS label (lowercase letters, digits and '-', at most 63), as a RuntimeClass's handler", name)
		}
		root := filepath.Clean(c.handler(name).Root)
		if other, ok := roots[root]; ok {
			return fmt.Errorf("config: [runtimes.%s]: runtime_root %s is also the root of handler %q; each handler needs its own", name, root, other)
		}
		roots[root] = name
	}
	return nil
}

func (c Config) defaultRuncRoot() string { return filepath.Join(c.RunRoot, "runc") }

// handler is the runtime.Handler of [runtimes.name], defaults filled in.
func (c Config) handler(name string) runtime.Handler {
	rc := c.Runtimes[name]
	h := runtime.Handler{Name: name, Runc: rc.RuntimePath, Root: rc.RuntimeRoot}
	if h.Runc == "" {
		h.Runc = c.Runtime
	}
	if h.Root == "" {
		h.Root = filepath.Join(c.RunRoot, "runc-"+name)
	}
	return h
}

// runtimeHandlers are the configured handlers besides the default.
func (c Config) runtimeHandlers() []runtime.Handler {
	var hs []runtime.Handler
	for _, name := range slices.Sorted(maps.Keys(c.Runtimes)) {
		hs = append(hs, c.handler(name))
	}
	return hs
}
