package vtl

import (
	"context"
	"fmt"
	"sort"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Check verifies the library's consistency and returns the problems it
// found (none when the library is sound): every tape in the library sits
// at a valid element that no other tape claims; barcodes of live tapes are
// recorded as issued; every tape's index decodes, and each segment it
// references exists with the recorded size. It reads indexes and listings,
// never segment data. The error is for failures to read the store. It is
// the operator's "tape check" and runs after tests.
func (l *Library) Check(ctx context.Context) ([]string, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.mergeUsageLocked()
	var problems []string
	seen := map[uint16]string{}
	var tapes []TapeInfo
	for _, t := range l.sortedTapesLocked() {
		tapes = append(tapes, *t)
		if _, ok := l.st.Barcodes[t.Barcode]; !ok {
			problems = append(problems, fmt.Sprintf("%s: barcode not recorded as issued", t.Barcode))
		}
		if t.Element == 0 {
			continue
		}
		if k, _ := l.elementKind(t.Element); k == elemNone || k == elemTransport {
			problems = append(problems, fmt.Sprintf("%s: invalid element %#x", t.Barcode, t.Element))
		}
		if o, dup := seen[t.Element]; dup {
			problems = append(problems, fmt.Sprintf("%s: element %#x also holds %s", t.Barcode, t.Element, o))
		}
		seen[t.Element] = t.Barcode
		if t.Status == StatusArchived {
			problems = append(problems, fmt.Sprintf("%s: archived but in the library", t.Barcode))
		}
	}
	l.mu.Unlock()
	for _, t := range tapes {
		store := l.cfg.Store
		if t.Status == StatusArchived || t.Status == StatusRetrieved {
			store = l.cfg.Pools[t.Pool].Store
		}
		p, err := checkTape(ctx, store, t.DataPrefix)
		if err != nil {
			return problems, err
		}
		for _, s := range p {
			problems = append(problems, t.Barcode+": "+s)
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// checkTape checks one tape's index against its segment objects.
func checkTape(ctx context.Context, store objstore.Store, prefix string) ([]string, error) {
	x, err := loadIndex(ctx, store, prefix, defaultChunkSegs)
	if err != nil {
		return []string{err.Error()}, nil
	}
	sizes := map[string]int64{}
	if err := objstore.ListAll(ctx, store, prefix+"seg-", func(o objstore.ObjectInfo) error {
		sizes[o.Key] = o.Size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("vtl: check %s: %w", prefix, err)
	}
	var problems []string
	for _, s := range x.segs {
		if s.seq == 0 {
			continue
		}
		k := segKey(prefix, s.seq)
		n, ok := sizes[k]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("segment %d missing", s.seq))
		case n != int64(s.objLen):
			problems = append(problems, fmt.Sprintf("segment %d is %d bytes, index says %d", s.seq, n, s.objLen))
		}
	}
	return problems, nil
}
