package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/control/api"
)

// TestEveryRouteAuthorisation walks the whole route table: without a token
// every route but health is 401; with a token whose role is below the
// route's it is 403; a route that takes a body refuses a malformed one
// with 400. Every error is a JSON error body.
func TestEveryRouteAuthorisation(t *testing.T) {
	s := fullServer(t)
	// This test fails authentication on purpose, many times.
	s.authRL.burst = 1 << 20
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	tokens := map[string]string{}
	for _, role := range []string{RoleReadOnly, RoleOperator, RoleAdmin} {
		tok, _, err := NewToken(s.cfg.State, role, role)
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok.Reveal()
	}
	types := operationTypes()
	call := func(method, path, token, body string) (int, api.Error) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.RemoteAddr = "127.0.0.1:1"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	n := 0
	for pattern, methods := range s.routes {
		path := strings.NewReplacer("{name}", "x", "{id}", "x").Replace(pattern)
		for method, ri := range methods {
			n++
			if ri.MinRole == RoleNone {
				continue
			}
			if st, e := call(method, path, "", ""); st != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
				t.Errorf("%s %s without a token: %d %+v", method, pattern, st, e)
			}
			for _, role := range []string{RoleReadOnly, RoleOperator} {
				if roleRank(role) >= roleRank(ri.MinRole) {
					continue
				}
				if st, e := call(method, path, tokens[role], ""); st != http.StatusForbidden || e.Error.Code != "forbidden" {
					t.Errorf("%s %s as %s: %d %+v", method, pattern, role, st, e)
				}
			}
			if types[ri.Name][0] != nil {
				if st, e := call(method, path, tokens[RoleAdmin], `{"broken":`); st != http.StatusBadRequest || e.Error.Code != "bad_request" {
					t.Errorf("%s %s with a malformed body: %d %+v", method, pattern, st, e)
				}
			}
		}
	}
	if n < 30 {
		t.Fatalf("only %d routes", n)
	}
}
