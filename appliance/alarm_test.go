package appliance

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/monitor"
	"github.com/sluicegw/sluice/internal/events"
)

// TestAlarmThroughAPI creates an alarm on a volume's write rate, drives
// writes over the threshold and back, and expects ALARM then OK, with both
// changes in the audit trail and on the event bus.
func TestAlarmThroughAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsInterval = 250 * time.Millisecond
	d, c := startDaemon(t, cfg)
	ctx := context.Background()
	sub := d.bus.Subscribe(16, events.AlarmStateChanged)
	defer sub.Close()
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "busy", SizeBytes: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	rule := monitor.Rule{Name: "busy-writes", Metric: "sluice_volume_write_bytes_total", Labels: map[string]string{"volume": "busy"},
		Rate: true, Statistic: "max", Comparison: ">", Threshold: 1000, Periods: 2, PeriodSeconds: 1}
	var created monitor.Alarm
	if err := c.Do(ctx, http.MethodPost, "/v1/alarms", rule, &created); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/alarms", rule, nil); !isStatus(err, http.StatusConflict) {
		t.Fatalf("duplicate alarm: %v", err)
	}
	d.volumes.mu.Lock()
	dev := d.volumes.volumes["busy"].dev
	d.volumes.mu.Unlock()
	buf := make([]byte, 64<<10)
	wait := func(want string, writing bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if writing {
				if err := dev.WriteAt(ctx, buf, 0, false); err != nil {
					t.Fatal(err)
				}
			}
			var al monitor.Alarm
			if err := c.Do(ctx, http.MethodGet, "/v1/alarms/busy-writes", nil, &al); err != nil {
				t.Fatal(err)
			}
			if al.State.State == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("alarm never reached %s", want)
	}
	wait(monitor.StateAlarm, true)
	wait(monitor.StateOK, false)
	var seen []string
	timeout := time.After(5 * time.Second)
	for len(seen) < 2 {
		select {
		case e := <-sub.C():
			seen = append(seen, e.Attrs["to"])
		case <-timeout:
			t.Fatalf("bus events: %v", seen)
		}
	}
	ev, err := c.AuditEvents(ctx, map[string][]string{"name": {"AlarmStateChanged"}})
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, e := range ev.Events {
		all += string(e)
	}
	if !strings.Contains(all, `"ALARM"`) || !strings.Contains(all, `"OK"`) {
		t.Fatalf("audit lacks the state changes: %s", all)
	}
	var q struct {
		Series []monitor.Series `json:"series"`
	}
	if err := c.MetricsQuery(ctx, map[string][]string{"name": {"sluice_volume_write_bytes_total"}, "label": {"volume=busy"}}, &q); err != nil || len(q.Series) != 1 || len(q.Series[0].Points) == 0 {
		t.Fatalf("metrics query: %+v %v", q, err)
	}
}
