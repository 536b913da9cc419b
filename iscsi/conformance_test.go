package iscsi

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/testenv"
)

// conformanceFloor reads the pass floor recorded in CONFORMANCE.md
// ("Pass floor: N").
func conformanceFloor(t *testing.T) int {
	t.Helper()
	f, err := os.Open("CONFORMANCE.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`Pass floor: (\d+)`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatal("CONFORMANCE.md records no pass floor")
	return 0
}

// cunitSummary parses the "tests" row of CUnit's run summary:
// "tests  Total  Ran  Passed  Failed  Inactive".
func cunitSummary(out string) (total, ran, passed, failed int, ok bool) {
	re := regexp.MustCompile(`(?m)^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, 0, false
	}
	n := make([]int, 4)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	return n[0], n[1], n[2], n[3], true
}

func TestCUnitSummaryParse(t *testing.T) {
	out := "Run Summary:    Type  Total    Ran Passed Failed Inactive\n" +
		"              suites    134    134    n/a      0        0\n" +
		"               tests    615    615    601     14        0\n" +
		"             asserts 189623 189623 189596     27      n/a\n"
	total, ran, passed, failed, ok := cunitSummary(out)
	if !ok || total != 615 || ran != 615 || passed != 601 || failed != 14 {
		t.Fatalf("got %d %d %d %d %v", total, ran, passed, failed, ok)
	}
}

// TestConformance runs libiscsi's iscsi-test-cu (every test, destructive
// ones included) against a Server over a file-backed scsi.Disk and fails
// when fewer tests pass than the floor in CONFORMANCE.md.
func TestConformance(t *testing.T) {
	tool := testenv.RequireTool(t, "iscsi-test-cu")
	floor := conformanceFloor(t)
	ts := startServer(t, serverOpts{file: true, size: 256 << 20, cfg: Config{NopInterval: -1}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	url := fmt.Sprintf("iscsi://%s/%s/0", ts.addr, testTarget)
	cmd := exec.CommandContext(ctx, tool, "-d", "-n", url)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if ctx.Err() != nil {
		t.Fatalf("iscsi-test-cu hung (target hang?):\n%s", tail(out, 4000))
	}
	total, ran, passed, failed, ok := cunitSummary(out)
	if !ok {
		t.Fatalf("no CUnit summary (err %v, target crash?):\n%s", err, tail(out, 4000))
	}
	var failures []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Suite ") && strings.HasSuffix(l, "had failures:") {
			failures = append(failures, strings.TrimSuffix(l, " had failures:"))
		}
	}
	t.Logf("iscsi-test-cu: %d tests, %d ran, %d passed, %d failed (floor %d)", total, ran, passed, failed, floor)
	for _, f := range failures {
		t.Logf("failed: %s", f)
	}
	if passed < floor {
		t.Fatalf("%d tests passed, below the floor of %d recorded in CONFORMANCE.md", passed, floor)
	}
	if len(ts.srv.Sessions()) > 2 {
		t.Errorf("%d sessions left after the run", len(ts.srv.Sessions()))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
