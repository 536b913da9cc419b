// Package snapshot stores point-in-time images of block volumes in an
// object store: a content-addressed chunk store shared by every snapshot and
// volume (a block's chunk is stored once, whoever holds it), a checksummed
// binary manifest per snapshot holding its block map, and a catalogue of
// snapshot entries with their status.
//
// Catalog is the one type front ends and the daemon use: Create (full or
// incremental from a changed-block set), List, Get, Delete, Restore, Verify
// and GC. Scheduler runs periodic snapshots with retention. BlockMap, ChunkID,
// Coder and ChunkStore are exported for cached volumes, whose live block map
// lives over the same chunk store.
//
// Object layout under the catalogue's prefix:
//
//	chunks/<2 hex>/<64 hex>   chunk objects (immutable, content addressed)
//	packs/<32 hex>            packs of chunks, written by large runs
//	packidx/<32 hex>          one index per pack: its chunks' ids and lengths
//	packidx/all-<32 hex>      merged indexes of many packs, written by GC
//	manifests/<id>            one manifest per completed snapshot
//	catalog/<id>.json         one catalogue entry per snapshot
//	locks/gc                  the garbage collector's lease
//
// See DESIGN.md in this directory for the formats, the choice of block size,
// hash and codecs, the garbage-collection safety argument and the
// durability points.
package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Status is a snapshot's state in the catalogue.
type Status string

// Snapshot states.
const (
	// StatusPending: the snapshot is being written; it cannot be restored.
	StatusPending Status = "pending"
	// StatusCompleted: the manifest and every chunk it references are
	// stored; the snapshot can be restored.
	StatusCompleted Status = "completed"
	// StatusError: the snapshot failed and will never complete.
	StatusError Status = "error"
)

// Info is a catalogue entry. Its JSON form is what the REST API returns.
type Info struct {
	ID          string            `json:"id"`
	Volume      string            `json:"volume"`
	Parent      string            `json:"parent,omitempty"`
	Status      Status            `json:"status"`
	Error       string            `json:"error,omitempty"`
	Created     time.Time         `json:"created"`
	Completed   *time.Time        `json:"completed,omitempty"`
	Heartbeat   time.Time         `json:"heartbeat"`
	Size        int64             `json:"size"`
	BlockSize   int               `json:"block_size"`
	Codec       Codec             `json:"codec"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// LogicalBytes is the number of bytes of the image that are not holes.
	LogicalBytes int64 `json:"logical_bytes"`
	// StoredBytes is the size of the chunk objects this snapshot added to
	// the store (its incremental cost; chunks shared with earlier snapshots
	// or other volumes are not counted again).
	StoredBytes int64 `json:"stored_bytes"`
	// ReferencedBytes is the stored size of every distinct chunk the
	// snapshot references (what keeping it alone would cost).
	ReferencedBytes int64 `json:"referenced_bytes"`
	// Blocks counts the non-hole blocks; ChunksUploaded the chunks this
	// snapshot stored; BlocksRead the blocks read from the volume.
	Blocks         int64 `json:"blocks"`
	ChunksUploaded int64 `json:"chunks_uploaded"`
	BlocksRead     int64 `json:"blocks_read"`
}

// Options configure a Catalog. Zero fields take the defaults shown.
type Options struct {
	// Prefix is prepended to every object key (e.g. "snapshots/").
	Prefix string
	// Concurrency is the number of upload/download workers, each holding
	// at most one block and one encoded chunk in memory (default 16).
	Concurrency int
	// CheckExisting makes Create ask the store (HEAD) whether a new chunk
	// exists before uploading it, instead of a conditional upload that the
	// store refuses when it does. It saves upload bandwidth when volumes
	// share much content (clones) at the cost of one more request per new
	// chunk. Resuming a snapshot always checks first.
	CheckExisting bool
	// PackSize is the size at which a pack of chunks is closed and stored
	// (default DefaultPackSize, 16 MiB); negative stores every chunk as its
	// own object.
	PackSize int
	// PackMinBytes: a snapshot whose changed set is at least this large
	// packs its new chunks; smaller ones (most incrementals) store one
	// object per chunk (default 8 x PackSize). See DESIGN.md, "Packs".
	PackMinBytes int64
	// IndexMergeMin: when at least this many packs have index objects of
	// their own, garbage collection merges them into a few merged index
	// objects, so that loading the indexes takes a few GETs (default 64).
	IndexMergeMin int
	// GCGrace: garbage collection never deletes a chunk younger than this
	// (default 1h); it covers clock skew and writers that lost their lease.
	GCGrace time.Duration
	// StaleAfter: a pending snapshot whose heartbeat is older than this is
	// abandoned, and garbage collection marks it as failed (default 30m).
	StaleAfter time.Duration
	// Heartbeat is how often a running Create refreshes its entry
	// (default StaleAfter/6).
	Heartbeat time.Duration
	// Logger receives progress and errors; nil discards.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Failpoint, when set, is called at each durability boundary with its
	// name (see DESIGN.md); a non-nil error aborts the operation there as a
	// crash would, without cleanup. Tests only.
	Failpoint func(name string) error
}

// Catalog is the snapshot catalogue and chunk store on one object store. It
// is safe for concurrent use; several Catalogs (processes) may share a store.
type Catalog struct {
	store  objstore.Store
	chunks *ChunkStore
	coder  *Coder
	o      Options
	log    *slog.Logger
	bufs   sync.Pool // of *[]byte: block and chunk buffers
	// packBufs holds pack buffers (*[]byte) between runs.
	packBufs sync.Pool
}

// Open returns a Catalog on s. It does not contact the store. Wrap s with
// objstore.Wrap first to get retries and the bandwidth limit.
func Open(s objstore.Store, o Options) (*Catalog, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	switch {
	case o.PackSize == 0:
		o.PackSize = DefaultPackSize
	case o.PackSize > 0:
		o.PackSize = min(o.PackSize, maxPackData-EncodeBound(MaxBlockSize))
	}
	if o.PackMinBytes <= 0 {
		o.PackMinBytes = 8 * int64(max(o.PackSize, 0))
	}
	if o.IndexMergeMin <= 0 {
		o.IndexMergeMin = 64
	}
	if o.GCGrace <= 0 {
		o.GCGrace = time.Hour
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 30 * time.Minute
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = o.StaleAfter / 6
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// One zstd state per CPU, not per worker: the workers wait for the
	// store most of the time, and 16 encoders taking turns on two CPUs
	// each found their 1 MiB+ match tables cold; a full snapshot of the
	// bench image took 30% less CPU with two (DESIGN.md, "Throughput").
	coder, err := NewCoder(min(o.Concurrency, runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, err
	}
	return &Catalog{store: s, chunks: NewChunkStore(s, o.Prefix), coder: coder, o: o, log: o.Logger}, nil
}

// Close releases the compression state.
func (c *Catalog) Close() error {
	c.coder.Close()
	return nil
}

// Chunks returns the catalogue's chunk store.
func (c *Catalog) Chunks() *ChunkStore { return c.chunks }

// Coder returns the catalogue's chunk coder.
func (c *Catalog) Coder() *Coder { return c.coder }

func (c *Catalog) failpoint(name string) error {
	if c.o.Failpoint == nil {
		return nil
	}
	if err := c.o.Failpoint(name); err != nil {
		return fmt.Errorf("failpoint %s: %w", name, err)
	}
	return nil
}

// NewID returns a new snapshot id: "snap-" + UTC time + random suffix, so
// ids sort by creation time.
func NewID(now time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return "snap-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// validID accepts the ids NewID makes and other simple names.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return id[0] != '.'
}

func (c *Catalog) entryKey(id string) string    { return c.o.Prefix + "catalog/" + id + ".json" }
func (c *Catalog) manifestKey(id string) string { return c.o.Prefix + "manifests/" + id }
func (c *Catalog) gcLockKey() string            { return c.o.Prefix + "locks/gc" }

// readEntry returns an entry and its ETag.
func (c *Catalog) readEntry(ctx context.Context, id string) (Info, string, error) {
	if !validID(id) {
		return Info{}, "", fmt.Errorf("snapshot id %q: %w", id, ErrInvalid)
	}
	rc, oi, err := c.store.Get(ctx, c.entryKey(id), objstore.GetOptions{})
	if errors.Is(err, objstore.ErrNotFound) {
		return Info{}, "", fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Info{}, "", fmt.Errorf("reading snapshot %s: %w", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return Info{}, "", fmt.Errorf("reading snapshot %s: %w", id, err)
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return Info{}, "", fmt.Errorf("snapshot %s entry: %v: %w", id, err, ErrCorrupt)
	}
	if in.ID != id {
		return Info{}, "", fmt.Errorf("snapshot %s entry names %q: %w", id, in.ID, ErrCorrupt)
	}
	return in, oi.ETag, nil
}

// writeEntry stores an entry. With create it fails if the entry exists;
// with ifMatch set it fails unless the entry still has that ETag. It
// returns the new ETag.
func (c *Catalog) writeEntry(ctx context.Context, in Info, create bool, ifMatch string) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("encoding snapshot %s: %w", in.ID, err)
	}
	opts := objstore.PutOptions{ContentType: "application/json", IfNoneMatch: create, IfMatch: ifMatch}
	oi, err := c.store.Put(ctx, c.entryKey(in.ID), bytes.NewReader(b), int64(len(b)), opts)
	if errors.Is(err, objstore.ErrPreconditionFailed) || (ifMatch != "" && errors.Is(err, objstore.ErrNotFound)) {
		return "", fmt.Errorf("snapshot %s: %w: %w", in.ID, ErrConflict, err)
	}
	if err != nil {
		return "", fmt.Errorf("writing snapshot %s entry: %w", in.ID, err)
	}
	return oi.ETag, nil
}

// Get returns a snapshot's catalogue entry.
func (c *Catalog) Get(ctx context.Context, id string) (Info, error) {
	in, _, err := c.readEntry(ctx, id)
	return in, err
}

// ListFilter selects entries for List. Zero fields match everything.
type ListFilter struct {
	Volume string
	Status Status
	// Tags must all be present with these values.
	Tags map[string]string
}

// List returns the catalogue entries that match f, oldest first.
func (c *Catalog) List(ctx context.Context, f ListFilter) ([]Info, error) {
	prefix := c.o.Prefix + "catalog/"
	var ids []string
	err := objstore.ListAll(ctx, c.store, prefix, func(o objstore.ObjectInfo) error {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, prefix), ".json"); ok && validID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	infos := make([]Info, len(ids))
	found := make([]bool, len(ids))
	err = parallel(ctx, c.o.Concurrency, len(ids), func(ctx context.Context, i int) error {
		in, _, err := c.readEntry(ctx, ids[i])
		if errors.Is(err, ErrNotFound) {
			return nil // deleted since the listing
		}
		if err != nil {
			return err
		}
		infos[i], found[i] = in, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := infos[:0]
	for i, in := range infos {
		if found[i] && f.match(in) {
			out = append(out, in)
		}
	}
	slices.SortStableFunc(out, func(a, b Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (f ListFilter) match(in Info) bool {
	if f.Volume != "" && in.Volume != f.Volume {
		return false
	}
	if f.Status != "" && in.Status != f.Status {
		return false
	}
	for k, v := range f.Tags {
		if in.Tags[k] != v {
			return false
		}
	}
	return true
}

// Manifest reads and checks a completed snapshot's manifest.
func (c *Catalog) Manifest(ctx context.Context, id string) (*Manifest, error) {
	in, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if in.Status != StatusCompleted {
		return nil, fmt.Errorf("snapshot %s is %s: %w", id, in.Status, ErrNotCompleted)
	}
	return c.readManifest(ctx, id)
}

func (c *Catalog) readManifest(ctx context.Context, id string) (*Manifest, error) {
	rc, _, err := c.store.Get(ctx, c.manifestKey(id), objstore.GetOptions{})
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("manifest of %s: %w: %w", id, ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestBlocks*48))
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", id, err)
	}
	m, err := DecodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest of %s names %q: %w", id, m.ID, ErrCorrupt)
	}
	return m, nil
}

// Delete removes a completed or failed snapshot from the catalogue. Its
// chunks stay until GC finds no other manifest referencing them. A pending
// snapshot cannot be deleted (ErrConflict) until it completes, fails or
// goes stale.
func (c *Catalog) Delete(ctx context.Context, id string) error {
	in, _, err := c.readEntry(ctx, id)
	if err != nil {
		return err
	}
	if in.Status == StatusPending && !c.stale(in) {
		return fmt.Errorf("snapshot %s is being written: %w", id, ErrConflict)
	}
	// The entry goes first: from then on the snapshot is gone for List
	// and Restore, and GC deletes the manifest if we crash before it.
	if err := c.store.Delete(ctx, c.entryKey(id)); err != nil {
		return fmt.Errorf("deleting snapshot %s: %w", id, err)
	}
	if err := c.store.Delete(ctx, c.manifestKey(id)); err != nil {
		return fmt.Errorf("deleting manifest of %s: %w", id, err)
	}
	c.log.Info("snapshot deleted", "id", id, "volume", in.Volume)
	return nil
}

// MarkFailed records a pending snapshot as failed with a reason. A
// completed snapshot is left alone (ErrConflict).
func (c *Catalog) MarkFailed(ctx context.Context, id, reason string) error {
	in, etag, err := c.readEntry(ctx, id)
	if err != nil {
		return err
	}
	switch in.Status {
	case StatusError:
		return nil
	case StatusCompleted:
		return fmt.Errorf("snapshot %s already completed: %w", id, ErrConflict)
	}
	in.Status, in.Error = StatusError, reason
	if _, err := c.writeEntry(ctx, in, false, etag); err != nil {
		return err
	}
	// A manifest written before the failure must not stay around.
	if err := c.store.Delete(ctx, c.manifestKey(id)); err != nil {
		return fmt.Errorf("deleting manifest of failed %s: %w", id, err)
	}
	c.log.Warn("snapshot failed", "id", id, "volume", in.Volume, "reason", reason)
	return nil
}

func (c *Catalog) stale(in Info) bool {
	return in.Status == StatusPending && c.o.Now().Sub(in.Heartbeat) > c.o.StaleAfter
}

// parallel runs fn for 0..n-1 on up to workers goroutines and returns the
// first error; after an error the remaining indexes are not started.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
