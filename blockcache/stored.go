// Package blockcache holds Sluice's block volumes: the storage behind iSCSI
// logical units. A stored volume keeps its primary data in a sparse local
// file under the data directory, tracks which blocks changed since its last
// snapshot in a persistent bitmap, and takes point-in-time snapshots into a
// snapshot.Catalog while it keeps serving writes.
//
// Volumes implement the block-device contract of the iSCSI target (ReadAt,
// WriteAt, Flush, Size, Unmap, Mapped) without importing it: storage sits
// below the protocol front ends.
//
// A stored volume's directory:
//
//	volume.json    configuration and base snapshot (atomic rewrite)
//	data           the volume's bytes (sparse file)
//	changed.bmp    changed-block bitmap (see bitmapfile.go)
//	snap.json      present while a snapshot is pending: its id and parent
//	snap.frozen    the blocks that snapshot reads from the volume
//	snap.cow       old contents of frozen blocks overwritten since (sparse)
//	snap.cowmap    which blocks snap.cow holds
package blockcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicegw/sluice/snapshot"
)

// StoredConfig describes a new stored volume.
type StoredConfig struct {
	// Name identifies the volume in snapshot catalogues.
	Name string
	// Size in bytes; a multiple of 512.
	Size int64
	// BlockSize is the snapshot block (chunk) size; 0 means
	// snapshot.DefaultBlockSize.
	BlockSize int
	// Codec compresses snapshot chunks (default zstd).
	Codec snapshot.Codec
}

// Options are the run-time dependencies of a volume.
type Options struct {
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Failpoint, when set, is called at each durability boundary with its
	// name; a non-nil error aborts there as a crash would. Tests only.
	Failpoint func(name string) error
}

// volumeMeta is volume.json.
type volumeMeta struct {
	Version   int            `json:"version"`
	Name      string         `json:"name"`
	Size      int64          `json:"size"`
	BlockSize int            `json:"block_size"`
	Codec     snapshot.Codec `json:"codec"`
	// Base is the snapshot whose image equals the volume outside the
	// changed blocks; empty means those blocks are zeros (a new volume).
	Base    string    `json:"base,omitempty"`
	Created time.Time `json:"created"`
}

// StoredVolume is a block volume kept in a local sparse file with changed-
// block tracking and snapshots. It is safe for concurrent use.
type StoredVolume struct {
	dir string
	o   Options
	log *slog.Logger

	data    *os.File
	changed *bitmapFile

	// freeze is held shared by every write for its whole duration and
	// exclusively while a snapshot is frozen, so a snapshot's instant falls
	// between writes.
	freeze sync.RWMutex
	// stripes serialise copy-on-write of a block with the snapshot reading
	// it.
	stripes [64]sync.Mutex

	mu     sync.Mutex // guards meta.Base, snap, closed; the rest of meta never changes
	meta   volumeMeta
	snap   *pendingSnap
	closed bool

	snapRun sync.Mutex // one snapshot upload at a time
}

const (
	metaFile    = "volume.json"
	dataFile    = "data"
	changedFile = "changed.bmp"
)

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (v *StoredVolume) failpoint(name string) error {
	if v.o.Failpoint == nil {
		return nil
	}
	if err := v.o.Failpoint(name); err != nil {
		return fmt.Errorf("failpoint %s: %w", name, err)
	}
	return nil
}

// CreateStored creates a stored volume in dir (created if needed; it must
// not already hold a volume) and opens it.
func CreateStored(dir string, cfg StoredConfig, o Options) (*StoredVolume, error) {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = snapshot.DefaultBlockSize
	}
	if cfg.Name == "" || cfg.Size <= 0 || cfg.Size%512 != 0 || cfg.Size > snapshot.MaxVolumeSize ||
		!snapshot.ValidBlockSize(cfg.BlockSize) || cfg.Codec > snapshot.CodecLZ4 {
		return nil, fmt.Errorf("stored volume %q of %d bytes, %d-byte blocks: %w", cfg.Name, cfg.Size, cfg.BlockSize, ErrInvalid)
	}
	meta := volumeMeta{Version: 1, Name: cfg.Name, Size: cfg.Size, BlockSize: cfg.BlockSize, Codec: cfg.Codec, Created: time.Now().UTC()}
	if err := initVolumeDir(dir, meta, nil); err != nil {
		return nil, err
	}
	return OpenStored(dir, o)
}

// initVolumeDir lays out a volume directory; fill, when set, writes the
// initial data into the data file before the volume is committed by
// writing volume.json last.
func initVolumeDir(dir string, meta volumeMeta, fill func(f *os.File) error) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("volume dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, metaFile)); err == nil {
		return fmt.Errorf("%s: %w", dir, ErrExists)
	}
	f, err := os.OpenFile(filepath.Join(dir, dataFile), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("volume data: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(meta.Size); err != nil {
		return fmt.Errorf("volume data: %w", err)
	}
	if fill != nil {
		if err := fill(f); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("volume data: %w", err)
	}
	n := (meta.Size + int64(meta.BlockSize) - 1) / int64(meta.BlockSize)
	bf, err := createBitmapFile(filepath.Join(dir, changedFile), meta.BlockSize, snapshot.NewBitmap(n))
	if err != nil {
		return err
	}
	bf.Close()
	return writeMeta(dir, meta)
}

func writeMeta(dir string, meta volumeMeta) error {
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, metaFile), append(b, '\n')); err != nil {
		return fmt.Errorf("writing volume.json: %w", err)
	}
	return nil
}

// OpenStored opens the stored volume in dir. A snapshot that was pending
// when the volume was last closed (or the process died) is reloaded with
// its copy-on-write state; call ResumeSnapshot to finish it.
func OpenStored(dir string, o Options) (*StoredVolume, error) {
	o.defaults()
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotVolume)
	}
	if err != nil {
		return nil, fmt.Errorf("reading volume.json: %w", err)
	}
	var meta volumeMeta
	if err := json.Unmarshal(b, &meta); err != nil || meta.Version != 1 || !snapshot.ValidBlockSize(meta.BlockSize) || meta.Size <= 0 {
		return nil, fmt.Errorf("%s/volume.json: %w", dir, ErrCorrupt)
	}
	v := &StoredVolume{dir: dir, o: o, log: o.Logger.With("volume", meta.Name), meta: meta}
	v.data, err = os.OpenFile(filepath.Join(dir, dataFile), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("volume data: %w", err)
	}
	if err := unix.Flock(int(v.data.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		v.data.Close()
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	if st, err := v.data.Stat(); err != nil || st.Size() != meta.Size {
		v.data.Close()
		return nil, fmt.Errorf("volume data size does not match volume.json: %w", ErrCorrupt)
	}
	v.changed, err = openBitmapFile(filepath.Join(dir, changedFile))
	if err == nil && (v.changed.blockSize != meta.BlockSize || v.changed.bm.Len() != v.numBlocks()) {
		v.changed.Close()
		err = fmt.Errorf("changed.bmp geometry: %w", ErrCorrupt)
	}
	if err != nil {
		v.data.Close()
		return nil, err
	}
	if v.snap, err = loadPending(v); err != nil {
		v.changed.Close()
		v.data.Close()
		return nil, err
	}
	return v, nil
}

func (v *StoredVolume) numBlocks() int64 {
	return (v.meta.Size + int64(v.meta.BlockSize) - 1) / int64(v.meta.BlockSize)
}

// Size returns the volume size in bytes.
func (v *StoredVolume) Size() int64 { return v.meta.Size }

// BlockSize returns the snapshot block size.
func (v *StoredVolume) BlockSize() int { return v.meta.BlockSize }

// Name returns the volume's name.
func (v *StoredVolume) Name() string { return v.meta.Name }

// Dir returns the volume's directory.
func (v *StoredVolume) Dir() string { return v.dir }

// StoredInfo is a stored volume's state for status output.
type StoredInfo struct {
	Name      string         `json:"name"`
	Size      int64          `json:"size"`
	BlockSize int            `json:"block_size"`
	Codec     snapshot.Codec `json:"codec"`
	// Base is the snapshot the next incremental snapshot builds on.
	Base string `json:"base,omitempty"`
	// ChangedBlocks counts blocks written since the last snapshot.
	ChangedBlocks int64 `json:"changed_blocks"`
	// PendingSnapshot is the id of an unfinished snapshot.
	PendingSnapshot string `json:"pending_snapshot,omitempty"`
}

// Info returns the volume's state.
func (v *StoredVolume) Info() StoredInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	in := StoredInfo{Name: v.meta.Name, Size: v.meta.Size, BlockSize: v.meta.BlockSize, Codec: v.meta.Codec, Base: v.meta.Base}
	in.ChangedBlocks = v.changed.Snapshot().Count()
	if v.snap != nil {
		in.PendingSnapshot = v.snap.ID
	}
	return in
}

func (v *StoredVolume) check(off, n int64) error {
	v.mu.Lock()
	closed := v.closed
	v.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if off < 0 || n < 0 || off+n > v.meta.Size {
		return fmt.Errorf("[%d, %d) of %d bytes: %w", off, off+n, v.meta.Size, ErrOutOfRange)
	}
	return nil
}

// ReadAt fills p with the volume's bytes at off.
func (v *StoredVolume) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	if _, err := v.data.ReadAt(p, off); err != nil && err != io.EOF {
		return fmt.Errorf("volume read: %w", err)
	}
	return nil
}

// WriteAt stores p at off. The changed-block bitmap records the blocks
// before the data is written (so a crash can never lose track of a
// change), and blocks a pending snapshot still needs are copied aside
// first. With fua the data is durable on return.
func (v *StoredVolume) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	v.freeze.RLock()
	defer v.freeze.RUnlock()
	if err := v.prepare(off, int64(len(p))); err != nil {
		return err
	}
	if _, err := v.data.WriteAt(p, off); err != nil {
		return fmt.Errorf("volume write: %w", err)
	}
	if fua {
		if err := fdatasync(v.data); err != nil {
			return fmt.Errorf("volume write: %w", err)
		}
	}
	return nil
}

// prepare runs before data in [off, off+n) changes: copy-on-write for a
// pending snapshot, then the changed bits. The caller holds freeze shared.
func (v *StoredVolume) prepare(off, n int64) error {
	bs := int64(v.meta.BlockSize)
	v.mu.Lock()
	ps := v.snap
	v.mu.Unlock()
	for b := off / bs; b <= (off+n-1)/bs; b++ {
		if ps != nil {
			if err := ps.preserve(v, b); err != nil {
				return err
			}
		}
		if err := v.changed.Set(b); err != nil {
			return err
		}
	}
	return v.failpoint("stored.changed-synced")
}

// Flush makes every completed write durable.
func (v *StoredVolume) Flush(ctx context.Context) error {
	if err := v.check(0, 0); err != nil {
		return err
	}
	if err := fdatasync(v.data); err != nil {
		return fmt.Errorf("volume flush: %w", err)
	}
	return nil
}

// Unmap deallocates [off, off+length): the range reads as zeros afterwards
// and the file space is released.
func (v *StoredVolume) Unmap(ctx context.Context, off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	v.freeze.RLock()
	defer v.freeze.RUnlock()
	if err := v.prepare(off, length); err != nil {
		return err
	}
	if err := unix.Fallocate(int(v.data.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length); err != nil {
		return fmt.Errorf("volume unmap: %w", err)
	}
	return nil
}

// Mapped reports whether the byte at off is allocated in the data file and
// how many bytes from off share that state.
func (v *StoredVolume) Mapped(ctx context.Context, off int64) (bool, int64, error) {
	if err := v.check(off, 1); err != nil {
		return false, 0, err
	}
	return seekMapped(v.data, off, v.meta.Size)
}

func seekMapped(f *os.File, off, size int64) (bool, int64, error) {
	fd := int(f.Fd())
	data, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false, size - off, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("volume mapping: %w", err)
	}
	if data > off {
		return false, min(data, size) - off, nil
	}
	hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, fmt.Errorf("volume mapping: %w", err)
	}
	return true, min(hole, size) - off, nil
}

// allocatedBlocks returns the blocks that hold allocated data-file extents.
func (v *StoredVolume) allocatedBlocks() (*snapshot.Bitmap, error) {
	bm := snapshot.NewBitmap(v.numBlocks())
	bs := int64(v.meta.BlockSize)
	for off := int64(0); off < v.meta.Size; {
		mapped, run, err := seekMapped(v.data, off, v.meta.Size)
		if err != nil {
			return nil, err
		}
		if mapped {
			for b := off / bs; b <= (off+run-1)/bs; b++ {
				bm.Set(b)
			}
		}
		off += run
	}
	return bm, nil
}

// Close closes the volume. A pending snapshot stays pending on disk.
func (v *StoredVolume) Close() error {
	v.freeze.Lock()
	defer v.freeze.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	err := fdatasync(v.data)
	if v.snap != nil {
		v.snap.close()
	}
	if cerr := v.changed.Close(); err == nil {
		err = cerr
	}
	if cerr := v.data.Close(); err == nil {
		err = cerr
	}
	return err
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
