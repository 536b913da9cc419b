package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/state"
)

func (s *Server) tokenRoutes() {
	s.route("POST /v1/tokens", "CreateToken", RoleAdmin, s.createToken)
	s.route("GET /v1/tokens", "ListTokens", RoleAdmin, s.listTokens)
	s.route("DELETE /v1/tokens/{id}", "RevokeToken", RoleAdmin, s.revokeToken)
}

func tokenAPI(rec TokenRecord) api.Token {
	return api.Token{ID: rec.ID, Name: rec.Name, Role: rec.Role, Created: rec.Created}
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateToken
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 128 {
		return BadRequest(errors.New("a token needs a name of 1 to 128 characters"))
	}
	if roleRank(req.Role) == 0 {
		return BadRequest(fmt.Errorf("role %q: want admin, operator or read-only", req.Role))
	}
	tok, rec, err := NewToken(s.cfg.State, req.Name, req.Role)
	if err != nil {
		return err
	}
	out := tokenAPI(rec)
	out.Token = tok.Reveal()
	w.Header().Set("Location", "/v1/tokens/"+rec.ID)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	recs, err := state.List[TokenRecord](s.cfg.State, tokensCollection)
	if err != nil {
		return err
	}
	page, next, err := paginate(r, recs, func(t TokenRecord) string { return t.ID })
	if err != nil {
		return err
	}
	out := api.TokenList{Tokens: make([]api.Token, 0, len(page)), NextPageToken: next}
	for _, rec := range page {
		out.Tokens = append(out.Tokens, tokenAPI(rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeToken deletes a token; the last admin token cannot go, so the
// appliance always has an administrator.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	err := s.cfg.State.Update(func(tx *state.Tx) error {
		var rec TokenRecord
		if err := tx.Get(tokensCollection, id, &rec); err != nil {
			return NotFound("no token %q", id)
		}
		if rec.Role == RoleAdmin {
			admins := 0
			err := tx.ForEach(tokensCollection, func(_ string, raw []byte) error {
				var t TokenRecord
				if err := json.Unmarshal(raw, &t); err != nil {
					return err
				}
				if t.Role == RoleAdmin {
					admins++
				}
				return nil
			})
			if err != nil {
				return err
			}
			if admins <= 1 {
				return Conflict("token %s is the last admin token; create another admin token first", id)
			}
		}
		return tx.Delete(tokensCollection, id)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
