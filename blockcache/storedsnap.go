package blockcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicegw/sluice/snapshot"
)

const (
	pendingFile = "snap.json"
	frozenFile  = "snap.frozen"
	cowFile     = "snap.cow"
	cowMapFile  = "snap.cowmap"
)

// pendingState is snap.json: the snapshot a volume is taking.
type pendingState struct {
	ID          string            `json:"id"`
	Parent      string            `json:"parent,omitempty"`
	Created     time.Time         `json:"created"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// pendingSnap is a frozen point-in-time image of the volume: the blocks
// the snapshot reads (frozen) and the old contents of those overwritten
// since (cow, cowmap).
type pendingSnap struct {
	pendingState
	frozen *snapshot.Bitmap
	cowmap *bitmapFile
	cow    *os.File
}

func (ps *pendingSnap) close() {
	ps.cowmap.Close()
	ps.cow.Close()
}

// loadPending reopens the pending snapshot state of a volume, if any.
func loadPending(v *StoredVolume) (*pendingSnap, error) {
	b, err := os.ReadFile(filepath.Join(v.dir, pendingFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", pendingFile, err)
	}
	ps := &pendingSnap{}
	if err := json.Unmarshal(b, &ps.pendingState); err != nil || ps.ID == "" {
		return nil, fmt.Errorf("%s: %w", pendingFile, ErrCorrupt)
	}
	fz, err := openBitmapFile(filepath.Join(v.dir, frozenFile))
	if err != nil {
		return nil, err
	}
	ps.frozen = fz.Snapshot()
	fz.Close()
	if ps.cowmap, err = openBitmapFile(filepath.Join(v.dir, cowMapFile)); err != nil {
		return nil, err
	}
	if ps.frozen.Len() != v.numBlocks() || ps.cowmap.bm.Len() != v.numBlocks() {
		ps.cowmap.Close()
		return nil, fmt.Errorf("pending snapshot geometry: %w", ErrCorrupt)
	}
	if ps.cow, err = os.OpenFile(filepath.Join(v.dir, cowFile), os.O_RDWR, 0); err != nil {
		ps.cowmap.Close()
		return nil, fmt.Errorf("opening %s: %w", cowFile, err)
	}
	v.log.Info("pending snapshot found", "id", ps.ID, "frozen_blocks", ps.frozen.Count(), "preserved_blocks", ps.cowmap.Snapshot().Count())
	return ps, nil
}

// preserve copies block b aside before its first overwrite while the
// snapshot still needs it. The copy and its map bit are durable before the
// caller may overwrite the block.
func (ps *pendingSnap) preserve(v *StoredVolume, b int64) error {
	if !ps.frozen.Test(b) {
		return nil
	}
	s := &v.stripes[b%int64(len(v.stripes))]
	s.Lock()
	defer s.Unlock()
	if ps.cowmap.Test(b) {
		return nil
	}
	bs := int64(v.meta.BlockSize)
	buf := make([]byte, min(bs, v.meta.Size-b*bs))
	if _, err := v.data.ReadAt(buf, b*bs); err != nil && err != io.EOF {
		return fmt.Errorf("copy-on-write read: %w", err)
	}
	if _, err := ps.cow.WriteAt(buf, b*bs); err != nil {
		return fmt.Errorf("copy-on-write: %w", err)
	}
	if err := fdatasync(ps.cow); err != nil {
		return fmt.Errorf("copy-on-write sync: %w", err)
	}
	if err := v.failpoint("stored.cow-copied"); err != nil {
		return err
	}
	return ps.cowmap.Set(b)
}

// snapSource reads the frozen image: preserved blocks from the
// copy-on-write file, the rest from the data file.
type snapSource struct {
	v  *StoredVolume
	ps *pendingSnap
}

// ReadBlock implements snapshot.BlockSource.
func (s snapSource) ReadBlock(ctx context.Context, i int64, p []byte) error {
	st := &s.v.stripes[i%int64(len(s.v.stripes))]
	st.Lock()
	defer st.Unlock()
	f := s.v.data
	if s.ps.cowmap.Test(i) {
		f = s.ps.cow
	}
	if _, err := f.ReadAt(p, i*int64(s.v.meta.BlockSize)); err != nil && err != io.EOF {
		return fmt.Errorf("snapshot read of block %d: %w", i, err)
	}
	return nil
}

// SnapshotRequest carries the optional attributes of a snapshot.
type SnapshotRequest struct {
	Description string
	Tags        map[string]string
}

// Snapshot takes a point-in-time snapshot of the volume into cat and
// returns its catalogue entry. The instant is when Snapshot freezes the
// changed-block set (a few milliseconds); writes continue during the
// upload, and blocks the snapshot still needs are copied aside before they
// are overwritten. The snapshot is incremental on the volume's base
// snapshot when that is still in the catalogue, and full otherwise.
//
// A snapshot left pending by a crash, cancellation or store outage is
// resumed first. When the upload fails for good, the changed blocks are
// merged back so the next snapshot includes them; when it cannot be
// finished now (ctx cancelled, store unreachable) it stays pending and is
// resumed by the next Snapshot or ResumeSnapshot, also after a restart.
func (v *StoredVolume) Snapshot(ctx context.Context, cat *snapshot.Catalog, req SnapshotRequest) (snapshot.Info, error) {
	if !v.snapRun.TryLock() {
		return snapshot.Info{}, ErrSnapshotBusy
	}
	defer v.snapRun.Unlock()
	if err := v.check(0, 0); err != nil {
		return snapshot.Info{}, err
	}
	v.mu.Lock()
	ps := v.snap
	v.mu.Unlock()
	if ps != nil {
		if _, err := v.upload(ctx, cat, ps); err != nil {
			return snapshot.Info{}, fmt.Errorf("finishing earlier snapshot %s: %w", ps.ID, err)
		}
	}
	ps, err := v.freezeSnapshot(ctx, cat, req)
	if err != nil {
		return snapshot.Info{}, err
	}
	return v.upload(ctx, cat, ps)
}

// ResumeSnapshot finishes a pending snapshot (found at OpenStored or left
// by an earlier failure). It reports false when there was none.
func (v *StoredVolume) ResumeSnapshot(ctx context.Context, cat *snapshot.Catalog) (snapshot.Info, bool, error) {
	v.snapRun.Lock()
	defer v.snapRun.Unlock()
	if err := v.check(0, 0); err != nil {
		return snapshot.Info{}, false, err
	}
	v.mu.Lock()
	ps := v.snap
	v.mu.Unlock()
	if ps == nil {
		return snapshot.Info{}, false, nil
	}
	in, err := v.upload(ctx, cat, ps)
	return in, true, err
}

// freezeSnapshot fixes the snapshot's instant: with writes held off, it
// records the blocks to read and starts copy-on-write.
func (v *StoredVolume) freezeSnapshot(ctx context.Context, cat *snapshot.Catalog, req SnapshotRequest) (*pendingSnap, error) {
	v.mu.Lock()
	base := v.meta.Base
	v.mu.Unlock()
	parent := base
	if base != "" {
		in, err := cat.Get(ctx, base)
		switch {
		case errors.Is(err, snapshot.ErrNotFound):
			parent = ""
		case err != nil:
			return nil, err
		case in.Status != snapshot.StatusCompleted || in.Size != v.meta.Size || in.BlockSize != v.meta.BlockSize:
			parent = ""
		}
		if parent == "" {
			v.log.Info("base snapshot gone: taking a full snapshot", "base", base)
		}
	}
	now := time.Now().UTC()
	ps := &pendingSnap{pendingState: pendingState{ID: snapshot.NewID(now), Parent: parent, Created: now, Description: req.Description, Tags: req.Tags}}

	v.freeze.Lock()
	defer v.freeze.Unlock()
	frozen := v.changed.Snapshot()
	if base != "" && parent == "" {
		// Everything the data file holds, not just the changes since the
		// lost base.
		alloc, err := v.allocatedBlocks()
		if err != nil {
			return nil, err
		}
		frozen.Or(alloc)
	}
	ps.frozen = frozen
	if err := v.writePending(ps); err != nil {
		v.removePending()
		return nil, err
	}
	if err := v.failpoint("stored.snapshot-pending"); err != nil {
		ps.close()
		return nil, err
	}
	// Copy-on-write starts now: the snapshot's instant.
	v.mu.Lock()
	v.snap = ps
	v.mu.Unlock()
	// The frozen set is durable in snap.frozen; the live set starts empty.
	// If clearing it fails, the snapshot stays pending and the live set a
	// superset of the changes since (extra reads later, nothing lost).
	if err := v.changed.Reset(snapshot.NewBitmap(v.numBlocks())); err != nil {
		return nil, err
	}
	v.log.Info("snapshot frozen", "id", ps.ID, "parent", parent, "blocks", frozen.Count())
	return ps, nil
}

// writePending creates the pending-snapshot files; snap.json goes last and
// commits them.
func (v *StoredVolume) writePending(ps *pendingSnap) error {
	n := v.numBlocks()
	fz, err := createBitmapFile(filepath.Join(v.dir, frozenFile), v.meta.BlockSize, ps.frozen)
	if err != nil {
		return err
	}
	fz.Close()
	if ps.cowmap, err = createBitmapFile(filepath.Join(v.dir, cowMapFile), v.meta.BlockSize, snapshot.NewBitmap(n)); err != nil {
		return err
	}
	ps.cow, err = os.OpenFile(filepath.Join(v.dir, cowFile), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		err = ps.cow.Truncate(v.meta.Size)
	}
	if err != nil {
		ps.cowmap.Close()
		return fmt.Errorf("creating %s: %w", cowFile, err)
	}
	b, _ := json.Marshal(ps.pendingState)
	if err := writeFileAtomic(filepath.Join(v.dir, pendingFile), b); err != nil {
		ps.close()
		return fmt.Errorf("writing %s: %w", pendingFile, err)
	}
	return nil
}

// removePending deletes the pending-snapshot files, snap.json first.
func (v *StoredVolume) removePending() error {
	if err := os.Remove(filepath.Join(v.dir, pendingFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := syncDir(v.dir); err != nil {
		return err
	}
	for _, f := range []string{frozenFile, cowFile, cowMapFile} {
		if err := os.Remove(filepath.Join(v.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// upload runs (or resumes) the catalogue side of a pending snapshot and
// settles the volume's state with the outcome.
func (v *StoredVolume) upload(ctx context.Context, cat *snapshot.Catalog, ps *pendingSnap) (snapshot.Info, error) {
	in, err := cat.Create(ctx, snapshot.CreateRequest{
		ID: ps.ID, Volume: v.meta.Name, Size: v.meta.Size, BlockSize: v.meta.BlockSize, Codec: v.meta.Codec,
		Parent: ps.Parent, Changed: ps.frozen, Source: snapSource{v, ps},
		Description: ps.Description, Tags: ps.Tags,
	})
	if err == nil {
		return in, v.finish(ps, in.ID)
	}
	if errors.Is(err, snapshot.ErrFailpoint) || ctx.Err() != nil {
		return in, err
	}
	// Failed for good, or only interrupted?
	cur, gerr := cat.Get(ctx, ps.ID)
	if gerr == nil && cur.Status == snapshot.StatusCompleted {
		return cur, v.finish(ps, cur.ID)
	}
	if (gerr == nil && cur.Status == snapshot.StatusError) || errors.Is(gerr, snapshot.ErrNotFound) {
		if aerr := v.abort(ps); aerr != nil {
			return in, errors.Join(err, aerr)
		}
	}
	return in, err
}

// finish makes the completed snapshot the volume's base and drops the
// pending state.
func (v *StoredVolume) finish(ps *pendingSnap, id string) error {
	v.mu.Lock()
	meta := v.meta
	v.mu.Unlock()
	meta.Base = id
	if err := writeMeta(v.dir, meta); err != nil {
		return err
	}
	if err := v.failpoint("stored.base-updated"); err != nil {
		return err
	}
	v.freeze.Lock()
	defer v.freeze.Unlock()
	v.mu.Lock()
	v.meta.Base = meta.Base
	v.snap = nil
	v.mu.Unlock()
	ps.close()
	return v.removePending()
}

// abort gives up a failed snapshot: its blocks go back into the changed
// set so the next snapshot includes them.
func (v *StoredVolume) abort(ps *pendingSnap) error {
	v.freeze.Lock()
	defer v.freeze.Unlock()
	merged := v.changed.Snapshot()
	merged.Or(ps.frozen)
	if err := v.changed.Reset(merged); err != nil {
		return err
	}
	v.mu.Lock()
	v.snap = nil
	v.mu.Unlock()
	ps.close()
	v.log.Warn("snapshot abandoned; its blocks stay marked changed", "id", ps.ID)
	return v.removePending()
}

// CreateStoredFromSnapshot creates a stored volume in dir (which must not
// hold a volume) with the content of a completed snapshot: a full restore
// into a sparse data file. The volume's name is cfg.Name; size, block size
// and codec come from the snapshot (cfg.Codec overrides the codec when
// set to other than the default). Its next snapshot is incremental on the
// source snapshot, sharing its chunks.
func CreateStoredFromSnapshot(ctx context.Context, dir string, cat *snapshot.Catalog, id string, cfg StoredConfig, o Options) (*StoredVolume, error) {
	in, err := cat.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if in.Status != snapshot.StatusCompleted {
		return nil, fmt.Errorf("snapshot %s is %s: %w", id, in.Status, snapshot.ErrNotCompleted)
	}
	if cfg.Name == "" {
		return nil, fmt.Errorf("volume from snapshot %s: no name: %w", id, ErrInvalid)
	}
	if _, err := os.Stat(filepath.Join(dir, metaFile)); err == nil {
		return nil, fmt.Errorf("%s: %w", dir, ErrExists)
	}
	codec := in.Codec
	if cfg.Codec != 0 {
		codec = cfg.Codec
	}
	meta := volumeMeta{Version: 1, Name: cfg.Name, Size: in.Size, BlockSize: in.BlockSize, Codec: codec, Base: id, Created: time.Now().UTC()}
	err = initVolumeDir(dir, meta, func(f *os.File) error {
		_, err := cat.RestoreInto(ctx, id, f)
		return err
	})
	if err != nil {
		for _, f := range []string{dataFile, changedFile, changedFile + ".tmp"} {
			os.Remove(filepath.Join(dir, f))
		}
		return nil, fmt.Errorf("volume from snapshot %s: %w", id, err)
	}
	return OpenStored(dir, o)
}
