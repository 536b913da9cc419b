package appliance

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/state"
)

func TestBandwidthSchedule(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lim := objstore.NewLimiter(100, 200)
	b, err := newBandwidth(lim, db)
	if err != nil {
		t.Fatal(err)
	}
	// Weekdays 09:00-17:00 throttle uploads; nights are unlimited.
	bs := api.BandwidthSchedule{Intervals: []api.BandwidthInterval{
		{DaysOfWeek: []int{1, 2, 3, 4, 5}, Start: "09:00", End: "17:00", UploadBytesPerSec: 10, DownloadBytesPerSec: 20},
		{Start: "22:00", End: "24:00"},
	}}
	if _, err := b.SetBandwidthSchedule(context.Background(), bs); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		at       string
		up, down int64
		active   int
	}{
		{"2026-11-25T10:30:00Z", 10, 20, 0}, // Wednesday, office hours
		{"2026-11-29T10:30:00Z", 100, 200, -1},
		{"2026-11-25T17:00:00Z", 100, 200, -1}, // end is exclusive
		{"2026-11-28T23:59:00Z", 0, 0, 1},
	}
	for _, c := range cases {
		now, _ := time.Parse(time.RFC3339, c.at)
		b.apply(now)
		up, down := lim.Limits()
		got, _ := b.BandwidthSchedule(context.Background())
		if up != c.up || down != c.down || got.Active != c.active {
			t.Errorf("%s: limits %d/%d active %d, want %d/%d active %d", c.at, up, down, got.Active, c.up, c.down, c.active)
		}
	}
	if base, _ := b.Limits(); base != 100 {
		t.Fatalf("base limit %d", base)
	}
	bad := []api.BandwidthInterval{
		{Start: "10:00", End: "09:00"},
		{Start: "9am", End: "10:00"},
		{DaysOfWeek: []int{7}, Start: "01:00", End: "02:00"},
	}
	for _, iv := range bad {
		if _, err := b.SetBandwidthSchedule(context.Background(), api.BandwidthSchedule{Intervals: []api.BandwidthInterval{iv}}); !isStatus(err, 400) && err == nil {
			t.Errorf("interval %+v accepted", iv)
		}
	}
	overlap := api.BandwidthSchedule{Intervals: []api.BandwidthInterval{{Start: "01:00", End: "03:00"}, {DaysOfWeek: []int{2}, Start: "02:00", End: "04:00"}}}
	if _, err := b.SetBandwidthSchedule(context.Background(), overlap); err == nil {
		t.Error("overlapping intervals accepted")
	}
}

func TestGatewaySettingsAPI(t *testing.T) {
	_, c := startDaemon(t, testConfig(t))
	ctx := context.Background()
	var bs api.BandwidthSchedule
	if err := c.Do(ctx, http.MethodPut, "/v1/gateway/bandwidth-schedule", api.BandwidthSchedule{Intervals: []api.BandwidthInterval{{Start: "00:00", End: "24:00", UploadBytesPerSec: 1 << 20}}}, &bs); err != nil {
		t.Fatal(err)
	}
	if bs.Active != 0 || len(bs.Intervals) != 1 {
		t.Fatalf("schedule %+v", bs)
	}
	var mw api.MaintenanceWindow
	if err := c.Do(ctx, http.MethodPut, "/v1/gateway/maintenance", api.MaintenanceWindow{DayOfWeek: 6, Hour: 2}, &mw); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPut, "/v1/gateway/maintenance", api.MaintenanceWindow{DayOfWeek: 9}, nil); !isStatus(err, 400) {
		t.Fatalf("bad window: %v", err)
	}
}
