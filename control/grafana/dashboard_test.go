// Package grafana holds the Grafana dashboard for users who scrape Sluice
// with their own Prometheus, and the test that keeps it in step with the
// metrics the daemon exports.
package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// knownMetrics are the series the daemon exports (see appliance/metrics.go
// and internal/objstore/metrics.go).
var knownMetrics = map[string]bool{
	"sluice_objstore_uploaded_bytes_total": true, "sluice_objstore_downloaded_bytes_total": true,
	"sluice_objstore_requests_total": true, "sluice_objstore_errors_total": true,
	"sluice_objstore_request_duration_seconds_bucket": true, "sluice_objstore_reachable": true,
	"sluice_volume_read_bytes_total": true, "sluice_volume_write_bytes_total": true,
	"sluice_volume_read_seconds_total": true, "sluice_volume_write_seconds_total": true,
	"sluice_volume_read_ops_total": true, "sluice_volume_write_ops_total": true,
	"sluice_iscsi_sessions": true, "sluice_nfs_sessions": true, "sluice_audit_dropped_records_total": true,
	"sluice_cache_percent_used": true, "sluice_cache_percent_dirty": true, "sluice_upload_buffer_percent_used": true,
	"sluice_volume_cache_hit_percent": true, "sluice_volume_time_since_last_recovery_point_seconds": true,
}

func TestDashboardUsesKnownMetrics(t *testing.T) {
	raw, err := os.ReadFile("sluice-gateway.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	name := regexp.MustCompile(`sluice_[a-z_]+`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				if !knownMetrics[m] {
					t.Errorf("panel %q uses unknown metric %s", p.Title, m)
				}
			}
		}
	}
	if len(d.Panels) < 6 {
		t.Fatalf("%d panels", len(d.Panels))
	}
}
