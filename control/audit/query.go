package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Filter selects records for Query. Zero fields match everything.
type Filter struct {
	Since, Until time.Time
	// Name matches the event name exactly (e.g. "CreateVolume").
	Name string
	// Identity matches the identity's id or name.
	Identity string
	// Resource matches records whose resource starts with it.
	Resource string
	Category string
	// AfterSeq continues a listing after that record.
	AfterSeq uint64
	// Limit bounds the answer (default 100, at most 1000).
	Limit int
}

func (f Filter) match(r Record) bool {
	switch {
	case !f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	case f.Name != "" && r.Name != f.Name:
		return false
	case f.Identity != "" && r.Identity.ID != f.Identity && r.Identity.Name != f.Identity:
		return false
	case f.Resource != "" && !strings.HasPrefix(r.Resource, f.Resource):
		return false
	case f.Category != "" && r.Category != f.Category:
		return false
	}
	return true
}

// Query returns the records of the local trail that match f, oldest first,
// and the sequence number to continue after (0 when there are no more).
// Records still in the queue are not seen until written (Flush first for an
// exact answer).
func (l *Log) Query(f Filter) ([]Record, uint64, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	names, err := segments(l.dir)
	if err != nil {
		return nil, 0, err
	}
	var out []Record
	stop := errors.New("stop")
	for i, name := range names {
		// Skip segments that end before AfterSeq: the next one's first
		// sequence number is in its name.
		if i+1 < len(names) && f.AfterSeq > 0 {
			if next, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(names[i+1], segmentPrefix), segmentSuffix), 10, 64); err == nil && next <= f.AfterSeq+1 {
				continue
			}
		}
		file, err := os.Open(filepath.Join(l.dir, name))
		if err != nil {
			continue // expired meanwhile
		}
		err = readLines(file, func(line []byte) error {
			r, err := decodeRecord(line)
			if err != nil || r.Seq <= f.AfterSeq || !f.match(r) {
				return nil
			}
			if len(out) == f.Limit {
				return stop
			}
			out = append(out, r)
			return nil
		})
		file.Close()
		if errors.Is(err, stop) {
			return out, out[len(out)-1].Seq, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
	return out, 0, nil
}
