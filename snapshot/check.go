package snapshot

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicegw/sluice/internal/objstore"
)

// CheckResult is the outcome of Check. Problems lists what is wrong, one
// line each (at most 100); OK is true when there are none. Unreferenced
// chunks are not a problem (GC removes them), only reported.
type CheckResult struct {
	Snapshots int `json:"snapshots"`
	// Chunks counts distinct stored chunks, as objects or in Packs.
	Chunks       int      `json:"chunks"`
	Packs        int      `json:"packs"`
	LiveChunks   int      `json:"live_chunks"`
	Unreferenced int      `json:"unreferenced_chunks"`
	Pending      int      `json:"pending"`
	Failed       int      `json:"failed"`
	Problems     []string `json:"problems,omitempty"`
	OK           bool     `json:"ok"`
}

// Check is the catalogue's consistency checker (tests run it after each
// scenario; operators through the daemon): every completed snapshot has a
// manifest that decodes and names it, and every chunk a manifest
// references exists in the store. It reads manifests and lists chunks but
// does not download chunk data (Verify does).
func (c *Catalog) Check(ctx context.Context) (CheckResult, error) {
	var res CheckResult
	problem := func(format string, args ...any) {
		if len(res.Problems) < 100 {
			res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
		}
	}
	have := make(map[ChunkID]bool)
	err := objstore.ListAll(ctx, c.store, c.chunks.Prefix(), func(o objstore.ObjectInfo) error {
		id, ok := c.chunks.IDFromKey(o.Key)
		if !ok {
			problem("stray object %s under the chunk prefix", o.Key)
			return nil
		}
		have[id] = true
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("check: listing chunks: %w", err)
	}
	packs, err := c.packedChunks(ctx, have, problem)
	if err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	res.Packs = packs
	res.Chunks = len(have)
	infos, err := c.List(ctx, ListFilter{})
	if err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	live := make(map[ChunkID]bool)
	for _, in := range infos {
		switch in.Status {
		case StatusPending:
			res.Pending++
			continue
		case StatusError:
			res.Failed++
			continue
		case StatusCompleted:
		default:
			problem("snapshot %s has unknown status %q", in.ID, in.Status)
			continue
		}
		res.Snapshots++
		m, err := c.readManifest(ctx, in.ID)
		if err != nil {
			problem("snapshot %s: %v", in.ID, err)
			continue
		}
		if m.Volume != in.Volume || m.Map.Size != in.Size || m.Map.BlockSize != in.BlockSize || m.Parent != in.Parent {
			problem("snapshot %s: manifest does not match its entry", in.ID)
		}
		missing := 0
		for _, b := range m.Map.Blocks {
			if b.ID.IsZero() {
				continue
			}
			live[b.ID] = true
			if !have[b.ID] {
				missing++
			}
		}
		if missing > 0 {
			problem("snapshot %s: %d block(s) reference missing chunks", in.ID, missing)
		}
	}
	res.LiveChunks = len(live)
	for id := range have {
		if !live[id] {
			res.Unreferenced++
		}
	}
	slices.SortFunc(res.Problems, strings.Compare)
	res.OK = len(res.Problems) == 0
	return res, nil
}

// packedChunks adds the chunks of every pack to have and reports indexes
// whose pack is missing; it returns the number of packs.
func (c *Catalog) packedChunks(ctx context.Context, have map[ChunkID]bool, problem func(string, ...any)) (int, error) {
	cs := c.chunks
	if err := cs.Refresh(ctx); err != nil {
		return 0, err
	}
	objs := make(map[string]bool)
	prefix := cs.root + "packs/"
	err := objstore.ListAll(ctx, c.store, prefix, func(o objstore.ObjectInfo) error {
		objs[strings.TrimPrefix(o.Key, prefix)] = true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing packs: %w", err)
	}
	for id, err := range cs.badIndexes() {
		problem("pack %s: %v", id, err)
	}
	n := 0
	for _, p := range cs.loadedPacks() {
		if !objs[p.id] {
			problem("pack %s has an index but no pack object (%d chunks)", p.id, len(p.entries))
			continue
		}
		n++
		for _, e := range p.entries {
			have[e.ID] = true
		}
	}
	return n, nil
}
