package nfs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// TestRandomOpsMatchModel applies random writes, truncates, commits,
// cache drops and reads to one file while uploads run in between (short
// settle time), checking every read and the final object against an
// in-memory model.
func TestRandomOpsMatchModel(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run("seed"+string(rune('0'+seed)), func(t *testing.T) {
			ts := startServer(t, nil, func(c *Config, _ *Share) {
				c.SettleTime = 5 * time.Millisecond
				c.PartSize = 6 << 20
				c.ReadAhead = 2 << 20
			})
			cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
			root := mount(t, cl)
			rng := rand.New(rand.NewPCG(seed, seed))
			fh, err := cl.Create(root, "m", 0o644)
			if err != nil {
				t.Fatal(err)
			}
			var model []byte
			for i := range 200 {
				switch op := rng.IntN(10); {
				case op < 5:
					off := rng.IntN(14 << 20)
					n := 1 + rng.IntN(300<<10)
					if rng.IntN(3) == 0 {
						off = len(model) // append
					}
					data := make([]byte, n)
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
					if err := cl.Write(fh, uint64(off), data, uint32(rng.IntN(3))); err != nil {
						t.Fatalf("op %d write: %v", i, err)
					}
					if off+n > len(model) {
						model = append(model, make([]byte, off+n-len(model))...)
					}
					copy(model[off:], data)
				case op == 5:
					size := rng.IntN(len(model) + 2<<20)
					if err := cl.Setattr(fh, -1, int64(size)); err != nil {
						t.Fatalf("op %d truncate: %v", i, err)
					}
					if size < len(model) {
						model = model[:size]
					} else {
						model = append(model, make([]byte, size-len(model))...)
					}
				case op == 6:
					if err := cl.Commit(fh); err != nil {
						t.Fatalf("op %d commit: %v", i, err)
					}
				case op == 7:
					time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
					ts.Refresh(context.Background(), "share", "", true)
				default:
					if len(model) == 0 {
						continue
					}
					off := rng.IntN(len(model))
					n := 1 + rng.IntN(1<<20)
					got, _, err := cl.Read(fh, uint64(off), uint32(n))
					if err != nil {
						t.Fatalf("op %d read: %v", i, err)
					}
					want := model[off:min(len(model), off+n)]
					if !bytes.Equal(got, want) {
						t.Fatalf("op %d: read %d bytes at %d differs from the model (size %d)", i, n, off, len(model))
					}
				}
			}
			if err := cl.Commit(fh); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				got, _ := objectBytes(t, ts.Store, "m")
				if bytes.Equal(got, model) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("object (%d bytes) never matched the model (%d bytes)", len(got), len(model))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
