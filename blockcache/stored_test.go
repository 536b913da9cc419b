package blockcache

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// Compile-time checks that a stored volume has the shape of the SCSI
// block-device contract (iscsi/scsi.BlockDevice, Unmapper,
// MappingReporter), without importing the front end.
var _ interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	Flush(ctx context.Context) error
	Size() int64
	Unmap(ctx context.Context, off, length int64) error
	Mapped(ctx context.Context, off int64) (bool, int64, error)
} = (*StoredVolume)(nil)

// snapshotScenario writes patterns, snapshots, writes more, snapshots
// again, and checks that each snapshot restores to a new volume holding
// exactly what the volume held at that instant. It runs against any store.
func snapshotScenario(t *testing.T, e *env, size int64, bs int, codec snapshot.Codec) {
	ctx := ctxT(t)
	m := newModel(t, filepath.Join(t.TempDir(), "vol"), size, bs, codec)
	r := rand.New(rand.NewPCG(11, uint64(bs)))
	for k := 0; k < 24; k++ {
		off := r.Int64N(size/4096) * 4096
		n := int(min(size-off, int64(4096*(1+r.IntN(64)))))
		m.write(t, r, off, n, k%3)
	}
	want1 := m.image()
	s1, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{Description: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Status != snapshot.StatusCompleted || s1.Parent != "" {
		t.Fatalf("first snapshot: %+v", s1)
	}
	// Overwrite some, unmap a range, write past the middle.
	for k := 0; k < 10; k++ {
		off := r.Int64N(size/4096) * 4096
		m.write(t, r, off, int(min(size-off, 8192)), k%2)
	}
	if err := m.v.Unmap(ctx, 0, int64(bs)); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	clear(m.want[:bs])
	m.mu.Unlock()
	want2 := m.image()
	changed := m.v.Info().ChangedBlocks
	s2, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{Tags: map[string]string{"n": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Parent != s1.ID || s2.BlocksRead != changed {
		t.Fatalf("second snapshot read %d blocks, %d changed: %+v", s2.BlocksRead, changed, s2)
	}
	if got := volumeBytes(t, m.v); !bytes.Equal(got, want2) {
		t.Fatalf("volume differs from model at %d", firstDiff(got, want2))
	}
	v1, got1 := restoreVolume(t, e, s1.ID)
	if !bytes.Equal(got1, want1) {
		t.Fatalf("snapshot 1 differs at %d", firstDiff(got1, want1))
	}
	_, got2 := restoreVolume(t, e, s2.ID)
	if !bytes.Equal(got2, want2) {
		t.Fatalf("snapshot 2 differs at %d", firstDiff(got2, want2))
	}
	// A volume made from a snapshot snapshots incrementally on it.
	p := make([]byte, 4096)
	blockcachetest.Fill(r, p, 0)
	if err := v1.WriteAt(ctx, p, 4096, true); err != nil {
		t.Fatal(err)
	}
	s3, err := v1.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s3.Parent != s1.ID || s3.BlocksRead != 1 || s3.ChunksUploaded != 1 {
		t.Fatalf("snapshot of a restored volume: %+v", s3)
	}
	for _, id := range []string{s1.ID, s2.ID, s3.ID} {
		if res, err := e.cat.Verify(ctx, id); err != nil || !res.OK {
			t.Fatalf("verify %s: %+v %v", id, res, err)
		}
	}
	checkCatalog(t, e)
}

func TestStoredSnapshotScenario(t *testing.T) {
	tests := []struct {
		bs    int
		codec snapshot.Codec
	}{
		{snapshot.MinBlockSize, snapshot.CodecZstd},
		{256 << 10, snapshot.CodecLZ4},
		{snapshot.DefaultBlockSize, snapshot.CodecNone},
	}
	for _, tc := range tests {
		t.Run(tc.codec.String(), func(t *testing.T) {
			snapshotScenario(t, embeddedEnv(t, ""), 8<<20+64<<10, tc.bs, tc.codec)
		})
	}
}

// target wraps a stored volume for the reusable scenarios of
// blockcachetest.
func target(t *testing.T, e *env, v *StoredVolume) blockcachetest.Target {
	return blockcachetest.Target{
		Dev: v,
		Snapshot: func(ctx context.Context) (snapshot.Info, error) {
			return v.Snapshot(ctx, e.cat, SnapshotRequest{})
		},
		Restore: func(ctx context.Context, id string) ([]byte, error) {
			_, img := restoreVolume(t, e, id)
			return img, nil
		},
		Block: 4096,
	}
}

// continuousScenario runs blockcachetest.WriteDuringSnapshot on a stored
// volume with slowed-down uploads, then checks that the next snapshot picks
// up the writes that landed during the first.
func continuousScenario(t *testing.T, e *env, size int64, bs int) {
	ctx := ctxT(t)
	m := newModel(t, filepath.Join(t.TempDir(), "vol"), size, bs, snapshot.CodecLZ4)
	blockcachetest.WriteDuringSnapshot(t, target(t, e, m.v), 21, func() func() {
		e.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Latency: 2 * time.Millisecond})
		return e.faults.Clear
	})
	s2, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, img2 := restoreVolume(t, e, s2.ID); firstDiff(img2, volumeBytes(t, m.v)) >= 0 {
		t.Fatal("second snapshot differs from the volume")
	}
	checkCatalog(t, e)
}

func TestPointInTimeScenario(t *testing.T) {
	e := embeddedEnv(t, "")
	m := newModel(t, filepath.Join(t.TempDir(), "vol"), 8<<20, snapshot.MinBlockSize, snapshot.CodecZstd)
	first, second := blockcachetest.PointInTime(t, target(t, e, m.v), 31)
	if second.Parent != first.ID {
		t.Fatalf("second snapshot's parent is %q, want %q", second.Parent, first.ID)
	}
	checkCatalog(t, e)
}

func TestSnapshotWhileWriting(t *testing.T) {
	e := embeddedEnv(t, "")
	continuousScenario(t, e, 4<<20, snapshot.MinBlockSize)
}

func TestReopenKeepsChangedBlocks(t *testing.T) {
	ctx := ctxT(t)
	e := embeddedEnv(t, "")
	dir := filepath.Join(t.TempDir(), "vol")
	m := newModel(t, dir, 4<<20, snapshot.MinBlockSize, snapshot.CodecZstd)
	r := rand.New(rand.NewPCG(1, 2))
	m.write(t, r, 0, 4096, 0)
	s1, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{70000, 1 << 20, 3<<20 + 5} {
		m.write(t, r, off, 100, 0)
	}
	if err := m.v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m.v.Close()
	v, err := OpenStored(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if in := v.Info(); in.ChangedBlocks != 3 || in.Base != s1.ID {
		t.Fatalf("after reopen: %+v", in)
	}
	if _, err := OpenStored(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	s2, err := v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil || s2.BlocksRead != 3 {
		t.Fatalf("snapshot after reopen: %+v %v", s2, err)
	}
	if _, img := restoreVolume(t, e, s2.ID); !bytes.Equal(img, m.image()) {
		t.Fatal("snapshot after reopen differs")
	}
}

func TestVolumeIO(t *testing.T) {
	ctx := ctxT(t)
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateStored(dir, StoredConfig{Name: "io", Size: 8 << 20}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := CreateStored(dir, StoredConfig{Name: "io", Size: 8 << 20}, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("create over a volume: %v", err)
	}
	tests := []struct {
		name string
		err  error
		fn   func() error
	}{
		{"read past end", ErrOutOfRange, func() error { return v.ReadAt(ctx, make([]byte, 512), 8<<20) }},
		{"negative", ErrOutOfRange, func() error { return v.WriteAt(ctx, make([]byte, 512), -512, false) }},
		{"unmap past end", ErrOutOfRange, func() error { return v.Unmap(ctx, 8<<20-512, 1024) }},
		{"write", nil, func() error { return v.WriteAt(ctx, bytes.Repeat([]byte{7}, 8192), 1<<20, true) }},
		{"flush", nil, func() error { return v.Flush(ctx) }},
	}
	for _, tc := range tests {
		if err := tc.fn(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	mapped, run, err := v.Mapped(ctx, 0)
	if err != nil || mapped || run != 1<<20 {
		t.Fatalf("mapped(0) = %v %d %v", mapped, run, err)
	}
	mapped, run, err = v.Mapped(ctx, 1<<20)
	if err != nil || !mapped || run < 8192 {
		t.Fatalf("mapped(1M) = %v %d %v", mapped, run, err)
	}
	if err := v.Unmap(ctx, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 8192)
	if err := v.ReadAt(ctx, p, 1<<20); err != nil || !bytes.Equal(p, make([]byte, 8192)) {
		t.Fatalf("unmapped range reads %v %v", p[:4], err)
	}
	for _, cfg := range []StoredConfig{{Name: "", Size: 1 << 20}, {Name: "x", Size: 1000}, {Name: "x", Size: 1 << 20, BlockSize: 3 << 20}} {
		if _, err := CreateStored(t.TempDir(), cfg, Options{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	if _, err := OpenStored(t.TempDir(), Options{}); !errors.Is(err, ErrNotVolume) {
		t.Errorf("open empty dir: %v", err)
	}
	v.Close()
	if err := v.WriteAt(ctx, p, 0, false); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestBaseSnapshotDeletedGoesFull(t *testing.T) {
	ctx := ctxT(t)
	e := embeddedEnv(t, "")
	m := newModel(t, filepath.Join(t.TempDir(), "vol"), 4<<20, snapshot.MinBlockSize, snapshot.CodecZstd)
	r := rand.New(rand.NewPCG(3, 3))
	for k := 0; k < 8; k++ {
		m.write(t, r, int64(k)*300000, 5000, k%2)
	}
	s1, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cat.Delete(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	m.write(t, r, 0, 100, 0)
	s2, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Parent != "" || s2.BlocksRead < 8 {
		t.Fatalf("snapshot after its base was deleted: %+v", s2)
	}
	if _, img := restoreVolume(t, e, s2.ID); !bytes.Equal(img, m.image()) {
		t.Fatal("full snapshot differs")
	}
}
