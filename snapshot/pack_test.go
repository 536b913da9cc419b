package snapshot

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

func samplePackEntries(r *rand.Rand, n int) []packEntry {
	entries := make([]packEntry, n)
	var off uint32
	for i := range entries {
		for j := range entries[i].ID {
			entries[i].ID[j] = byte(r.Uint32())
		}
		entries[i].Off = off
		entries[i].Len = uint32(chunkHeaderLen + 1 + r.IntN(MaxBlockSize))
		off += entries[i].Len
	}
	return entries
}

func TestPackIndexRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	entries := samplePackEntries(r, 40)
	b := encodePackIndex(entries)
	got, err := decodePackIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("%d entries, want %d", len(got), len(entries))
	}
	for i := range got {
		if got[i] != entries[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[i], entries[i])
		}
	}
	bad := map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-1],
		"flipped":   append(bytes.Clone(b[:20]), append([]byte{b[20] ^ 1}, b[21:]...)...),
		"no chunks": encodePackIndex(nil),
		"version":   append(append([]byte("SPIX"), 2), b[5:]...),
	}
	for name, b := range bad {
		if _, err := decodePackIndex(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func sampleMergedPacks(r *rand.Rand, m int) []*packInfo {
	packs := make([]*packInfo, m)
	for i := range packs {
		packs[i] = &packInfo{id: newPackID(), entries: samplePackEntries(r, 1+r.IntN(5))}
	}
	slices.SortFunc(packs, func(a, b *packInfo) int { return strings.Compare(a.id, b.id) })
	return packs
}

func TestMergedIndexRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	packs := sampleMergedPacks(r, 7)
	b := encodeMergedIndex(packs)
	if len(b) != mergedIndexSize(packs) {
		t.Fatalf("%d bytes, mergedIndexSize says %d", len(b), mergedIndexSize(packs))
	}
	got, err := decodeMergedIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range packs {
		if got[i].id != packs[i].id || !slices.Equal(got[i].entries, packs[i].entries) {
			t.Fatalf("pack %d: %+v, want %+v", i, got[i], packs[i])
		}
	}
	swapped := []*packInfo{packs[1], packs[0]}
	bad := map[string][]byte{
		"empty":        nil,
		"truncated":    b[:len(b)-1],
		"single index": encodePackIndex(packs[0].entries),
		"out of order": encodeMergedIndex(swapped),
		"duplicate":    encodeMergedIndex([]*packInfo{packs[0], packs[0]}),
		"no packs":     encodeMergedIndex(nil),
	}
	for name, b := range bad {
		if _, err := decodeMergedIndex(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzMergedIndexDecode: the merged index decoder must not panic, and what
// it accepts re-encodes to the same bytes.
func FuzzMergedIndexDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(15, 16))
	f.Add(encodeMergedIndex(sampleMergedPacks(r, 3)))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := decodeMergedIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeMergedIndex(packs), b) {
			t.Fatal("accepted merged index does not re-encode to the same bytes")
		}
	})
}

// FuzzPackIndexDecode feeds arbitrary bytes to the pack index decoder: it
// must not panic, and what it accepts re-encodes to the same bytes.
func FuzzPackIndexDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	f.Add(encodePackIndex(samplePackEntries(r, 3)))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodePackIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodePackIndex(entries), b) {
			t.Fatal("accepted index does not re-encode to the same bytes")
		}
	})
}

// packTestOptions make every run of 16 blocks or more pack its chunks into
// packs of about four blocks.
func packTestOptions(now *atomic.Pointer[time.Time]) Options {
	return Options{
		PackSize: 4 * MinBlockSize, PackMinBytes: 16 * MinBlockSize, IndexMergeMin: 2,
		GCGrace: time.Minute, StaleAfter: 10 * time.Minute,
		Now: func() time.Time { return *now.Load() },
	}
}

func newClock() *atomic.Pointer[time.Time] {
	var p atomic.Pointer[time.Time]
	now := time.Now()
	p.Store(&now)
	return &p
}

func advance(p *atomic.Pointer[time.Time], d time.Duration) {
	now := p.Load().Add(d)
	p.Store(&now)
}

// packImage fills an image of n blocks with random, text-like and zero
// blocks.
func packImage(r *rand.Rand, n int) *memImage {
	img := newMemImage(int64(n)*MinBlockSize, MinBlockSize)
	for i := range int64(n) {
		img.fill(r, i, []int{0, 1, 1, 2}[i%4])
	}
	return img
}

func countKeys(t testing.TB, c *Catalog, prefix string) int {
	t.Helper()
	n := 0
	if err := objstore.ListAll(ctxT(t), c.store, c.o.Prefix+prefix, func(objstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPackedSnapshots: a large run packs its chunks, a small one stores
// chunk objects; packed chunks restore, verify, are shared by other volumes
// and other processes, and a chunk stored both ways is kept once by GC.
func TestPackedSnapshots(t *testing.T) {
	ctx := ctxT(t)
	clock := newClock()
	dir := t.TempDir()
	c := newTestCatalog(t, dir, packTestOptions(clock))
	r := rand.New(rand.NewPCG(7, 8))
	const n = 48
	size := int64(n) * MinBlockSize
	img := packImage(r, n)
	s1, err := c.Create(ctx, CreateRequest{Volume: "v", Size: size, BlockSize: MinBlockSize, Codec: CodecZstd, Source: img})
	if err != nil {
		t.Fatal(err)
	}
	copies, packs := census(t, c.Catalog)
	if objs := countKeys(t, c.Catalog, "chunks/"); objs != 0 || packs < 2 || int64(len(copies)) != s1.ChunksUploaded || s1.ChunksUploaded != 36 {
		t.Fatalf("full snapshot: %d chunk objects, %d packs, %d chunks stored; %+v", objs, packs, len(copies), s1)
	}
	if got := restoreBytes(t, c.Catalog, s1.ID, size); !bytes.Equal(got, img.clone()) {
		t.Fatal("packed snapshot restores wrong")
	}
	if v, err := c.Verify(ctx, s1.ID); err != nil || !v.OK {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if res, err := c.Check(ctx); err != nil || !res.OK || res.Packs != packs || res.Chunks != 36 {
		t.Fatalf("check: %+v %v", res, err)
	}

	// Another process (a second catalogue on the same store) reads the
	// packs through their indexes.
	other, err := Open(c.store, packTestOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := restoreBytes(t, other, s1.ID, size); !bytes.Equal(got, img.clone()) {
		t.Fatal("second catalogue restores wrong")
	}

	// Another volume with the same content shares every packed chunk.
	w, err := other.Create(ctx, CreateRequest{Volume: "w", Size: size, BlockSize: MinBlockSize, Source: img})
	if err != nil || w.ChunksUploaded != 0 || w.StoredBytes != 0 {
		t.Fatalf("same content, other volume: %+v %v", w, err)
	}
	if _, p := census(t, c.Catalog); p != packs {
		t.Fatalf("%d packs after a run that stored nothing, want %d", p, packs)
	}

	// A small incremental stores chunk objects.
	changed := NewBitmap(n)
	for _, i := range []int64{1, 5} {
		img.fill(r, i, 0)
		changed.Set(i)
	}
	s2, err := c.Create(ctx, CreateRequest{Volume: "v", Size: size, BlockSize: MinBlockSize, Source: img, Parent: s1.ID, Changed: changed})
	if err != nil || s2.ChunksUploaded != 2 {
		t.Fatalf("incremental: %+v %v", s2, err)
	}
	if objs := countKeys(t, c.Catalog, "chunks/"); objs != 2 {
		t.Fatalf("incremental stored %d chunk objects, want 2", objs)
	}
	if got := restoreBytes(t, c.Catalog, s2.ID, size); !bytes.Equal(got, img.clone()) {
		t.Fatal("incremental over packs restores wrong")
	}
	// A packing run shares chunk objects too (found by its listing).
	x, err := other.Create(ctx, CreateRequest{Volume: "x", Size: size, BlockSize: MinBlockSize, Source: img})
	if err != nil || x.ChunksUploaded != 0 {
		t.Fatalf("packing run over chunk objects: %+v %v", x, err)
	}

	// A chunk also stored as an object (as a cached volume would) is
	// redundant: GC keeps the packed copy.
	m, err := c.Manifest(ctx, s1.ID)
	if err != nil {
		t.Fatal(err)
	}
	dup := m.Map.Blocks[0].ID
	raw := img.clone()[:MinBlockSize]
	if _, err := c.Chunks().PutIfAbsent(ctx, dup, c.Coder().Encode(nil, raw, CodecZstd)); err != nil {
		t.Fatal(err)
	}
	advance(clock, time.Hour)
	res, err := c.GC(ctx, GCOptions{})
	if err != nil || res.Deleted != 1 || res.PacksRewritten != 0 {
		t.Fatalf("gc of a duplicate chunk object: %+v %v", res, err)
	}
	checkLiveChunks(t, c.Catalog)
}

// TestPackCrashes: a crash between a pack and its index leaves an orphan
// pack that the resumed run does without and GC removes; a crash of GC
// after it rewrote packs but before it deleted the old ones is finished by
// the next collection. A reader that loaded the pack indexes before GC
// rewrote the packs finds the chunks at their new place.
func TestPackCrashes(t *testing.T) {
	ctx := ctxT(t)
	clock := newClock()
	var fire atomic.Value // string: the failpoint to fire, once
	o := packTestOptions(clock)
	o.Failpoint = func(name string) error {
		if f, _ := fire.Load().(string); f == name {
			fire.Store("")
			return ErrFailpoint
		}
		return nil
	}
	c := newTestCatalog(t, filepath.Join(t.TempDir(), "store"), o)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 48
	size := int64(n) * MinBlockSize
	img := packImage(r, n)
	req := CreateRequest{ID: "snap-a", Volume: "v", Size: size, BlockSize: MinBlockSize, Source: img}
	fire.Store("pack.stored")
	if _, err := c.Create(ctx, req); !errors.Is(err, ErrFailpoint) {
		t.Fatalf("create through the failpoint: %v", err)
	}
	// Other packs in flight may have lost their index to the crash too.
	orphans := countKeys(t, c.Catalog, "packs/") - countKeys(t, c.Catalog, "packidx/")
	if orphans < 1 {
		t.Fatalf("%d packs without an index after the crash", orphans)
	}
	s1, err := c.Create(ctx, req)
	if err != nil || s1.Status != StatusCompleted {
		t.Fatalf("resume: %+v %v", s1, err)
	}
	want1 := img.clone()

	// A second full snapshot after half the blocks changed: the first
	// snapshot's packs hold chunks of both.
	for i := int64(0); i < n; i += 2 {
		img.fill(r, i, 1)
	}
	s2, err := c.Create(ctx, CreateRequest{ID: "snap-b", Volume: "v", Size: size, BlockSize: MinBlockSize, Source: img})
	if err != nil {
		t.Fatal(err)
	}
	want2 := img.clone()

	// A reader in another process loads the indexes now.
	reader, err := Open(c.store, packTestOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if got := restoreBytes(t, reader, s2.ID, size); !bytes.Equal(got, want2) {
		t.Fatal("restore before gc")
	}
	if got := restoreBytes(t, c.Catalog, s1.ID, size); !bytes.Equal(got, want1) {
		t.Fatal("resumed snapshot restores wrong")
	}

	if err := c.Delete(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	advance(clock, time.Hour)
	fire.Store("gc.repacked")
	if _, err := c.GC(ctx, GCOptions{}); !errors.Is(err, ErrFailpoint) {
		t.Fatalf("gc through the failpoint: %v", err)
	}
	res, err := c.GC(ctx, GCOptions{})
	if err != nil || res.OrphanPacks != orphans || res.PacksRewritten+res.PacksDeleted == 0 {
		t.Fatalf("gc after a crashed gc: %+v %v", res, err)
	}
	t.Logf("gc: %+v", res)
	checkLiveChunks(t, c.Catalog)
	if res, err := c.Check(ctx); err != nil || !res.OK {
		t.Fatalf("check: %+v %v", res, err)
	}
	// The reader's indexes name packs that are gone now.
	if got := restoreBytes(t, reader, s2.ID, size); !bytes.Equal(got, want2) {
		t.Fatal("restore with indexes from before gc")
	}
	if v, err := reader.Verify(ctx, s2.ID); err != nil || !v.OK {
		t.Fatalf("verify after gc: %+v %v", v, err)
	}

	// A crash after GC stored merged indexes but before it deleted the
	// ones they replace: packs described twice, which the next collection
	// puts right.
	for i := int64(1); i < n; i += 2 {
		img.fill(r, i, 0)
	}
	s3, err := c.Create(ctx, CreateRequest{ID: "snap-c", Volume: "v", Size: size, BlockSize: MinBlockSize, Source: img})
	if err != nil {
		t.Fatal(err)
	}
	want3 := img.clone()
	if err := c.Delete(ctx, s2.ID); err != nil {
		t.Fatal(err)
	}
	advance(clock, time.Hour)
	fire.Store("gc.reindexed")
	if _, err := c.GC(ctx, GCOptions{}); !errors.Is(err, ErrFailpoint) {
		t.Fatalf("gc through gc.reindexed: %v", err)
	}
	if got := restoreBytes(t, reader, s3.ID, size); !bytes.Equal(got, want3) {
		t.Fatal("restore between a crashed gc and the next")
	}
	res, err = c.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatalf("gc after a crash in reindexing: %+v %v", res, err)
	}
	checkLiveChunks(t, c.Catalog)
	if got := restoreBytes(t, reader, s3.ID, size); !bytes.Equal(got, want3) {
		t.Fatal("restore after gc")
	}
	if n := countKeys(t, c.Catalog, "packidx/"+mergedPrefix); n == 0 || countKeys(t, c.Catalog, "packidx/") != n {
		t.Fatalf("%d merged indexes among %d", n, countKeys(t, c.Catalog, "packidx/"))
	}
}

// TestPackedDamage: a flipped byte in a pack and a lost pack are found by
// Verify (chunk by chunk), Restore and Check.
func TestPackedDamage(t *testing.T) {
	ctx := ctxT(t)
	c := newTestCatalog(t, "", packTestOptions(newClock()))
	const n = 32
	size := int64(n) * MinBlockSize
	img := packImage(rand.New(rand.NewPCG(11, 12)), n)
	s, err := c.Create(ctx, CreateRequest{Volume: "v", Size: size, BlockSize: MinBlockSize, Source: img})
	if err != nil {
		t.Fatal(err)
	}
	packs := c.Chunks().loadedPacks()
	if len(packs) < 2 {
		t.Fatalf("%d packs", len(packs))
	}
	// Flip a byte inside the first chunk of the first pack.
	key := c.Chunks().packKey(packs[0].id)
	rc, _, err := c.store.Get(ctx, key, objstore.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	body[packs[0].entries[0].Off+chunkHeaderLen+3] ^= 0x40
	if _, err := c.store.Put(ctx, key, bytes.NewReader(body), int64(len(body)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// Lose the second pack (its index stays).
	if err := c.store.Delete(ctx, c.Chunks().packKey(packs[1].id)); err != nil {
		t.Fatal(err)
	}
	v, err := c.Verify(ctx, s.ID)
	if err != nil || v.OK || len(v.Corrupt) != 1 || v.Corrupt[0] != packs[0].entries[0].ID.String() || len(v.Missing) != len(packs[1].entries) {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if _, err := c.Restore(ctx, s.ID, &sliceWriter{b: make([]byte, size)}); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrChunkMissing) {
		t.Fatalf("restore of a damaged snapshot: %v", err)
	}
	if res, err := c.Check(ctx); err != nil || res.OK || !strings.Contains(strings.Join(res.Problems, "\n"), packs[1].id) {
		t.Fatalf("check: %+v %v", res, err)
	}
	// A damaged index: Check names it, and GC refuses to run rather than
	// take its pack for an orphan.
	garbage := []byte("SPIX not an index")
	if _, err := c.store.Put(ctx, c.Chunks().indexKey(packs[2].id), bytes.NewReader(garbage), int64(len(garbage)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh, err := Open(c.store, packTestOptions(newClock())) // another process reads it
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if res, err := fresh.Check(ctx); err != nil || !strings.Contains(strings.Join(res.Problems, "\n"), "pack "+packs[2].id+": pack index") {
		t.Fatalf("check with a damaged index: %+v %v", res, err)
	}
	if res, err := fresh.GC(ctx, GCOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("gc with a damaged index: %+v %v", res, err)
	}
}
