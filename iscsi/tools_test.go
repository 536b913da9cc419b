package iscsi

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/testenv"
)

// TestLibiscsiCHAP logs in with libiscsi's iscsi-inq and iscsi-ls using
// CHAP credentials in the URL, and checks that a wrong secret fails with an
// authentication error.
func TestLibiscsiCHAP(t *testing.T) {
	inq := testenv.RequireTool(t, "iscsi-inq")
	ls := testenv.RequireTool(t, "iscsi-ls")
	ts := startServer(t, serverOpts{target: Target{CHAP: &CHAPConfig{User: "alice", Secret: "alice-secret-12"}}})
	run := func(tool, url string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, tool, url).CombinedOutput()
		return string(out), err
	}
	tests := []struct {
		name    string
		tool    string
		url     string
		wantErr bool
		want    string
	}{
		{"inquiry", inq, fmt.Sprintf("iscsi://alice%%alice-secret-12@%s/%s/0", ts.addr, testTarget), false, "DIRECT_ACCESS"},
		{"wrong secret", inq, fmt.Sprintf("iscsi://alice%%not-the-secret@%s/%s/0", ts.addr, testTarget), true, "Authentication failure"},
		{"no credentials", inq, fmt.Sprintf("iscsi://%s/%s/0", ts.addr, testTarget), true, ""},
		{"discovery and LUN list", ls, fmt.Sprintf("iscsi://alice%%alice-secret-12@%s", ts.addr), false, testTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.tool, tt.url)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v:\n%s", err, tt.wantErr, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}
