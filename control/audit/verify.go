package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source is where a trail is read from: the local directory or the bucket
// copy.
type Source interface {
	// Names lists the files of the trail (segments, digests, the public
	// key), in any order.
	Names(ctx context.Context) ([]string, error)
	// Read returns a file's contents.
	Read(ctx context.Context, name string) ([]byte, error)
}

// DirSource reads a trail from a local directory.
type DirSource string

// Names implements Source.
func (d DirSource) Names(context.Context) ([]string, error) {
	ents, err := os.ReadDir(string(d))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// Read implements Source.
func (d DirSource) Read(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

// Problem is the first thing Verify found wrong.
type Problem struct {
	// Segment is the file the problem is in.
	Segment string `json:"segment"`
	// Line is the 1-based line of the record, 0 for segment-level
	// problems.
	Line int `json:"line,omitempty"`
	// Seq is the sequence number expected at that place.
	Seq uint64 `json:"seq,omitempty"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s line %d (record %d): %s", p.Segment, p.Line, p.Seq, p.Reason)
	}
	return fmt.Sprintf("%s: %s", p.Segment, p.Reason)
}

// Report is the outcome of Verify.
type Report struct {
	OK       bool     `json:"ok"`
	Segments int      `json:"segments"`
	Sealed   int      `json:"sealed"`
	Records  int      `json:"records"`
	Expired  int      `json:"expired_segments,omitempty"`
	LastSeq  uint64   `json:"last_seq"`
	LastHash string   `json:"last_hash"`
	Problem  *Problem `json:"problem,omitempty"`
}

// ErrNoKey means the trail has no public key to check signatures with.
var ErrNoKey = errors.New("audit: no public key")

// Verify checks a whole trail: every record's own hash, the chain of
// hashes and sequence numbers across all segments, and every digest's
// signature, counts, last hash, file hash and link to the previous digest.
// With pub nil the trail's own public key file is used (pass the key you
// trust to detect a replaced key). It stops at the first problem.
func Verify(ctx context.Context, src Source, pub ed25519.PublicKey) (Report, error) {
	names, err := src.Names(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit: listing the trail: %w", err)
	}
	if pub == nil {
		raw, err := src.Read(ctx, PublicKeyFile)
		if err != nil {
			return Report{}, fmt.Errorf("%w: %w", ErrNoKey, err)
		}
		k, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(k) != ed25519.PublicKeySize {
			return Report{}, fmt.Errorf("%w: %s is malformed", ErrNoKey, PublicKeyFile)
		}
		pub = k
	}
	have := map[string]bool{}
	var segs []string
	for _, n := range names {
		have[n] = true
	}
	for _, n := range names {
		base := strings.TrimSuffix(n, digestSuffix)
		if strings.HasPrefix(base, segmentPrefix) && strings.HasSuffix(base, segmentSuffix) && (n == base || !have[base]) {
			segs = append(segs, base)
		}
	}
	slices.Sort(segs)
	v := verifier{pub: pub}
	rep := Report{OK: true}
	for i, name := range segs {
		rep.Segments++
		digestRaw, derr := src.Read(ctx, name+digestSuffix)
		sealed := derr == nil
		if !sealed && i < len(segs)-1 {
			return v.fail(&rep, Problem{Segment: name, Reason: "segment has no digest but is not the last one (digest deleted, or segments added)"}), nil
		}
		var data []byte
		if have[name] {
			if data, err = src.Read(ctx, name); err != nil {
				return rep, fmt.Errorf("audit: reading %s: %w", name, err)
			}
		}
		fileOK := true
		var d Digest
		if sealed {
			rep.Sealed++
			var p *Problem
			if d, fileOK, p = v.checkDigest(name, digestRaw, data, have[name]); p != nil {
				return v.fail(&rep, *p), nil
			}
		}
		if !have[name] {
			rep.Expired++ // removed locally after its retention; the digest chain still holds
			continue
		}
		if p := v.checkRecords(name, data, &rep); p != nil {
			return v.fail(&rep, *p), nil
		}
		if sealed && (v.lastSeq != d.LastSeq || v.lastHash != d.LastHash) {
			return v.fail(&rep, Problem{Segment: name, Reason: fmt.Sprintf("segment ends at record %d, its digest says %d (records removed from the end)", v.lastSeq, d.LastSeq)}), nil
		}
		if !fileOK {
			return v.fail(&rep, Problem{Segment: name, Reason: "segment file does not match its digest's hash"}), nil
		}
	}
	rep.LastSeq, rep.LastHash = v.lastSeq, v.lastHash
	return rep, nil
}

type verifier struct {
	pub        ed25519.PublicKey
	lastSeq    uint64
	lastHash   string
	prevDigest string
}

func (v *verifier) fail(rep *Report, p Problem) Report {
	rep.OK = false
	rep.Problem = &p
	rep.LastSeq, rep.LastHash = v.lastSeq, v.lastHash
	return *rep
}

// checkDigest verifies a digest's signature and its links to what came
// before; it reports whether the segment file matches the digest's hash
// (the records are checked first, to name the first bad one).
func (v *verifier) checkDigest(name string, raw, data []byte, haveData bool) (Digest, bool, *Problem) {
	var d Digest
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, false, &Problem{Segment: name, Reason: "digest is not valid JSON"}
	}
	payload, err := d.payload()
	if err != nil {
		return d, false, &Problem{Segment: name, Reason: err.Error()}
	}
	sig, err := hex.DecodeString(d.Signature)
	if err != nil || !ed25519.Verify(v.pub, payload, sig) {
		return d, false, &Problem{Segment: name, Reason: "digest signature does not verify (digest edited, or signed by another key)"}
	}
	if d.Segment != name {
		return d, false, &Problem{Segment: name, Reason: fmt.Sprintf("digest belongs to %s", d.Segment)}
	}
	if d.PrevDigest != v.prevDigest {
		return d, false, &Problem{Segment: name, Reason: "digest does not follow the previous segment's digest (a segment was removed or replaced)"}
	}
	if d.FirstPrev != v.lastHash || d.FirstSeq != v.lastSeq+1 {
		return d, false, &Problem{Segment: name, Reason: fmt.Sprintf("segment starts at record %d, expected %d (records missing between segments)", d.FirstSeq, v.lastSeq+1)}
	}
	dsum := sha256.Sum256(raw)
	v.prevDigest = hex.EncodeToString(dsum[:])
	if !haveData {
		v.lastSeq, v.lastHash = d.LastSeq, d.LastHash
		return d, true, nil
	}
	sum := sha256.Sum256(data)
	return d, hex.EncodeToString(sum[:]) == d.FileSHA256, nil
}

func (v *verifier) checkRecords(name string, data []byte, rep *Report) *Problem {
	line := 0
	var p *Problem
	_ = readLines(bytes.NewReader(data), func(b []byte) error {
		line++
		want := v.lastSeq + 1
		r, err := decodeRecord(b)
		if err != nil {
			p = &Problem{Segment: name, Line: line, Seq: want, Reason: "record is not valid JSON (edited or truncated)"}
			return io.EOF
		}
		h, err := r.computeHash()
		if err != nil || h != r.Hash {
			p = &Problem{Segment: name, Line: line, Seq: want, Reason: "record's content does not match its hash (edited)"}
			return io.EOF
		}
		if r.Seq != want {
			reason := fmt.Sprintf("record %d found where %d was expected", r.Seq, want)
			if r.Seq > want {
				reason += " (records deleted)"
			} else {
				reason += " (records reordered or repeated)"
			}
			p = &Problem{Segment: name, Line: line, Seq: want, Reason: reason}
			return io.EOF
		}
		if r.Prev != v.lastHash {
			p = &Problem{Segment: name, Line: line, Seq: want, Reason: "record does not chain to the one before it (a record before it was replaced)"}
			return io.EOF
		}
		v.lastSeq, v.lastHash = r.Seq, r.Hash
		rep.Records++
		return nil
	})
	if p == nil && len(data) > 0 && data[len(data)-1] != '\n' {
		p = &Problem{Segment: name, Line: line + 1, Seq: v.lastSeq + 1, Reason: "segment ends in a partial record (truncated)"}
	}
	return p
}
