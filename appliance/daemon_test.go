package appliance

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/client"
	"github.com/sluicegw/sluice/internal/testenv"
)

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.ControlAddr = "127.0.0.1:0"
	cfg.ISCSIAddr = "127.0.0.1:0"
	cfg.NFSAddr = "127.0.0.1:0"
	cfg.NFS.PortmapAddr = "off"
	cfg.CacheSize = 64 << 20
	return cfg
}

// startDaemon runs a daemon until the test ends and returns a client.
func startDaemon(t *testing.T, cfg Config) (*Daemon, *client.Client) {
	d, c, _ := runDaemon(t, cfg)
	return d, c
}

// runDaemon runs a daemon and returns a client and a stop function (also
// called when the test ends; calling it twice is harmless).
func runDaemon(t *testing.T, cfg Config) (*Daemon, *client.Client, func()) {
	t.Helper()
	d, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	opts, err := client.Resolve(client.Options{Endpoint: d.ControlAddr(), DataDir: cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	return d, client.New(opts), stop
}

func TestDaemonEmbedded(t *testing.T) {
	// Registered first, so it runs after the daemon's own cleanup.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	cfg := testConfig(t)
	_, c := startDaemon(t, cfg)
	ctx := context.Background()
	h, err := c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || !h.ObjectStore.Reachable || h.ObjectStore.Kind != "embedded" {
		t.Fatalf("health = %+v", h)
	}
	if _, err := c.Gateway(ctx); err != nil {
		t.Fatalf("gateway with the admin token from the data dir: %v", err)
	}
	st, err := os.Stat(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", st, err)
	}
}

func TestDaemonMinIOCreatesBucket(t *testing.T) {
	m := testenv.StartMinIO(t)
	for _, kv := range m.Env() {
		k, v, _ := cut(kv)
		t.Setenv(k, v)
	}
	cfg := testConfig(t)
	cfg.S3 = S3Config{Endpoint: m.Endpoint, Bucket: "created-by-sluiced"}
	_, c := startDaemon(t, cfg)
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !h.ObjectStore.Reachable || h.ObjectStore.Kind != "s3" || h.ObjectStore.Bucket != "created-by-sluiced" {
		t.Fatalf("health = %+v", h)
	}
	ok, err := m.Client(t).BucketExists(context.Background(), "created-by-sluiced")
	if err != nil || !ok {
		t.Fatalf("bucket not created: %v %v", ok, err)
	}
	// The store goes away: health says so, without failing the call.
	m.Stop()
	time.Sleep(healthCacheWait)
	h, err = c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "degraded" || h.ObjectStore.Reachable {
		t.Fatalf("health with MinIO stopped = %+v", h)
	}
}

// healthCacheWait outlasts the control plane's health cache.
const healthCacheWait = 5100 * time.Millisecond

func cut(kv string) (string, string, bool) {
	for i := range kv {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func TestDaemonStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")

	locked := testConfig(t)
	first, err := New(context.Background(), locked, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer first.close()
	second := locked
	second.ControlAddr = "127.0.0.1:0"

	cases := []struct {
		name string
		mod  func(*Config)
		want error
	}{
		{"port in use", func(c *Config) { c.ControlAddr = busy.Addr().String() }, ErrListen},
		{"bad address", func(c *Config) { c.ControlAddr = "nowhere" }, ErrConfig},
		{"bucket without endpoint", func(c *Config) { c.S3.Bucket = "b" }, ErrConfig},
		{"store unreachable", func(c *Config) {
			c.S3 = S3Config{Endpoint: "http://" + deadAddr, Bucket: "b", StartTimeout: 2 * time.Second}
		}, ErrStore},
		{"data dir locked", func(c *Config) { *c = second }, ErrDataDir},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.mod(&cfg)
			d, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				d.close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("New: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("data: /srv/sluice\ncontrol_addr: 0.0.0.0:8780\ns3:\n  endpoint: http://minio:9000\n  bucket: gw\nlog:\n  level: debug\n"), 0o600)
	cfg := DefaultConfig()
	if err := LoadConfigFile(good, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/sluice" || cfg.S3.Bucket != "gw" || cfg.ISCSIAddr != "127.0.0.1:3260" || cfg.Log.Level != "debug" || cfg.Log.Format != "text" {
		t.Fatalf("config = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("data: /x\nsecret_key: nope\n"), 0o600)
	if err := LoadConfigFile(bad, &cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown key: %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	if err := LoadConfigFile(empty, &cfg); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

// TestControlTLSSelfSigned serves the API over TLS with a certificate
// generated on first start; a client given only the data directory trusts
// it, and plain HTTP is not answered.
func TestControlTLSSelfSigned(t *testing.T) {
	cfg := testConfig(t)
	cfg.ControlTLS.Mode = TLSSelfSigned
	d, _ := startDaemon(t, cfg)
	opts, err := client.Resolve(client.Options{DataDir: cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(opts.Endpoint, "https://") || opts.CACertFile == "" {
		t.Fatalf("resolved %+v", opts)
	}
	if _, err := client.New(opts).Gateway(context.Background()); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	plain := client.New(client.Options{Endpoint: "http://" + d.ControlAddr(), Token: opts.Token})
	if _, err := plain.Health(context.Background()); err == nil {
		t.Fatal("plain HTTP answered on a TLS listener")
	}
}

// minioConfig starts a MinIO for the test and returns a daemon config
// using it (credentials in the AWS environment variables).
func minioConfig(t *testing.T) (Config, *testenv.MinIO) {
	t.Helper()
	m := testenv.StartMinIO(t)
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg := testConfig(t)
	cfg.S3 = S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket}
	return cfg, m
}

// TestISCSIPortalsAdvertised: behind NAT the portal SendTargets returns
// is the configured one, not the listener's.
func TestISCSIPortalsAdvertised(t *testing.T) {
	iscsiLs := testenv.RequireTool(t, "iscsi-ls")
	cfg := testConfig(t)
	cfg.ISCSIPortals = []string{"203.0.113.7:3260"}
	d, c := startDaemon(t, cfg)
	if _, err := c.CreateVolume(context.Background(), api.CreateVolume{Name: "nat", SizeBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(iscsiLs, "iscsi://"+d.ISCSIAddr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "203.0.113.7:3260") {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
}
