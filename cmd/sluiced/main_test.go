package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/control/api"
)

func TestExitCodes(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgFile, []byte("s3:\n  endpoint: http://"+deadAddr+"\n  bucket: b\n  start_timeout: 1s\n"), 0o600)
	badFile := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badFile, []byte("colour: blue\n"), 0o600)

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"help", []string{"-h"}, exitOK, "Usage"},
		{"unknown flag", []string{"--frobnicate"}, exitConfig, "frobnicate"},
		{"stray argument", []string{"extra"}, exitConfig, "unexpected arguments"},
		{"bad log level", []string{"--log-level", "loud"}, exitConfig, "log level"},
		{"unknown config key", []string{"--config", badFile}, exitConfig, "colour"},
		{"port in use", []string{"--control-addr", busy.Addr().String()}, exitListen, "cannot listen"},
		{"store unreachable", []string{"--config", cfgFile}, exitStore, "object store unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := append([]string{"--data", t.TempDir(), "--iscsi-addr", "127.0.0.1:0", "--nfs-addr", "127.0.0.1:0", "--portmap-addr", "off"}, c.args...)
			if code := run(args, &stderr); code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.msg) {
				t.Fatalf("stderr lacks %q:\n%s", c.msg, stderr.String())
			}
		})
	}
}

// TestGracefulShutdown runs the real binary, checks it serves, sends
// SIGTERM and expects exit 0 and the endpoint file removed.
func TestGracefulShutdown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sluiced")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := t.TempDir()
	cmd := exec.Command(bin, "--data", data, "--control-addr", "127.0.0.1:0", "--iscsi-addr", "127.0.0.1:0", "--nfs-addr", "127.0.0.1:0", "--portmap-addr", "off", "--log-format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ep api.ControlEndpoint
	deadline := time.Now().Add(20 * time.Second)
	for {
		raw, err := os.ReadFile(filepath.Join(data, api.ControlEndpointFile))
		if err == nil && json.Unmarshal(raw, &ep) == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("daemon did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(ep.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("health: %d", resp.StatusCode)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(data, api.ControlEndpointFile)); !os.IsNotExist(err) {
		t.Fatal("control.json left behind")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", stderr.String())
	}
	token, _ := os.ReadFile(filepath.Join(data, api.AdminTokenFile))
	if bytes.Contains(stderr.Bytes(), bytes.TrimSpace(token)) {
		t.Fatal("the admin token appears in the log")
	}
}
