package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/appliance"
	"github.com/sluicegw/sluice/control/api"
)

func startDaemon(t *testing.T) string {
	t.Helper()
	data, _ := runDaemon(t)
	return data
}

// runDaemon starts a daemon and returns its data directory and a stop
// function (also run at cleanup).
func runDaemon(t *testing.T) (string, func()) {
	t.Helper()
	cfg := appliance.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.ControlAddr = "127.0.0.1:0"
	cfg.ISCSIAddr = "127.0.0.1:0"
	cfg.NFSAddr = "127.0.0.1:0"
	cfg.NFS.PortmapAddr = "off"
	cfg.CacheSize = 64 << 20
	d, err := appliance.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
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
			<-done
		})
	}
	t.Cleanup(stop)
	return cfg.DataDir, stop
}

func TestAuditCommands(t *testing.T) {
	data, stop := runDaemon(t)
	ctl(t, "--data", data, "volume", "create", "a1", "--size", "8MiB")
	ctl(t, "--data", data, "volume", "create", "a2", "--size", "8MiB")
	ctl(t, "--data", data, "token", "create", "ops", "--role", "operator")
	code, out, errs := ctl(t, "--data", data, "audit", "events", "--name", "CreateVolume")
	if code != 0 || strings.Count(out, "CreateVolume") != 2 {
		t.Fatalf("audit events: %d %q %s", code, out, errs)
	}
	code, out, _ = ctl(t, "--data", data, "-o", "json", "audit", "verify", "--remote", "local")
	if code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("remote verify: %d %q", code, out)
	}
	stop()
	if code, out, errs = ctl(t, "--data", data, "audit", "verify"); code != 0 || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("offline verify: %d %q %s", code, out, errs)
	}
	// Edit the second record: verify names it.
	seg, _ := filepath.Glob(filepath.Join(data, "audit", "seg-*.jsonl"))
	raw, _ := os.ReadFile(seg[0])
	lines := bytes.SplitAfter(raw, []byte("\n"))
	edited := -1
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"name":"a2"`)) {
			lines[i] = bytes.Replace(l, []byte(`"name":"a2"`), []byte(`"name":"a3"`), 1)
			edited = i + 1
			break
		}
	}
	if edited < 0 {
		t.Fatalf("no record of creating a2 in %s", raw)
	}
	os.WriteFile(seg[0], bytes.Join(lines, nil), 0o600)
	code, out, _ = ctl(t, "--data", data, "audit", "verify")
	if want := fmt.Sprintf("line %d (record %d)", edited, edited); code != exitAPI || !strings.Contains(out, want) {
		t.Fatalf("verify after tampering: %d %q", code, out)
	}
}

func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	data := startDaemon(t)
	code, out, errs := ctl(t, "--data", data, "status", "--output", "json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	var h api.Health
	if err := json.Unmarshal([]byte(out), &h); err != nil || h.Status != "ok" {
		t.Fatalf("status json %q: %v", out, err)
	}
	if code, out, _ = ctl(t, "--data", data, "status"); code != 0 || !strings.Contains(out, "STATUS") {
		t.Fatalf("status table: %d %q", code, out)
	}
	code, out, errs = ctl(t, "--data", data, "-o", "json", "gateway", "bandwidth", "--upload", "10MiB")
	var b api.Bandwidth
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.UploadBytesPerSec != 10<<20 {
		t.Fatalf("bandwidth: %d %q %s", code, out, errs)
	}
	code, out, errs = ctl(t, "--data", data, "gateway", "bandwidth-schedule", "--interval", "1-5 09:00-17:00 10MiB 50MiB", "--interval", "* 22:00-24:00 0 0")
	if code != 0 || !strings.Contains(out, "09:00") || !strings.Contains(out, "1,2,3,4,5") {
		t.Fatalf("bandwidth-schedule: %d %q %s", code, out, errs)
	}
	if code, _, _ = ctl(t, "--data", data, "gateway", "bandwidth-schedule", "--interval", "Mon 9-5 fast"); code != exitUsage {
		t.Fatalf("bad interval: %d", code)
	}
	if code, out, _ = ctl(t, "--data", data, "gateway", "maintenance", "--day", "6", "--hour", "2"); code != 0 || !strings.Contains(out, "Saturday 02:00") {
		t.Fatalf("maintenance: %d %q", code, out)
	}
	if code, out, errs = ctl(t, "--data", data, "tape", "create", "--barcode-prefix", "ABC", "--count", "2"); code != 0 || strings.Count(out, "ABC") != 2 {
		t.Fatalf("tape create: %d %q %s", code, out, errs)
	}
	if code, out, _ = ctl(t, "--data", data, "tape", "library"); code != 0 || !strings.Contains(out, "mediachanger") {
		t.Fatalf("tape library: %d %q", code, out)
	}
	secretFile := t.TempDir() + "/secret"
	if err := os.WriteFile(secretFile, []byte("a-long-chap-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = ctl(t, "--data", data, "-o", "json", "volume", "create", "v1", "--size", "64MiB",
		"--chap-user", "bob", "--chap-secret-file", secretFile, "--allow-initiator", "iqn.2026-11.test:host1")
	var v api.Volume
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.SizeBytes != 64<<20 || v.CHAPUser != "bob" || len(v.AllowedInitiators) != 1 {
		t.Fatalf("volume create: %d %q %s", code, out, errs)
	}
	if strings.Contains(out, "a-long-chap-secret") {
		t.Fatal("volume create printed the secret")
	}
	if code, out, _ = ctl(t, "--data", data, "volume", "list"); code != 0 || !strings.Contains(out, "v1") || !strings.Contains(out, "one-way") {
		t.Fatalf("volume list: %d %q", code, out)
	}
	if code, _, _ = ctl(t, "--data", data, "volume", "show", "v1"); code != 0 {
		t.Fatalf("volume show: %d", code)
	}
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"volume exists", []string{"--data", data, "volume", "create", "v1", "--size", "64MiB"}, exitAPI},
		{"volume without size", []string{"--data", data, "volume", "create", "v2"}, exitUsage},
		{"missing volume", []string{"--data", data, "volume", "show", "nope"}, exitNotFound},
		{"bad token", []string{"--data", data, "--token", "sluice_x.y", "gateway", "show"}, exitAuth},
		{"unreachable", []string{"--endpoint", "http://127.0.0.1:1", "status"}, exitUnreachable},
		{"bad output", []string{"--data", data, "--output", "yaml", "status"}, exitUsage},
		{"bad size", []string{"--data", data, "gateway", "bandwidth", "--upload", "lots"}, exitUsage},
		{"unknown flag", []string{"status", "--nope"}, exitUsage},
		{"extra argument", []string{"--data", data, "status", "x"}, exitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code, _, errs := ctl(t, c.args...); code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, errs)
			}
		})
	}
	if code, _, errs = ctl(t, "--data", data, "volume", "delete", "v1"); code != 0 {
		t.Fatalf("volume delete: %d %s", code, errs)
	}
}
