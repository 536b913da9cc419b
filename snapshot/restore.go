package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicegw/sluice/internal/objstore"
)

// RestoreResult summarises a restore.
type RestoreResult struct {
	Info Info `json:"snapshot"`
	// Blocks is the number of non-hole blocks written; Bytes their size.
	Blocks int64 `json:"blocks"`
	Bytes  int64 `json:"bytes"`
	// Duration is the wall time of the restore.
	Duration time.Duration `json:"duration_ns"`
}

// Restore writes a completed snapshot's image to w, which must read as
// zeros where nothing is written (a new sparse file or volume): holes are
// skipped. Chunks are downloaded by Concurrency workers, decoded and checked
// against their hash before they are written.
func (c *Catalog) Restore(ctx context.Context, id string, w io.WriterAt) (RestoreResult, error) {
	start := time.Now()
	in, err := c.Get(ctx, id)
	if err != nil {
		return RestoreResult{}, err
	}
	if in.Status != StatusCompleted {
		return RestoreResult{Info: in}, fmt.Errorf("restoring %s (%s): %w", id, in.Status, ErrNotCompleted)
	}
	m, err := c.readManifest(ctx, id)
	if err != nil {
		return RestoreResult{Info: in}, err
	}
	res := RestoreResult{Info: in}
	var blocks, bytes atomic.Int64
	err = c.eachChunk(ctx, &m.Map, func(i int64, raw []byte) error {
		if _, err := w.WriteAt(raw, i*int64(m.Map.BlockSize)); err != nil {
			return fmt.Errorf("restoring block %d of %s: %w", i, id, err)
		}
		blocks.Add(1)
		bytes.Add(int64(len(raw)))
		return nil
	})
	res.Blocks, res.Bytes, res.Duration = blocks.Load(), bytes.Load(), time.Since(start)
	if err != nil {
		return res, err
	}
	c.log.Info("snapshot restored", "id", id, "blocks", res.Blocks, "duration", res.Duration)
	return res, nil
}

// RestoreToFile restores a snapshot into a new file at path (which must not
// exist), sized to the volume and sparse where the image has holes. The file
// is fsynced; on failure it is removed.
func (c *Catalog) RestoreToFile(ctx context.Context, id, path string) (res RestoreResult, err error) {
	in, err := c.Get(ctx, id)
	if err != nil {
		return RestoreResult{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore target: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("restore target: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(in.Size); err != nil {
		return RestoreResult{}, fmt.Errorf("restore target: %w", err)
	}
	if res, err = c.RestoreInto(ctx, id, f); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("restore target: %w", err)
	}
	return res, nil
}

// RestoreInto restores a snapshot into f, an open file (by the name it was
// opened with) that reads as zeros where nothing is written, like Restore.
// Whole aligned blocks go to the disk directly (O_DIRECT): no copy into the
// page cache, and nothing left for the caller's fsync to flush; the rest,
// and everything on file systems without O_DIRECT (tmpfs), is written
// buffered with write-back started at once. The caller syncs f.
func (c *Catalog) RestoreInto(ctx context.Context, id string, f *os.File) (RestoreResult, error) {
	w := restoreWriter{f: f}
	if d, err := os.OpenFile(f.Name(), os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		w.direct = d
		defer d.Close()
	}
	return c.Restore(ctx, id, w)
}

// directAlign is the alignment O_DIRECT writes need here: offset, length
// and memory address (4 KiB covers every logical block size in use).
const directAlign = 4096

// restoreWriter writes restored blocks to a file: aligned blocks through
// direct (when set), the rest (a volume's partial last block, a buffer the
// allocator did not align) buffered through f, with write-back started at
// once so that the final fsync has little left to do and disk writes
// overlap the downloads.
type restoreWriter struct{ f, direct *os.File }

// WriteAt writes p at off.
func (w restoreWriter) WriteAt(p []byte, off int64) (int, error) {
	if w.direct != nil && len(p) > 0 && off%directAlign == 0 && len(p)%directAlign == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0 {
		return w.direct.WriteAt(p, off)
	}
	n, err := w.f.WriteAt(p, off)
	if err == nil {
		_ = unix.SyncFileRange(int(w.f.Fd()), off, int64(n), unix.SYNC_FILE_RANGE_WRITE)
	}
	return n, err
}

// eachChunk downloads and decodes the chunk of every non-hole block of m
// and calls fn with the block index and its bytes (valid during the call),
// on Concurrency goroutines. A chunk several blocks share is read once.
func (c *Catalog) eachChunk(ctx context.Context, m *BlockMap, fn func(i int64, raw []byte) error) error {
	return c.readChunks(ctx, m.Blocks, nil, func(id ChunkID, obj []byte, blks []int64) error {
		raw := c.getBuf(m.BlockSize)
		defer c.putBuf(raw)
		b, err := c.coder.Decode(raw[:0], obj, id)
		if err != nil {
			return err
		}
		for _, i := range blks {
			if len(b) != m.BlockLen(i) {
				return fmt.Errorf("chunk %s of block %d has %d bytes, want %d: %w", id, i, len(b), m.BlockLen(i), ErrCorrupt)
			}
			if err := fn(i, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// maxReadGroup bounds one ranged read of neighbouring packed chunks. The
// chunks stream through one chunk buffer, so it costs no memory; it only
// spreads a pack over several workers.
const maxReadGroup = 8 << 20

// readItem is one block to read, with its chunk's location (pack nil for a
// chunk object).
type readItem struct {
	pack     *packInfo
	off, len uint32
	blk      int64
}

// readChunks reads the chunks blocks reference, holes skipped, and calls fn
// with each distinct chunk's stored bytes (valid during the call) and the
// indexes of the blocks that hold it, on Concurrency goroutines. A chunk
// the store does not have fails the read with ErrChunkMissing, or, when
// missing is set, is passed to it instead. Chunks that lie next to each
// other in a pack are read with one ranged GET: the store's cost per
// request (and, on MinIO, per erasure block touched) is what a restore of
// packed chunks would otherwise pay per chunk.
func (c *Catalog) readChunks(ctx context.Context, blocks []BlockRef, missing func(ChunkID) error, fn func(id ChunkID, obj []byte, blks []int64) error) error {
	// Packs stored since this process last looked (by another gateway)
	// are found here, not one miss at a time.
	if err := c.chunks.Refresh(ctx); err != nil {
		return err
	}
	items := make([]readItem, 0, len(blocks))
	for i, b := range blocks {
		if b.ID.IsZero() {
			continue
		}
		l, _ := c.chunks.lookup(b.ID)
		items = append(items, readItem{pack: l.pack, off: l.off, len: l.len, blk: int64(i)})
	}
	slices.SortFunc(items, func(a, b readItem) int {
		switch {
		case a.pack != b.pack:
			if a.pack == nil || b.pack == nil {
				return cmp.Compare(boolInt(a.pack != nil), boolInt(b.pack != nil))
			}
			return strings.Compare(a.pack.id, b.pack.id)
		case a.off != b.off:
			return cmp.Compare(a.off, b.off)
		}
		if a.pack == nil {
			if d := bytes.Compare(blocks[a.blk].ID[:], blocks[b.blk].ID[:]); d != 0 {
				return d
			}
		}
		return cmp.Compare(a.blk, b.blk)
	})
	// Groups: runs of items that one read serves.
	var groups [][2]int
	for k := 0; k < len(items); {
		e := k + 1
		if p := items[k].pack; p != nil {
			end, total := items[k].off+items[k].len, items[k].len
			for ; e < len(items) && items[e].pack == p; e++ {
				if items[e].off == items[e-1].off {
					continue // the same chunk, another block
				}
				if items[e].off != end || total+items[e].len > maxReadGroup {
					break
				}
				end += items[e].len
				total += items[e].len
			}
		} else {
			for e < len(items) && items[e].pack == nil && blocks[items[e].blk].ID == blocks[items[k].blk].ID {
				e++
			}
		}
		groups = append(groups, [2]int{k, e})
		k = e
	}
	return parallel(ctx, c.o.Concurrency, len(groups), func(ctx context.Context, g int) error {
		return c.readGroup(ctx, blocks, items[groups[g][0]:groups[g][1]], missing, fn)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readGroup reads one group of readChunks.
func (c *Catalog) readGroup(ctx context.Context, blocks []BlockRef, items []readItem, missing func(ChunkID) error, fn func(ChunkID, []byte, []int64) error) error {
	obj := c.getBuf(EncodeBound(MaxBlockSize))
	defer c.putBuf(obj)
	var blks []int64
	// each calls f for every distinct chunk of the group, in order.
	each := func(f func(id ChunkID, it readItem) error) error {
		for k := 0; k < len(items); {
			id := blocks[items[k].blk].ID
			blks = blks[:0]
			e := k
			for ; e < len(items) && blocks[items[e].blk].ID == id; e++ {
				blks = append(blks, items[e].blk)
			}
			if err := f(id, items[k]); err != nil {
				return err
			}
			k = e
		}
		return nil
	}
	one := func(id ChunkID, _ readItem) error {
		o, err := c.chunks.GetObject(ctx, id, obj[:0])
		if missing != nil && errors.Is(err, ErrChunkMissing) {
			return missing(id)
		}
		if err != nil {
			return err
		}
		return fn(id, o, blks)
	}
	first, last := items[0], items[len(items)-1]
	if first.pack == nil || len(items) == 1 {
		return each(one)
	}
	rc, _, err := c.store.Get(ctx, c.chunks.packKey(first.pack.id), objstore.GetOptions{
		Range: &objstore.Range{Offset: int64(first.off), Length: int64(last.off) + int64(last.len) - int64(first.off)},
	})
	if errors.Is(err, objstore.ErrNotFound) {
		return each(one) // garbage collection moved the chunks: look each up again
	}
	if err != nil {
		return fmt.Errorf("reading pack %s: %w", first.pack.id, err)
	}
	defer rc.Close()
	return each(func(id ChunkID, it readItem) error {
		b := obj[:it.len]
		if _, err := io.ReadFull(rc, b); err != nil {
			return fmt.Errorf("reading chunk %s from pack %s: %w", id, it.pack.id, err)
		}
		return fn(id, b, blks)
	})
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	ID string `json:"id"`
	// Chunks is the number of distinct chunks checked.
	Chunks int `json:"chunks"`
	// Missing and Corrupt list chunks that are absent or fail their hash
	// (at most 100 of each).
	Missing []string `json:"missing,omitempty"`
	Corrupt []string `json:"corrupt,omitempty"`
	// OK is true when every chunk was present and intact.
	OK bool `json:"ok"`
}

// Verify re-reads every distinct chunk a completed snapshot references and
// re-hashes it. A damaged snapshot is reported in the result with OK false
// and a nil error; the error is for failures to carry out the check.
func (c *Catalog) Verify(ctx context.Context, id string) (VerifyResult, error) {
	res := VerifyResult{ID: id}
	m, err := c.Manifest(ctx, id)
	if err != nil {
		return res, err
	}
	// Each distinct chunk once; readChunks reads neighbours in a pack
	// together.
	seen := make(map[ChunkID]bool)
	var refs []BlockRef
	for _, b := range m.Map.Blocks {
		if !b.ID.IsZero() && !seen[b.ID] {
			seen[b.ID] = true
			refs = append(refs, b)
		}
	}
	res.Chunks = len(refs)
	var mu sync.Mutex
	note := func(list *[]string, id ChunkID) {
		mu.Lock()
		defer mu.Unlock()
		if len(*list) < 100 {
			*list = append(*list, id.String())
		}
	}
	var bad atomic.Int64
	missing := func(id ChunkID) error {
		bad.Add(1)
		note(&res.Missing, id)
		return nil
	}
	err = c.readChunks(ctx, refs, missing, func(id ChunkID, obj []byte, _ []int64) error {
		raw := c.getBuf(m.Map.BlockSize)
		defer c.putBuf(raw)
		if _, err := c.coder.Decode(raw[:0], obj, id); err != nil {
			bad.Add(1)
			note(&res.Corrupt, id)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.OK = bad.Load() == 0
	return res, nil
}
