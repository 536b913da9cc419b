package blockcache

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/snapshot"
)

// env is an object store with metrics and faults wrapped in, and a
// snapshot catalogue on it.
type env struct {
	base    objstore.Store
	store   objstore.Store
	metrics *objstore.Metrics
	faults  *objstore.FaultStore
	cat     *snapshot.Catalog
}

func wrapEnv(t testing.TB, base objstore.Store, o snapshot.Options) *env {
	t.Helper()
	e := &env{base: base, metrics: objstore.NewMetrics()}
	e.store = objstore.Wrap(base, objstore.Options{
		Retry:   objstore.RetryOptions{MaxAttempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
		Metrics: e.metrics,
		Faults: func(s objstore.Store) objstore.Store {
			e.faults = objstore.NewFaultStore(s)
			return e.faults
		},
	})
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	cat, err := snapshot.Open(e.store, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	e.cat = cat
	return e
}

func embeddedEnv(t testing.TB, dir string) *env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := objstore.OpenEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	return wrapEnv(t, s, snapshot.Options{})
}

func minioEnv(t testing.TB) (*env, *testenv.MinIO) {
	t.Helper()
	m := testenv.StartMinIO(t)
	s, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket, Credentials: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return wrapEnv(t, s, snapshot.Options{Concurrency: 8}), m
}

// countObjects counts the objects under prefix in the base store.
func (e *env) countObjects(t testing.TB, prefix string) int {
	t.Helper()
	n := 0
	if err := objstore.ListAll(context.Background(), e.base, prefix, func(objstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// model is a volume with an in-memory copy of what it should hold.
type model struct {
	v    *StoredVolume
	mu   sync.Mutex
	want []byte
}

func newModel(t testing.TB, dir string, size int64, bs int, codec snapshot.Codec) *model {
	t.Helper()
	v, err := CreateStored(dir, StoredConfig{Name: filepath.Base(dir), Size: size, BlockSize: bs, Codec: codec}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &model{v: v, want: make([]byte, size)}
}

// write writes a pattern at off through WriteAt and into the model.
func (m *model) write(t testing.TB, r *rand.Rand, off int64, n int, kind int) {
	t.Helper()
	p := make([]byte, n)
	blockcachetest.Fill(r, p, kind)
	if err := m.v.WriteAt(context.Background(), p, off, false); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	copy(m.want[off:], p)
	m.mu.Unlock()
}

func (m *model) image() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.want)
}

// volumeBytes reads a whole volume.
func volumeBytes(t testing.TB, v *StoredVolume) []byte {
	t.Helper()
	b := make([]byte, v.Size())
	if err := v.ReadAt(context.Background(), b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// restoreVolume creates a new stored volume from a snapshot and returns
// its bytes.
func restoreVolume(t testing.TB, e *env, id string) (*StoredVolume, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	v, err := CreateStoredFromSnapshot(ctxT(t), dir, e.cat, id, StoredConfig{Name: "restored-" + id}, Options{})
	if err != nil {
		t.Fatalf("volume from %s: %v", id, err)
	}
	t.Cleanup(func() { v.Close() })
	return v, volumeBytes(t, v)
}

// firstDiff describes where two images differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// checkCatalog runs the catalogue's consistency checker; tests call it
// after every scenario.
func checkCatalog(t testing.TB, e *env) snapshot.CheckResult {
	t.Helper()
	res, err := e.cat.Check(context.Background())
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !res.OK {
		t.Fatalf("catalogue inconsistent: %v", res.Problems)
	}
	return res
}
