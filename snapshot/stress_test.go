package snapshot

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestPackStress runs random snapshots (full and incremental, several at
// once), deletes, collections and restores on three volumes that share
// content, from two catalogues (processes) on one store, with small packs,
// and checks after every collection that exactly the live chunks remain
// and at the end that every snapshot restores to the image it was taken
// of. Collections run while the other catalogue restores. Rounds:
// SLUICE_STRESS_ROUNDS (default 100), seed: SLUICE_STRESS_SEED.
func TestPackStress(t *testing.T) {
	rounds, seed := 100, uint64(1)
	if s := os.Getenv("SLUICE_STRESS_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("SLUICE_STRESS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (SLUICE_STRESS_SEED)", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	ctx := ctxT(t)
	clock := newClock()
	o := Options{
		PackSize: 3 * MinBlockSize, PackMinBytes: 6 * MinBlockSize, IndexMergeMin: 3,
		GCGrace: time.Minute, StaleAfter: 10 * time.Minute,
		Now: func() time.Time { return *clock.Load() },
	}
	a := newTestCatalog(t, "", o)
	b, err := Open(a.store, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cats := []*Catalog{a.Catalog, b}

	const n = 20
	size := int64(n) * MinBlockSize
	type vol struct {
		name    string
		img     *memImage
		last    string
		changed *Bitmap
	}
	// Shared blocks: the same content in several volumes.
	shared := make([]*memImage, 4)
	for i := range shared {
		shared[i] = newMemImage(MinBlockSize, MinBlockSize)
		shared[i].fill(r, 0, i%2)
	}
	vols := make([]*vol, 3)
	for i := range vols {
		vols[i] = &vol{name: "v" + strconv.Itoa(i), img: newMemImage(size, MinBlockSize), changed: NewBitmap(n)}
	}
	mutate := func(v *vol, k int) {
		for range k {
			i := r.Int64N(n)
			if r.IntN(4) == 0 {
				copy(v.img.data[i*MinBlockSize:(i+1)*MinBlockSize], shared[r.IntN(len(shared))].data)
			} else {
				v.img.fill(r, i, r.IntN(3))
			}
			v.changed.Set(i)
		}
	}
	want := map[string][]byte{}
	var order []string
	var gcs GCResult // totals
	restoreCheck := func(c *Catalog, id string) error {
		w := &sliceWriter{b: make([]byte, size)}
		if _, err := c.Restore(ctx, id, w); err != nil {
			return err
		}
		if !bytes.Equal(w.b, want[id]) {
			return errors.New("snapshot " + id + " restores wrong")
		}
		return nil
	}

	for round := range rounds {
		switch op := r.IntN(10); {
		case op < 5: // snapshots of one to three volumes at once
			type job struct {
				v   *vol
				req CreateRequest
				c   *Catalog
			}
			var jobs []job
			for _, v := range vols {
				if len(jobs) > 0 && r.IntN(2) == 0 {
					continue
				}
				mutate(v, 1+r.IntN(n))
				req := CreateRequest{Volume: v.name, Size: size, BlockSize: MinBlockSize, Codec: Codec(r.IntN(3)), Source: v.img}
				if v.last != "" && r.IntN(4) != 0 {
					req.Parent, req.Changed = v.last, v.changed.Clone()
				}
				jobs = append(jobs, job{v, req, cats[r.IntN(2)]})
			}
			infos := make([]Info, len(jobs))
			errs := make([]error, len(jobs))
			var wg sync.WaitGroup
			for k, j := range jobs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					infos[k], errs[k] = j.c.Create(ctx, j.req)
				}()
			}
			wg.Wait()
			for k, j := range jobs {
				if errs[k] != nil {
					t.Fatalf("round %d: create %s: %v", round, j.v.name, errs[k])
				}
				want[infos[k].ID] = j.v.img.clone()
				order = append(order, infos[k].ID)
				j.v.last, j.v.changed = infos[k].ID, NewBitmap(n)
			}
		case op < 7: // delete a snapshot
			if len(order) == 0 {
				continue
			}
			k := r.IntN(len(order))
			id := order[k]
			if err := cats[r.IntN(2)].Delete(ctx, id); err != nil {
				t.Fatalf("round %d: delete %s: %v", round, id, err)
			}
			delete(want, id)
			order = append(order[:k], order[k+1:]...)
			for _, v := range vols {
				if v.last == id {
					// Its changes since the parent are unknown to a
					// full snapshot; the next one of v is full.
					v.last = ""
				}
			}
		case op < 9: // collect while the other catalogue restores
			advance(clock, 2*time.Minute)
			gc, reader := r.IntN(2), -1
			var rerr error
			var wg sync.WaitGroup
			if len(order) > 0 {
				reader = 1 - gc
				id := order[r.IntN(len(order))]
				wg.Add(1)
				go func() {
					defer wg.Done()
					rerr = restoreCheck(cats[reader], id)
				}()
			}
			res, err := cats[gc].GC(ctx, GCOptions{})
			wg.Wait()
			if err != nil || res.Deferred {
				t.Fatalf("round %d: gc: %+v %v", round, res, err)
			}
			if rerr != nil {
				t.Fatalf("round %d: restore during gc: %v", round, rerr)
			}
			gcs.PacksRewritten += res.PacksRewritten
			gcs.PacksDeleted += res.PacksDeleted
			gcs.IndexesWritten += res.IndexesWritten
			checkLiveChunks(t, a.Catalog)
		default: // restore from either catalogue
			if len(order) == 0 {
				continue
			}
			id := order[r.IntN(len(order))]
			if err := restoreCheck(cats[r.IntN(2)], id); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	advance(clock, 2*time.Minute)
	if _, err := a.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	checkLiveChunks(t, a.Catalog)
	fresh, err := Open(a.store, o)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for _, id := range order {
		if err := restoreCheck(fresh, id); err != nil {
			t.Fatal(err)
		}
		if v, err := fresh.Verify(ctx, id); err != nil || !v.OK {
			t.Fatalf("verify %s: %+v %v", id, v, err)
		}
	}
	if res, err := fresh.Check(ctx); err != nil || !res.OK {
		t.Fatalf("check: %+v %v", res, err)
	}
	_, packs := census(t, a.Catalog)
	t.Logf("%d rounds: %d snapshots kept, %d packs; collections rewrote %d packs, deleted %d, wrote %d merged indexes",
		rounds, len(order), packs, gcs.PacksRewritten, gcs.PacksDeleted, gcs.IndexesWritten)
	if gcs.PacksRewritten == 0 || gcs.IndexesWritten == 0 {
		t.Fatal("the collections never rewrote a pack or merged indexes")
	}
}
