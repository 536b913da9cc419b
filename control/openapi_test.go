package control

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/control/monitor"
	"github.com/sluicegw/sluice/internal/state"
)

var update = flag.Bool("update", false, "rewrite control/openapi.json from the route table")

// fullServer registers every route the API can have.
func fullServer(t *testing.T) *Server {
	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log, err := audit.Open(filepath.Join(dir, "audit"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	ring := monitor.NewRing(nil, monitor.Options{})
	return New(Config{State: db, Audit: log, Metrics: ring, Alarms: monitor.NewAlarms(ring, nil), Volumes: nopVolumes{},
		Snapshots: nopSnapshots{}, Shares: nopShares{}, Settings: nopSettings{}})
}

// TestOpenAPIDocumentsEveryRoute fails when a route is missing from the
// committed document (or the document is stale).
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := fullServer(t)
	doc, err := s.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("openapi.json", doc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	types := operationTypes()
	var parsed struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &parsed); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	for path, methods := range s.routes {
		for method, ri := range methods {
			if _, ok := types[ri.Name]; !ok {
				t.Errorf("route %s %s (%s) has no documented types in operationTypes", method, path, ri.Name)
			}
			op, ok := parsed.Paths[path][strings.ToLower(method)]
			if !ok || op.OperationID != ri.Name {
				t.Errorf("route %s %s (%s) is not in openapi.json; run go test ./control -run OpenAPI -update", method, path, ri.Name)
			}
		}
	}
	if !bytes.Equal(doc, openAPIDoc) {
		t.Error("openapi.json is stale; run go test ./control -run OpenAPI -update")
	}
}
