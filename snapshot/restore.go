package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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
// on Concurrency goroutines.
func (c *Catalog) eachChunk(ctx context.Context, m *BlockMap, fn func(i int64, raw []byte) error) error {
	n := m.NumBlocks()
	var (
		mu   sync.Mutex
		next int64
	)
	nextBlock := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		for next < n && m.Blocks[next].ID.IsZero() {
			next++
		}
		if next >= n {
			return -1
		}
		next++
		return next - 1
	}
	return parallel(ctx, c.o.Concurrency, c.o.Concurrency, func(ctx context.Context, _ int) error {
		obj := c.getBuf(EncodeBound(m.BlockSize))
		raw := c.getBuf(m.BlockSize)
		defer c.putBuf(raw)
		defer c.putBuf(obj)
		for {
			i := nextBlock()
			if i < 0 {
				return nil
			}
			id := m.Blocks[i].ID
			o, err := c.chunks.GetObject(ctx, id, obj[:0])
			if err != nil {
				return err
			}
			b, err := c.coder.Decode(raw[:0], o, id)
			if err != nil {
				return err
			}
			if len(b) != m.BlockLen(i) {
				return fmt.Errorf("chunk %s of block %d has %d bytes, want %d: %w", id, i, len(b), m.BlockLen(i), ErrCorrupt)
			}
			if err := fn(i, b); err != nil {
				return err
			}
		}
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
	seen := make(map[ChunkID]bool)
	var ids []ChunkID
	for _, b := range m.Map.Blocks {
		if !b.ID.IsZero() && !seen[b.ID] {
			seen[b.ID] = true
			ids = append(ids, b.ID)
		}
	}
	res.Chunks = len(ids)
	var mu sync.Mutex
	note := func(list *[]string, id ChunkID) {
		mu.Lock()
		defer mu.Unlock()
		if len(*list) < 100 {
			*list = append(*list, id.String())
		}
	}
	var bad atomic.Int64
	err = parallel(ctx, c.o.Concurrency, c.o.Concurrency, func(ctx context.Context, w int) error {
		obj := c.getBuf(EncodeBound(m.Map.BlockSize))
		raw := c.getBuf(m.Map.BlockSize)
		defer c.putBuf(raw)
		defer c.putBuf(obj)
		for k := w; k < len(ids); k += c.o.Concurrency {
			o, err := c.chunks.GetObject(ctx, ids[k], obj[:0])
			if errors.Is(err, ErrChunkMissing) {
				bad.Add(1)
				note(&res.Missing, ids[k])
				continue
			}
			if err != nil {
				return err
			}
			if _, err := c.coder.Decode(raw[:0], o, ids[k]); err != nil {
				bad.Add(1)
				note(&res.Corrupt, ids[k])
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.OK = bad.Load() == 0
	return res, nil
}
