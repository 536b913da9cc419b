package appliance

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/sluicegw/sluice/control/api"
)

// TestMetricsLint scrapes /metrics with a volume in use and checks it the
// way `promtool check metrics` does (promlint is promtool's linter).
func TestMetricsLint(t *testing.T) {
	d, c := startDaemon(t, testConfig(t))
	if _, err := c.CreateVolume(context.Background(), api.CreateVolume{Name: "m", SizeBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + d.ControlAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"sluice_volume_write_bytes_total", "sluice_objstore_requests_total", "sluice_objstore_reachable 1", "sluice_volume_size_bytes{volume=\"m\"}"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(string(raw))).Lint()
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "sluice_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}
