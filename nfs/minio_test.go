package nfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// s3Store returns an S3 store (with the production wrappers) for m.
func s3Store(t testing.TB, m *testenv.MinIO) objstore.Store {
	t.Helper()
	s, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket,
		Credentials: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return objstore.Wrap(s, objstore.Options{})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func minioObject(t testing.TB, mc *minio.Client, bucket, key string) ([]byte, minio.ObjectInfo) {
	t.Helper()
	o, err := mc.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	st, err := o.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return b, st
}

func userMeta(oi minio.ObjectInfo, name string) string {
	for k, v := range oi.UserMetadata {
		if strings.EqualFold(k, name) || strings.EqualFold(k, "X-Amz-Meta-"+name) {
			return v
		}
	}
	return ""
}

func TestMinIOFileGateway(t *testing.T) {
	m := testenv.StartMinIO(t)
	mc := m.Client(t)
	ts := startServer(t, s3Store(t, m), func(c *Config, _ *Share) { c.MetadataTTL = time.Second })

	// nfs-cp in: same key, same bytes, POSIX metadata.
	data := randomBytes(3<<20 + 17)
	mustRun(t, "nfs-cp", writeTemp(t, data), ts.url("in.bin"))
	ev := ts.waitUpload(t, "in.bin")
	got, oi := minioObject(t, mc, m.Bucket, "in.bin")
	if !bytes.Equal(got, data) || ev.Key != "in.bin" {
		t.Fatalf("object in.bin: %d bytes, event %+v", len(got), ev)
	}
	if userMeta(oi, MetaMode) == "" || userMeta(oi, MetaUID) == "" || userMeta(oi, MetaMtime) == "" {
		t.Fatalf("object metadata %v", oi.UserMetadata)
	}
	// nfs-cp out and nfs-cat.
	dst := t.TempDir() + "/out"
	mustRun(t, "nfs-cp", ts.url("in.bin"), dst)
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Fatalf("nfs-cp out: %d bytes", len(b))
	}
	mustRun(t, "nfs-cp", writeTemp(t, []byte("small file\n")), ts.url("small.txt"))
	if out := mustRun(t, "nfs-cat", ts.url("small.txt")); out != "small file\n" {
		t.Fatalf("nfs-cat = %q", out)
	}
	if out := mustRun(t, "nfs-ls", ts.url("")); !strings.Contains(out, "in.bin") || !strings.Contains(out, "small.txt") {
		t.Fatalf("nfs-ls = %q", out)
	}

	// A large file: parallel multipart, then a small change uploaded with
	// server-side part copies.
	cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, cl)
	big := randomBytes(40 << 20)
	mustRun(t, "nfs-cp", writeTemp(t, big), ts.url("big.bin"))
	if ev := ts.waitUpload(t, "big.bin"); !ev.Multipart {
		t.Fatalf("40 MiB upload was not multipart: %+v", ev)
	}
	fh, _, err := cl.Lookup(root, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	copy(big[33<<20:], "changed in the middle of part three")
	if err := cl.Write(fh, 33<<20, big[33<<20:33<<20+35], 0); err != nil {
		t.Fatal(err)
	}
	cl.Commit(fh)
	if ev := ts.waitUpload(t, "big.bin"); ev.CopiedBytes < 24<<20 {
		t.Fatalf("small change re-sent the whole object: %+v", ev)
	}
	if got, _ := minioObject(t, mc, m.Bucket, "big.bin"); !bytes.Equal(got, big) {
		t.Fatal("big.bin differs in MinIO after the part-copy upload")
	}

	// Objects written by other S3 clients appear, change and vanish.
	ctx := context.Background()
	testOutsideChanges(t, ts, func(key string, body []byte) {
		if _, err := mc.PutObject(ctx, m.Bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}, func(key string) {
		if err := mc.RemoveObject(ctx, m.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}, time.Second)
}

func TestKill9AfterCommit(t *testing.T) {
	m := testenv.StartMinIO(t)
	mc := m.Client(t)
	dir := t.TempDir()
	// First run: the store refuses uploads, so committed data can only
	// survive in the cache.
	c := startChild(t, m, dir, true)
	data := randomBytes(5<<20 + 3)
	small := []byte("committed but never uploaded\n")
	mustRun(t, "nfs-cp", writeTemp(t, data), c.url("sub-not-needed.bin"))
	mustRun(t, "nfs-cp", writeTemp(t, small), c.url("small.txt"))
	c.kill9(t)
	if _, err := mc.StatObject(context.Background(), m.Bucket, "small.txt", minio.StatObjectOptions{}); err == nil {
		t.Fatal("small.txt uploaded although uploads were failing")
	}
	// Second run, healthy: the dirty files are re-uploaded at start.
	c = startChild(t, m, dir, false)
	for _, f := range []struct {
		key  string
		data []byte
	}{{"sub-not-needed.bin", data}, {"small.txt", small}} {
		end := deadline(30 * time.Second)
		for {
			if _, err := mc.StatObject(context.Background(), m.Bucket, f.key, minio.StatObjectOptions{}); err == nil {
				break
			}
			select {
			case <-end:
				t.Fatalf("%s never reached MinIO after restart", f.key)
			case <-time.After(100 * time.Millisecond):
			}
		}
		if got, _ := minioObject(t, mc, m.Bucket, f.key); !bytes.Equal(got, f.data) {
			t.Fatalf("%s in MinIO: %d bytes, want %d", f.key, len(got), len(f.data))
		}
	}
	dst := t.TempDir() + "/back"
	mustRun(t, "nfs-cp", c.url("sub-not-needed.bin"), dst)
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Fatal("file read back after restart differs")
	}
}
