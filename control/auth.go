package control

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/fsutil"
	"github.com/sluicegw/sluice/internal/state"
)

// Roles a token may have.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleReadOnly = "read-only"
)

// tokensCollection is the state collection of API tokens.
const tokensCollection = "tokens"

// tokenPrefix starts every token so that secret scanners recognise them.
const tokenPrefix = "sluice_"

// TokenRecord is a stored API token: only the SHA-256 of its secret is kept.
// Tokens carry 256 random bits, so a fast hash is enough (no password
// stretching is needed for secrets that cannot be guessed).
type TokenRecord struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// Secret is a string that never prints: fmt, slog and JSON see
// "[REDACTED]".
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "[REDACTED]" }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Reveal returns the secret itself, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// NewToken creates a token with a role, stores its hash, and returns the
// token text (shown once) and its record.
func NewToken(db *state.DB, name, role string) (Secret, TokenRecord, error) {
	tok, rec, err := generateToken(name, role)
	if err != nil {
		return "", TokenRecord{}, err
	}
	if err := storeToken(db, rec); err != nil {
		return "", TokenRecord{}, err
	}
	return tok, rec, nil
}

func storeToken(db *state.DB, rec TokenRecord) error {
	if err := db.Update(func(tx *state.Tx) error { return tx.Create(tokensCollection, rec.ID, rec) }); err != nil {
		return fmt.Errorf("storing token: %w", err)
	}
	return nil
}

// generateToken makes a token and its record without storing it.
func generateToken(name, role string) (Secret, TokenRecord, error) {
	var id [6]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", TokenRecord{}, err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", TokenRecord{}, err
	}
	rec := TokenRecord{
		ID:      hex.EncodeToString(id[:]),
		Name:    name,
		Role:    role,
		Hash:    hashSecret(secret[:]),
		Created: time.Now().UTC(),
	}
	tok := tokenPrefix + rec.ID + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	return Secret(tok), rec, nil
}

func hashSecret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:])
}

// errBadToken is the cause of every failed authentication; callers never
// learn which part was wrong.
var errBadToken = errors.New("invalid token")

// Authenticate checks a token's text against the stored hashes.
func Authenticate(db *state.DB, token string) (TokenRecord, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return TokenRecord{}, errBadToken
	}
	id, enc, ok := strings.Cut(rest, ".")
	if !ok || len(id) != 12 {
		return TokenRecord{}, errBadToken
	}
	secret, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(secret) != 32 {
		return TokenRecord{}, errBadToken
	}
	rec, err := state.Get[TokenRecord](db, tokensCollection, id)
	if err != nil {
		return TokenRecord{}, errBadToken
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(rec.Hash)) != 1 {
		return TokenRecord{}, errBadToken
	}
	return rec, nil
}

// EnsureAdminToken creates an admin token on first start (when the
// database has no token at all), stores only its hash, and writes the token
// to DATA/admin.token with mode 0600. It returns the file's path and
// whether it created the token.
func EnsureAdminToken(db *state.DB, dataDir string) (string, bool, error) {
	path := filepath.Join(dataDir, api.AdminTokenFile)
	toks, err := state.List[TokenRecord](db, tokensCollection)
	if err != nil {
		return path, false, err
	}
	if len(toks) > 0 {
		return path, false, nil
	}
	tok, rec, err := generateToken("admin (first start)", RoleAdmin)
	if err != nil {
		return path, false, err
	}
	// The file is written (and synced) before the hash is stored, so a
	// crash in between leaves no token that nobody can present.
	if err := fsutil.WriteFileAtomic(path, []byte(tok.Reveal()+"\n"), 0o600); err != nil {
		return path, false, err
	}
	if err := storeToken(db, rec); err != nil {
		os.Remove(path)
		return path, false, err
	}
	return path, true, nil
}
