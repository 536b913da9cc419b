package control

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/state"
)

type fixture struct {
	srv     *httptest.Server
	token   string
	limiter *objstore.Limiter
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tok, _, err := NewToken(db, "test", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	lim := objstore.NewLimiter(0, 0)
	s := New(Config{Version: "test", State: db, Bandwidth: lim})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, token: tok.Reveal(), limiter: lim}
}

func (f *fixture) do(t testing.TB, method, path, token, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func TestAPIStatusAndErrors(t *testing.T) {
	f := newFixture(t)
	good := f.token
	forged := good[:len(good)-4] + "AAAA"
	cases := []struct {
		name        string
		method      string
		path        string
		token       string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"health needs no token", "GET", "/v1/health", "", "", "", 200, ""},
		{"metrics need no token", "GET", "/metrics", "", "", "", 200, ""},
		{"missing token", "GET", "/v1/gateway", "", "", "", 401, "unauthorized"},
		{"wrong token", "GET", "/v1/gateway", "sluice_000000000000.bm90LWEtdG9rZW4", "", "", 401, "unauthorized"},
		{"forged secret", "GET", "/v1/gateway", forged, "", "", 401, "unauthorized"},
		{"not a token", "GET", "/v1/gateway", "hello", "", "", 401, "unauthorized"},
		{"good token", "GET", "/v1/gateway", good, "", "", 200, ""},
		{"unknown path", "GET", "/v1/no-such-thing", good, "", "", 404, "not_found"},
		{"unknown path outside v1", "GET", "/nope", "", "", "", 404, "not_found"},
		{"wrong method", "DELETE", "/v1/gateway/bandwidth", good, "", "", 405, "method_not_allowed"},
		{"malformed body", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{"upload_bytes_per_sec":`, 400, "bad_request"},
		{"unknown field", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{"upload":5}`, 400, "bad_request"},
		{"wrong type", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{"upload_bytes_per_sec":"fast"}`, 400, "bad_request"},
		{"trailing data", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{} {}`, 400, "bad_request"},
		{"empty body", "PUT", "/v1/gateway/bandwidth", good, "application/json", ``, 400, "bad_request"},
		{"negative limit", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{"upload_bytes_per_sec":-1}`, 400, "bad_request"},
		{"not JSON", "PUT", "/v1/gateway/bandwidth", good, "text/plain", `{}`, 415, "unsupported_media_type"},
		{"too large", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{"upload_bytes_per_sec":1` + strings.Repeat(" ", maxBody) + `}`, 413, "payload_too_large"},
		{"set limits", "PUT", "/v1/gateway/bandwidth", good, "application/json", `{"upload_bytes_per_sec":1048576,"download_bytes_per_sec":0}`, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, raw := f.do(t, c.method, c.path, c.token, c.contentType, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, raw)
			}
			if c.code == "" {
				return
			}
			var e api.Error
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("error body is not JSON: %q", raw)
			}
			if e.Error.Code != c.code || e.Error.Message == "" || e.Error.RequestID == "" {
				t.Fatalf("error body %+v, want code %s with a message and request id", e.Error, c.code)
			}
		})
	}
	if up, _ := f.limiter.Limits(); up != 1048576 {
		t.Fatalf("limiter not changed: %d", up)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("sluice_abc.supersecret")
	for _, out := range []string{s.String(), s.GoString()} {
		if strings.Contains(out, "supersecret") {
			t.Fatalf("secret printed: %q", out)
		}
	}
	raw, _ := json.Marshal(struct{ S Secret }{s})
	if strings.Contains(string(raw), "supersecret") {
		t.Fatalf("secret in JSON: %s", raw)
	}
}

// FuzzBandwidthBody feeds arbitrary bodies to the JSON decoder of a write
// route: every answer is 200 or a 4xx with a JSON error, never a panic.
func FuzzBandwidthBody(f *testing.F) {
	for _, seed := range []string{`{}`, `{"upload_bytes_per_sec":5}`, `{"download_bytes_per_sec":-3}`, `[`, `null`, `{"a":{"b":[1,2,{}]}}`, "\x00\xff", `{"upload_bytes_per_sec":1e309}`} {
		f.Add(seed)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, body string) {
		status, raw := fx.do(t, "PUT", "/v1/gateway/bandwidth", fx.token, "application/json", body)
		if status == 200 {
			return
		}
		if status < 400 || status >= 500 {
			t.Fatalf("status %d for %q", status, body)
		}
		var e api.Error
		if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == "" {
			t.Fatalf("status %d without a JSON error: %q", status, raw)
		}
	})
}
