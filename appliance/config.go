package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the daemon's configuration: defaults, then the YAML config
// file, then command-line flags (flags win). Object-store credentials are
// never part of it: they come from the standard AWS environment variables or
// a credentials file.
type Config struct {
	// DataDir holds the state database, the admin token, the embedded
	// object store, volumes and caches.
	DataDir string `yaml:"data"`
	// ControlAddr is the REST API listener.
	ControlAddr string `yaml:"control_addr"`
	// ISCSIAddr is the iSCSI target listener.
	ISCSIAddr string `yaml:"iscsi_addr"`
	// ISCSIPortals are the addresses ("host:port") SendTargets advertises;
	// empty advertises the address a discovery session arrived on. Set it
	// when initiators reach the gateway through NAT or port forwarding.
	ISCSIPortals []string `yaml:"iscsi_portals"`
	// NFSAddr is the NFS (and MOUNT) listener.
	NFSAddr string `yaml:"nfs_addr"`
	// S3 selects an S3-compatible store; with no endpoint the embedded
	// store under DataDir is used.
	S3 S3Config `yaml:"s3"`
	// Bandwidth limits object-store traffic (bytes per second, 0 =
	// unlimited). Changing them through the API overrides these.
	Bandwidth BandwidthConfig `yaml:"bandwidth"`
	// Log selects the log format and level.
	Log LogConfig `yaml:"log"`
	// Audit configures the audit trail.
	Audit AuditConfig `yaml:"audit"`
	// MetricsInterval is the sampling interval of the built-in metric
	// history behind /v1/metrics and alarms (default 1m).
	MetricsInterval time.Duration `yaml:"metrics_interval"`
	// GCInterval is how often unreferenced snapshot chunks are collected
	// (default 24h).
	GCInterval time.Duration `yaml:"gc_interval"`
	// NFS configures the file gateway.
	NFS NFSConfig `yaml:"nfs"`
	// ControlTLS configures TLS on the control listener.
	ControlTLS TLSConfig `yaml:"control_tls"`
	// Tape configures the tape gateway.
	Tape TapeConfig `yaml:"tape"`
	// CacheSize is the size of the block cache shared by cached volumes
	// (a sparse file under DATA/cache; default 10 GiB; 0 keeps the
	// default).
	CacheSize int64 `yaml:"cache_size"`
}

// NFSConfig configures the file gateway.
type NFSConfig struct {
	// PortmapAddr is where the portmapper listens: "auto" (the default)
	// means port 111 on the NFS address's host when it can be bound (a
	// warning otherwise); "off" or "" turns it off.
	PortmapAddr string `yaml:"portmap_addr"`
	// CacheSize bounds clean cached file data (default 10 GiB).
	CacheSize int64 `yaml:"cache_size"`
	// MetadataTTL is how long cached metadata is trusted before it is
	// revalidated against the bucket (default 5s).
	MetadataTTL time.Duration `yaml:"metadata_ttl"`
	// SettleTime uploads a written file this long after its last write
	// when the client sends no COMMIT (default 3s).
	SettleTime time.Duration `yaml:"settle_time"`
	// UploadHold is the longest a file ready for upload waits while NFS
	// clients keep the gateway busy (default 10s; negative: never waits).
	UploadHold time.Duration `yaml:"upload_hold"`
}

// AuditConfig configures the audit trail (always on for management
// events).
type AuditConfig struct {
	// DataEvents also records data events: iSCSI logins, NFS mounts.
	DataEvents bool `yaml:"data_events"`
	// Prefix is where sealed segments are delivered in the bucket
	// (default "sluice-audit/").
	Prefix string `yaml:"prefix"`
}

// S3Config locates the S3 bucket.
type S3Config struct {
	Endpoint string `yaml:"endpoint"`
	Bucket   string `yaml:"bucket"`
	Region   string `yaml:"region"`
	// CredentialsFile is an AWS shared credentials file (default
	// ~/.aws/credentials) used when the AWS_* variables are not set.
	CredentialsFile string `yaml:"credentials_file"`
	// Profile is the profile in that file (default AWS_PROFILE or
	// "default").
	Profile string `yaml:"profile"`
	// StartTimeout bounds the wait for the store at start-up (default
	// 20s); the daemon exits with code 4 when it passes.
	StartTimeout time.Duration `yaml:"start_timeout"`
}

// BandwidthConfig holds the start-up bandwidth limits.
type BandwidthConfig struct {
	UploadBytesPerSec   int64 `yaml:"upload_bytes_per_sec"`
	DownloadBytesPerSec int64 `yaml:"download_bytes_per_sec"`
}

// LogConfig selects logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Default listener ports.
const (
	DefaultControlPort = "8780"
	DefaultISCSIPort   = "3260"
	DefaultNFSPort     = "2049"
)

// DefaultConfig returns the embedded defaults: data in ./sluice-data, every
// listener on loopback, the embedded object store.
func DefaultConfig() Config {
	return Config{
		DataDir:     "./sluice-data",
		ControlAddr: "127.0.0.1:" + DefaultControlPort,
		ISCSIAddr:   "127.0.0.1:" + DefaultISCSIPort,
		NFSAddr:     "127.0.0.1:" + DefaultNFSPort,
		Log:         LogConfig{Level: "info", Format: "text"},
		Audit:       AuditConfig{Prefix: "sluice-audit/"},
		NFS:         NFSConfig{PortmapAddr: "auto"},
	}
}

// ErrConfig classifies configuration errors (exit code 2).
var ErrConfig = errors.New("bad configuration")

// LoadConfigFile reads a YAML config file over cfg. Unknown keys are errors.
func LoadConfigFile(path string, cfg *Config) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: it changes nothing.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return nil
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data directory is empty"))
	}
	for name, addr := range map[string]string{"control_addr": c.ControlAddr, "iscsi_addr": c.ISCSIAddr, "nfs_addr": c.NFSAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if c.S3.Endpoint != "" || c.S3.Bucket != "" {
		u, err := url.Parse(c.S3.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("s3 endpoint %q: want http(s)://host[:port]", c.S3.Endpoint))
		}
		if c.S3.Bucket == "" {
			errs = append(errs, errors.New("s3 endpoint given without a bucket"))
		}
	}
	if c.Bandwidth.UploadBytesPerSec < 0 || c.Bandwidth.DownloadBytesPerSec < 0 {
		errs = append(errs, errors.New("bandwidth limits must be 0 (unlimited) or positive"))
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.Log.Format))
	}
	for _, p := range c.ISCSIPortals {
		if _, _, err := net.SplitHostPort(p); err != nil {
			errs = append(errs, fmt.Errorf("iscsi_portals %q: want host:port", p))
		}
	}
	switch c.NFS.PortmapAddr {
	case "", "auto", "off":
	default:
		if _, _, err := net.SplitHostPort(c.NFS.PortmapAddr); err != nil {
			errs = append(errs, fmt.Errorf("nfs.portmap_addr %q: want auto, off or host:port", c.NFS.PortmapAddr))
		}
	}
	switch c.ControlTLS.Mode {
	case "", TLSOff, TLSSelfSigned:
	case TLSFiles:
		if c.ControlTLS.CertFile == "" || c.ControlTLS.KeyFile == "" {
			errs = append(errs, errors.New("control_tls.mode files needs cert_file and key_file"))
		}
	default:
		errs = append(errs, fmt.Errorf("control_tls.mode %q: want off, self-signed or files", c.ControlTLS.Mode))
	}
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("cache_size must not be negative"))
	}
	if c.NFS.CacheSize < 0 {
		errs = append(errs, errors.New("nfs.cache_size must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}
