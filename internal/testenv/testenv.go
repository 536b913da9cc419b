// Package testenv is the test-support package shared by Sluice's tests: it
// finds external tools (MinIO, libiscsi and libnfs clients, qemu-img), starts
// a real MinIO server on a random loopback port, and applies the project's
// rule for missing tools: under CI=true a test that needs a missing tool
// fails; elsewhere it is skipped with a message that says how to install it.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where every
// required tool must be present.
func InCI() bool { return os.Getenv("CI") == "true" }

// toolHints says how scripts/test installs each external tool.
var toolHints = map[string]string{
	"minio":         "go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c (scripts/test does it)",
	"iscsi-test-cu": "apt-get install libiscsi-bin",
	"iscsi-ls":      "apt-get install libiscsi-bin",
	"iscsi-inq":     "apt-get install libiscsi-bin",
	"iscsi-perf":    "apt-get install libiscsi-bin",
	"nfs-ls":        "apt-get install libnfs-utils",
	"nfs-cp":        "apt-get install libnfs-utils",
	"nfs-cat":       "apt-get install libnfs-utils",
	"qemu-img":      "apt-get install qemu-utils qemu-block-extra",
}

// LookTool returns the path of an external tool: the environment variable
// envVar when it is set (and envVar is not empty), then PATH, then the
// project's tool cache (~/.cache/sluice-tools/bin). It returns "" when the
// tool is nowhere.
func LookTool(name, envVar string) string {
	if envVar != "" {
		if p := os.Getenv(envVar); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "sluice-tools", "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// RequireTool returns the path of an external tool the test needs. When the
// tool is missing the test fails under CI=true and is skipped elsewhere.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	envVar := ""
	if name == "minio" {
		envVar = "MINIO_BIN"
	}
	p := LookTool(name, envVar)
	if p != "" {
		return p
	}
	msg := "required tool " + name + " not found"
	if h, ok := toolHints[name]; ok {
		msg += "; install it with: " + h
	}
	if InCI() {
		t.Fatal(msg + " (CI=true: missing tools fail the test)")
	}
	t.Skip(msg)
	return ""
}

// Unsupported reports that the machine lacks something a test needs that
// is not a tool (a file-system feature, say): under CI=true the test
// fails, elsewhere it is skipped with the reason.
func Unsupported(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatal(reason + " (CI=true: the CI machine must support this)")
	}
	t.Skip(reason)
}
