package control

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/control/audit"
)

// BenchmarkAPIRead measures authenticated, audited read calls per second
// (GET /v1/gateway over loopback HTTP with keep-alive).
//
//	go test -run '^$' -bench APIRead -benchtime 5s ./control/
func BenchmarkAPIRead(b *testing.B) {
	f, _ := newAuditFixtureTB(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", f.srv.URL+"/v1/gateway", nil)
			req.Header.Set("Authorization", "Bearer "+f.token)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkAuditAppend measures audit records per second sustained into
// fsync'd segments (group commit: one fsync per batch the writer drains).
//
//	go test -run '^$' -bench AuditAppend -benchtime 200000x ./control/
func BenchmarkAuditAppend(b *testing.B) {
	l, err := audit.Open(filepath.Join(b.TempDir(), "audit"), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rec := audit.Record{Category: audit.Management, Source: "api", Name: "CreateVolume", Resource: "volumes/v1",
		Identity: audit.Identity{Type: "token", ID: "0123456789ab", Role: "admin"}, Result: audit.Success,
		Params: map[string]any{"body": map[string]any{"name": "v1", "size_bytes": 1 << 30}}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := l.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}
