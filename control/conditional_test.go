package control

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/api"
)

func (f *fixture) req(t *testing.T, method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

func TestETagAndIfMatch(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.req(t, "GET", "/v1/gateway/bandwidth", "", nil)
	tag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || tag == "" {
		t.Fatalf("GET: %d, ETag %q", resp.StatusCode, tag)
	}
	if resp, _ := f.req(t, "GET", "/v1/gateway/bandwidth", "", map[string]string{"If-None-Match": tag}); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	body := `{"upload_bytes_per_sec":1000}`
	if resp, raw := f.req(t, "PUT", "/v1/gateway/bandwidth", body, map[string]string{"If-Match": tag}); resp.StatusCode != 200 {
		t.Fatalf("PUT with the current ETag: %d %s", resp.StatusCode, raw)
	}
	// The first writer changed it: the same ETag is stale now.
	resp, raw := f.req(t, "PUT", "/v1/gateway/bandwidth", `{"upload_bytes_per_sec":5}`, map[string]string{"If-Match": tag})
	var e api.Error
	json.Unmarshal(raw, &e)
	if resp.StatusCode != http.StatusPreconditionFailed || e.Error.Code != "precondition_failed" {
		t.Fatalf("PUT with a stale ETag: %d %s", resp.StatusCode, raw)
	}
	if up, _ := f.limiter.Limits(); up != 1000 {
		t.Fatalf("stale write applied: %d", up)
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t)
	body := `{"name":"ci","role":"read-only"}`
	key := map[string]string{"Idempotency-Key": "create-ci-1"}
	r1, raw1 := f.req(t, "POST", "/v1/tokens", body, key)
	r2, raw2 := f.req(t, "POST", "/v1/tokens", body, key)
	if r1.StatusCode != 201 || r2.StatusCode != 201 || string(raw1) != string(raw2) || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %d %q", r1.StatusCode, r2.StatusCode, r2.Header.Get("Idempotent-Replayed"))
	}
	_, list := f.req(t, "GET", "/v1/tokens", "", nil)
	var tl api.TokenList
	json.Unmarshal(list, &tl)
	if len(tl.Tokens) != 2 {
		t.Fatalf("%d tokens after a replayed create, want 2", len(tl.Tokens))
	}
	if r, _ := f.req(t, "POST", "/v1/tokens", `{"name":"other","role":"read-only"}`, key); r.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("key reused with another body: %d", r.StatusCode)
	}
}

func TestPagination(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.req(t, "POST", "/v1/tokens", `{"name":"t`+string(rune('a'+i))+`","role":"read-only"}`, nil)
	}
	var ids []string
	tok := ""
	for range 10 {
		_, raw := f.req(t, "GET", "/v1/tokens?limit=2&page_token="+tok, "", nil)
		var l api.TokenList
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		for _, tk := range l.Tokens {
			ids = append(ids, tk.ID)
		}
		if l.NextPageToken == "" {
			break
		}
		tok = l.NextPageToken
	}
	if len(ids) != 6 {
		t.Fatalf("paged through %d tokens, want 6", len(ids))
	}
	if r, _ := f.req(t, "GET", "/v1/tokens?limit=0", "", nil); r.StatusCode != 400 {
		t.Fatalf("limit=0: %d", r.StatusCode)
	}
}
