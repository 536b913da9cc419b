package appliance

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/testenv"
)

// TestTapeLifecycleThroughAPI drives the tape library through the API:
// create, export, archive, retrieve (read-only), delete; and checks the
// changer and drive targets are discoverable over iSCSI.
func TestTapeLifecycleThroughAPI(t *testing.T) {
	iscsiLs := testenv.RequireTool(t, "iscsi-ls")
	cfg := testConfig(t)
	cfg.Tape.Drives = 2
	d, c := startDaemon(t, cfg)
	ctx := context.Background()
	var lib api.TapeLibrary
	if err := c.Do(ctx, http.MethodGet, "/v1/tape-library", nil, &lib); err != nil {
		t.Fatal(err)
	}
	if lib.ChangerIQN != IQNPrefix+"sluice-mediachanger" || len(lib.DriveIQNs) != 2 {
		t.Fatalf("library %+v", lib)
	}
	out, err := exec.Command(iscsiLs, "iscsi://"+d.ISCSIAddr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), lib.ChangerIQN) || !strings.Contains(string(out), lib.DriveIQNs[1]) {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	var created api.TapeList
	if err := c.Do(ctx, http.MethodPost, "/v1/tapes", api.CreateTapes{BarcodePrefix: "TST", Count: 2, SizeBytes: 100 << 30, Pool: "archive"}, &created); err != nil {
		t.Fatal(err)
	}
	if len(created.Tapes) != 2 || created.Tapes[0].Status != "available" {
		t.Fatalf("created %+v", created)
	}
	bc := created.Tapes[0].Barcode
	if err := c.Do(ctx, http.MethodPost, "/v1/tapes", api.CreateTapes{BarcodePrefix: "bad1", Count: 1, SizeBytes: 100 << 30}, nil); !isStatus(err, 400) {
		t.Fatalf("bad barcode prefix: %v", err)
	}
	step := func(action, wantStatus string) api.Tape {
		t.Helper()
		var tp api.Tape
		if err := c.Do(ctx, http.MethodPost, "/v1/tapes/"+bc+"/"+action, nil, &tp); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		if tp.Status != wantStatus {
			t.Fatalf("after %s: %+v", action, tp)
		}
		return tp
	}
	step("export", "exported")
	step("archive", "archived")
	if tp := step("retrieve", "retrieved"); !tp.ReadOnly {
		t.Fatalf("retrieved tape is writable: %+v", tp)
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/tapes/NOPE0000", nil, nil); !isStatus(err, 404) {
		t.Fatalf("unknown tape: %v", err)
	}
	if err := c.Do(ctx, http.MethodDelete, "/v1/tapes/"+created.Tapes[1].Barcode, nil, nil); err != nil {
		t.Fatal(err)
	}
	var all api.TapeList
	if err := c.Do(ctx, http.MethodGet, "/v1/tapes", nil, &all); err != nil || len(all.Tapes) != 1 {
		t.Fatalf("list: %+v %v", all, err)
	}
	ev, err := c.AuditEvents(ctx, map[string][]string{"name": {"ArchiveTape"}})
	if err != nil || len(ev.Events) != 1 {
		t.Fatalf("ArchiveTape audit: %v %v", ev, err)
	}
}
