package blockcache

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/snapshot"
)

// BenchmarkWriteAt measures 4 KiB random writes to a stored volume: with
// the changed bits already set (the steady state), on first touch of each
// block (bit set and fdatasync-ed before the write), and while a snapshot
// is pending (copy-on-write of each block's first overwrite).
func BenchmarkWriteAt(b *testing.B) {
	ctx := context.Background()
	const size = 256 << 20
	for _, mode := range []string{"steady", "first-touch", "cow"} {
		b.Run(mode, func(b *testing.B) {
			v, err := CreateStored(filepath.Join(b.TempDir(), "v"), StoredConfig{Name: "b", Size: size, BlockSize: snapshot.MinBlockSize}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			p := make([]byte, 4096)
			blockcachetest.Fill(rand.New(rand.NewPCG(1, 1)), p, 0)
			blocks := int64(size / snapshot.MinBlockSize)
			if mode != "first-touch" {
				for i := int64(0); i < blocks; i++ {
					if err := v.WriteAt(ctx, p, i*snapshot.MinBlockSize, false); err != nil {
						b.Fatal(err)
					}
				}
			}
			if mode == "cow" {
				e := embeddedEnv(b, "")
				ps, err := v.freezeSnapshot(ctx, e.cat, SnapshotRequest{})
				if err != nil || ps == nil {
					b.Fatal(err)
				}
			}
			r := rand.New(rand.NewPCG(2, 2))
			b.SetBytes(4096)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var off int64
				if mode == "steady" {
					off = r.Int64N(size/4096) * 4096
				} else {
					off = (int64(i) % blocks) * snapshot.MinBlockSize
				}
				if err := v.WriteAt(ctx, p, off, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVolumeSnapshot measures an incremental snapshot of a stored
// volume (64 changed 1 MiB blocks) into an embedded store.
func BenchmarkVolumeSnapshot(b *testing.B) {
	ctx := context.Background()
	e := embeddedEnv(b, "")
	v, err := CreateStored(filepath.Join(b.TempDir(), "v"), StoredConfig{Name: "b", Size: 1 << 30, Codec: snapshot.CodecLZ4}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	r := rand.New(rand.NewPCG(3, 3))
	p := make([]byte, snapshot.DefaultBlockSize)
	b.SetBytes(64 * snapshot.DefaultBlockSize)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for k := 0; k < 64; k++ {
			blockcachetest.Fill(r, p, k%2)
			if err := v.WriteAt(ctx, p, r.Int64N(1024)*snapshot.DefaultBlockSize, false); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := v.Snapshot(ctx, e.cat, SnapshotRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}
