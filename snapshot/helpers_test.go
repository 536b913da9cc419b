package snapshot

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// memImage is an in-memory volume image used as a BlockSource.
type memImage struct {
	mu        sync.Mutex
	data      []byte
	blockSize int
}

func newMemImage(size int64, blockSize int) *memImage {
	return &memImage{data: make([]byte, size), blockSize: blockSize}
}

func (m *memImage) ReadBlock(ctx context.Context, i int64, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(p, m.data[i*int64(m.blockSize):])
	return nil
}

// fill writes block i with a pattern: kind 0 random, 1 text-like, 2 zeros.
func (m *memImage) fill(r *rand.Rand, i int64, kind int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	end := min(int64(len(m.data)), (i+1)*int64(m.blockSize))
	p := m.data[i*int64(m.blockSize) : end]
	switch kind {
	case 0:
		for j := range p {
			p[j] = byte(r.Uint32())
		}
	case 1:
		words := []string{"sluice ", "gateway ", "block ", "chunk ", "snapshot ", "volume ", "\n"}
		var b bytes.Buffer
		for b.Len() < len(p) {
			b.WriteString(words[r.IntN(len(words))])
		}
		copy(p, b.Bytes())
	default:
		clear(p)
	}
}

func (m *memImage) clone() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data)
}

// sliceWriter is an io.WriterAt over a byte slice.
type sliceWriter struct {
	mu sync.Mutex
	b  []byte
}

func (w *sliceWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return copy(w.b[off:], p), nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type testCat struct {
	*Catalog
	base    *objstore.Embedded
	faults  *objstore.FaultStore
	metrics *objstore.Metrics
	store   objstore.Store
}

// newTestCatalog opens a catalogue on an embedded store with faults and
// metrics wrapped in, and fast retries.
func newTestCatalog(t testing.TB, dir string, o Options) *testCat {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	base, err := objstore.OpenEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCat{base: base, metrics: objstore.NewMetrics()}
	tc.store = objstore.Wrap(base, objstore.Options{
		Retry:   objstore.RetryOptions{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		Metrics: tc.metrics,
		Faults: func(s objstore.Store) objstore.Store {
			tc.faults = objstore.NewFaultStore(s)
			return tc.faults
		},
	})
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	cat, err := Open(tc.store, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	tc.Catalog = cat
	return tc
}

// countChunks counts stored chunks: chunk objects and chunks in packs.
func countChunks(t testing.TB, c *Catalog) int {
	t.Helper()
	copies, _ := census(t, c)
	n := 0
	for _, k := range copies {
		n += k
	}
	return n
}

// census reads the store afresh (not through the chunk store's cache): how
// many copies of each chunk it holds, as chunk objects and in packs, and
// how many packs. A stray key, a pack without its index (or the reverse)
// fails the test.
func census(t testing.TB, c *Catalog) (copies map[ChunkID]int, packs int) {
	t.Helper()
	ctx := context.Background()
	copies = map[ChunkID]int{}
	err := objstore.ListAll(ctx, c.store, c.chunks.Prefix(), func(o objstore.ObjectInfo) error {
		id, ok := c.chunks.IDFromKey(o.Key)
		if !ok {
			t.Errorf("stray key %s", o.Key)
		}
		copies[id]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]bool{}
	err = objstore.ListAll(ctx, c.store, c.chunks.root+"packs/", func(o objstore.ObjectInfo) error {
		objs[strings.TrimPrefix(o.Key, c.chunks.root+"packs/")] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	prefix := c.chunks.root + "packidx/"
	described := map[string]bool{}
	err = objstore.ListAll(ctx, c.store, prefix, func(o objstore.ObjectInfo) error {
		name := strings.TrimPrefix(o.Key, prefix)
		ps, err := c.chunks.readIndex(ctx, name)
		if err != nil {
			t.Errorf("index %s: %v", name, err)
		}
		for _, p := range ps {
			if described[p.id] {
				t.Errorf("pack %s described by two indexes", p.id)
				continue
			}
			described[p.id] = true
			if !objs[p.id] {
				t.Errorf("index %s describes pack %s, which is missing", name, p.id)
			}
			packs++
			for _, e := range p.entries {
				copies[e.ID]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range described {
		delete(objs, id)
	}
	for id := range objs {
		t.Errorf("pack %s without an index", id)
	}
	return copies, packs
}

func restoreBytes(t testing.TB, c *Catalog, id string, size int64) []byte {
	t.Helper()
	w := &sliceWriter{b: make([]byte, size)}
	if _, err := c.Restore(ctxT(t), id, w); err != nil {
		t.Fatalf("restore %s: %v", id, err)
	}
	return w.b
}
