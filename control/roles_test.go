package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/state"
)

// newAuditFixture is a server with an audit trail and an admin token.
func newAuditFixture(t *testing.T) (*fixture, *audit.Log) { return newAuditFixtureTB(t) }

func newAuditFixtureTB(t testing.TB) (*fixture, *audit.Log) {
	t.Helper()
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
	tok, _, err := NewToken(db, "root", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	lim := objstore.NewLimiter(0, 0)
	s := New(Config{Version: "test", State: db, Bandwidth: lim, Audit: log})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, token: tok.Reveal(), limiter: lim}, log
}

func (f *fixture) newToken(t *testing.T, role string) string {
	t.Helper()
	status, raw := f.do(t, "POST", "/v1/tokens", f.token, "application/json", `{"name":"`+role+` token","role":"`+role+`"}`)
	if status != http.StatusCreated {
		t.Fatalf("create %s token: %d %s", role, status, raw)
	}
	var tok api.Token
	if err := json.Unmarshal(raw, &tok); err != nil || tok.Token == "" {
		t.Fatalf("token answer %s", raw)
	}
	return tok.Token
}

func TestRolesAndTokens(t *testing.T) {
	f, _ := newAuditFixture(t)
	op := f.newToken(t, RoleOperator)
	ro := f.newToken(t, RoleReadOnly)
	cases := []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"read-only may read", "GET", "/v1/gateway", ro, "", 200},
		{"read-only may not write", "PUT", "/v1/gateway/bandwidth", ro, `{}`, 403},
		{"operator may write", "PUT", "/v1/gateway/bandwidth", op, `{}`, 200},
		{"operator may not list tokens", "GET", "/v1/tokens", op, "", 403},
		{"operator may not read the audit trail", "GET", "/v1/audit/events", op, "", 403},
		{"admin lists tokens", "GET", "/v1/tokens", f.token, "", 200},
		{"bad role", "POST", "/v1/tokens", f.token, `{"name":"x","role":"god"}`, 400},
		{"no name", "POST", "/v1/tokens", f.token, `{"role":"admin"}`, 400},
		{"revoke unknown", "DELETE", "/v1/tokens/000000000000", f.token, "", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct := ""
			if c.body != "" {
				ct = "application/json"
			}
			if status, raw := f.do(t, c.method, c.path, c.token, ct, c.body); status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, raw)
			}
		})
	}
	// The only admin token cannot be revoked; a revoked token stops working.
	status, raw := f.do(t, "GET", "/v1/tokens", f.token, "", "")
	var list api.TokenList
	json.Unmarshal(raw, &list)
	if status != 200 || len(list.Tokens) != 3 || strings.Contains(string(raw), `"token"`) {
		t.Fatalf("list: %d %s", status, raw)
	}
	var adminID, roID string
	for _, tk := range list.Tokens {
		switch tk.Role {
		case RoleAdmin:
			adminID = tk.ID
		case RoleReadOnly:
			roID = tk.ID
		}
	}
	if status, _ := f.do(t, "DELETE", "/v1/tokens/"+adminID, f.token, "", ""); status != http.StatusConflict {
		t.Fatalf("revoking the last admin: %d", status)
	}
	if status, _ := f.do(t, "DELETE", "/v1/tokens/"+roID, f.token, "", ""); status != http.StatusNoContent {
		t.Fatalf("revoke: %d", status)
	}
	if status, _ := f.do(t, "GET", "/v1/gateway", ro, "", ""); status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", status)
	}
}

func TestFailedAuthIsRateLimited(t *testing.T) {
	f := newFixture(t)
	var last int
	for range authFailBurst + 2 {
		last, _ = f.do(t, "GET", "/v1/gateway", "sluice_000000000000.bm9wZQ", "", "")
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", authFailBurst+2, last)
	}
	// Even the right token waits now: the address is throttled.
	if status, _ := f.do(t, "GET", "/v1/gateway", f.token, "", ""); status != http.StatusTooManyRequests {
		t.Fatalf("good token from a throttled address: %d", status)
	}
}

func TestAuditRecordsCalls(t *testing.T) {
	f, log := newAuditFixture(t)
	f.do(t, "PUT", "/v1/gateway/bandwidth", f.token, "application/json", `{"upload_bytes_per_sec":5}`)
	f.do(t, "GET", "/v1/gateway", "sluice_000000000000.bm9wZQ", "", "")
	f.do(t, "POST", "/v1/tokens", f.token, "application/json", `{"name":"ci","role":"operator"}`)
	status, raw := f.do(t, "GET", "/v1/audit/events?limit=10", f.token, "", "")
	if status != 200 {
		t.Fatalf("events: %d %s", status, raw)
	}
	var ev api.AuditEvents
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ev.Events {
		var r audit.Record
		json.Unmarshal(e, &r)
		names = append(names, r.Name)
		if r.RequestID == "" || r.SourceAddr == "" || r.Time.IsZero() {
			t.Errorf("record lacks who/where/when: %s", e)
		}
	}
	want := []string{"UpdateBandwidth", "AuthenticationFailed", "CreateToken"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("recorded %v, want %v", names, want)
	}
	// The created token's text never reaches the trail.
	log.Flush()
	rep, err := audit.Verify(t.Context(), audit.DirSource(log.Dir()), nil)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	status, raw = f.do(t, "GET", "/v1/audit/events?name=UpdateBandwidth", f.token, "", "")
	if status != 200 || !strings.Contains(string(raw), `"upload_bytes_per_sec": 5`) {
		t.Fatalf("filtered events: %d %s", status, raw)
	}
	if status, _ := f.do(t, "GET", "/v1/audit/events?since=yesterday", f.token, "", ""); status != 400 {
		t.Fatalf("bad since: %d", status)
	}
	status, raw = f.do(t, "GET", "/v1/audit/verify", f.token, "", "")
	if status != 200 || !strings.Contains(string(raw), `"ok": true`) {
		t.Fatalf("verify via API: %d %s", status, raw)
	}
}
