// Package audit is Sluice's tamper-evident audit trail: one record per API
// call and per significant system action, appended to JSON Lines segment
// files under the data directory.
//
// Tamper evidence: every record carries the SHA-256 of its own canonical
// encoding ("hash") and the hash of the record before it ("prev"), so an
// edited, deleted or reordered record breaks the chain at that record.
// Every segment closes with a digest (record count, sequence range, last
// hash, SHA-256 of the whole file, hash of the previous digest) signed with
// the appliance's Ed25519 key, so a truncated or replaced segment is caught
// too. Verify checks all of it and names the first bad record.
//
// Writing never blocks the data path: records go through a bounded queue to
// one writer goroutine that batches them and fsyncs once per batch. Data
// events use TryAppend, which drops (and counts) a record when the queue is
// full; management events use Append, which waits. Close drains the queue
// and seals the open segment, so a clean shutdown loses nothing.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// Categories.
const (
	// Management events (API calls, configuration changes, system actions)
	// are recorded by default.
	Management = "management"
	// Data events (iSCSI logins, NFS mounts and writes) are off by default.
	Data = "data"
)

// Results.
const (
	Success = "success"
	Failure = "failure"
)

// Identity says who acted.
type Identity struct {
	// Type is "token", "initiator", "nfs-client", "anonymous" or "system".
	Type string `json:"type"`
	// ID is the token id, initiator IQN or client address.
	ID string `json:"id,omitempty"`
	// Role is the token's role.
	Role string `json:"role,omitempty"`
	// Name is the token's name.
	Name string `json:"name,omitempty"`
}

// Record is one audit event.
type Record struct {
	Version    int            `json:"v"`
	Seq        uint64         `json:"seq"`
	Time       time.Time      `json:"time"`
	Category   string         `json:"category"`
	Source     string         `json:"source"`
	Name       string         `json:"name"`
	ReadOnly   bool           `json:"read_only"`
	Identity   Identity       `json:"identity"`
	SourceAddr string         `json:"source_addr,omitempty"`
	UserAgent  string         `json:"user_agent,omitempty"`
	RequestID  string         `json:"request_id,omitempty"`
	Resource   string         `json:"resource,omitempty"`
	Params     map[string]any `json:"params,omitempty"`
	Result     string         `json:"result"`
	ErrorCode  string         `json:"error_code,omitempty"`
	Prev       string         `json:"prev"`
	Hash       string         `json:"hash"`
}

// recordVersion is the format version written now.
const recordVersion = 1

// computeHash returns the SHA-256 of the record's canonical encoding with
// an empty hash field.
func (r Record) computeHash() (string, error) {
	r.Hash = ""
	raw, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// decodeRecord parses one line, keeping numbers exact so the canonical
// encoding can be recomputed.
func decodeRecord(line []byte) (Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	err := dec.Decode(&r)
	return r, err
}

// secretKeys are substrings of parameter names whose values are never
// recorded.
var secretKeys = []string{"secret", "password", "passwd", "token", "credential", "private", "key_material"}

// Redacted replaces secret values in recorded parameters.
const Redacted = "[REDACTED]"

// Redact returns a copy of params with the value of every key that names a
// secret (at any depth) replaced by Redacted.
func Redact(params map[string]any) map[string]any {
	if params == nil {
		return nil
	}
	out := make(map[string]any, len(params))
	for k, v := range params {
		if isSecretKey(k) {
			out[k] = Redacted
			continue
		}
		out[k] = redactValue(v)
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return Redact(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	}
	return v
}

func isSecretKey(k string) bool {
	l := strings.ToLower(k)
	for _, s := range secretKeys {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
