// Package objstoretest is the conformance suite every objstore.Store
// implementation must pass. The same tests run against the embedded store
// and a real MinIO server, so both keep S3's semantics.
package objstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
)

// NewStore returns an empty store for one test.
type NewStore func(t *testing.T) objstore.Store

// Run runs every conformance test against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store)
	}{
		{"PutGetMetadata", testPutGetMetadata},
		{"EmptyAndUnknownSize", testEmptyAndUnknownSize},
		{"NotFound", testNotFound},
		{"RangedGet", testRangedGet},
		{"Overwrite", testOverwrite},
		{"ConditionalWrites", testConditional},
		{"Keys", testKeys},
		{"ListPaging", testListPaging},
		{"ListDelimiter", testListDelimiter},
		{"DeleteMany", testDeleteMany},
		{"Copy", testCopy},
		{"Multipart", testMultipart},
		{"MultipartErrors", testMultipartErrors},
		{"Concurrent", testConcurrent},
		{"RetryThroughFaults", testRetryThroughFaults},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s objstore.Store, key string, data []byte, opts objstore.PutOptions) objstore.ObjectInfo {
	t.Helper()
	oi, err := s.Put(ctxT(t), key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return oi
}

func get(t *testing.T, s objstore.Store, key string, opts objstore.GetOptions) ([]byte, objstore.ObjectInfo) {
	t.Helper()
	rc, oi, err := s.Get(ctxT(t), key, opts)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b, oi
}

func testPutGetMetadata(t *testing.T, s objstore.Store) {
	data := randBytes(1, 100_000)
	opts := objstore.PutOptions{
		ContentType: "application/x-sluice-test",
		Metadata:    map[string]string{"Mode": "0644", "uid": "1000", "x-multi-word": "a b c"},
	}
	oi := put(t, s, "dir/file.bin", data, opts)
	if oi.ETag == "" || oi.Size != int64(len(data)) {
		t.Fatalf("put info = %+v", oi)
	}
	got, gi := get(t, s, "dir/file.bin", objstore.GetOptions{})
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	hi, err := s.Head(ctxT(t), "dir/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []objstore.ObjectInfo{gi, hi} {
		if i.Size != int64(len(data)) || i.ETag != oi.ETag || i.ContentType != opts.ContentType {
			t.Errorf("info = %+v, want size %d etag %s", i, len(data), oi.ETag)
		}
		want := map[string]string{"mode": "0644", "uid": "1000", "x-multi-word": "a b c"}
		for k, v := range want {
			if i.Metadata[k] != v {
				t.Errorf("metadata[%q] = %q, want %q (all: %v)", k, i.Metadata[k], v, i.Metadata)
			}
		}
		if i.StorageClass != "STANDARD" {
			t.Errorf("storage class = %q", i.StorageClass)
		}
		if time.Since(i.LastModified) > time.Hour {
			t.Errorf("last modified = %v", i.LastModified)
		}
	}
}

func testEmptyAndUnknownSize(t *testing.T, s objstore.Store) {
	put(t, s, "empty", nil, objstore.PutOptions{})
	got, oi := get(t, s, "empty", objstore.GetOptions{})
	if len(got) != 0 || oi.Size != 0 {
		t.Fatalf("empty object: %d bytes, info %+v", len(got), oi)
	}
	data := randBytes(2, 300_000)
	if _, err := s.Put(ctxT(t), "unknown", io.MultiReader(bytes.NewReader(data)), -1, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = get(t, s, "unknown", objstore.GetOptions{})
	if !bytes.Equal(got, data) {
		t.Fatal("unknown-size put differs")
	}
	// A body shorter than the declared size must fail and leave nothing.
	_, err := s.Put(ctxT(t), "short", bytes.NewReader(data[:10]), 20, objstore.PutOptions{})
	if err == nil {
		t.Fatal("short body accepted")
	}
	if _, err := s.Head(ctxT(t), "short"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("after a failed put, head = %v", err)
	}
}

func testNotFound(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	if _, err := s.Head(ctx, "nope"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("head: %v", err)
	}
	if _, _, err := s.Get(ctx, "nope", objstore.GetOptions{}); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if err := s.Delete(ctx, "nope"); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
	if _, err := s.Copy(ctx, "dst", "nope", objstore.CopyOptions{}); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("copy: %v", err)
	}
	if objstore.IsRetryable(fmt.Errorf("x: %w", objstore.ErrNotFound)) {
		t.Error("not found is retryable")
	}
}

func testRangedGet(t *testing.T, s objstore.Store) {
	data := randBytes(3, 10_000)
	put(t, s, "r", data, objstore.PutOptions{})
	cases := []struct {
		off, n int64
		want   []byte
	}{
		{0, 1, data[:1]},
		{0, -1, data},
		{100, 200, data[100:300]},
		{9_999, 1, data[9_999:]},
		{5_000, -1, data[5_000:]},
		{9_000, 5_000, data[9_000:]}, // length past the end is cut
	}
	for _, c := range cases {
		got, oi := get(t, s, "r", objstore.GetOptions{Range: &objstore.Range{Offset: c.off, Length: c.n}})
		if !bytes.Equal(got, c.want) {
			t.Errorf("range %d+%d: got %d bytes, want %d", c.off, c.n, len(got), len(c.want))
		}
		if oi.Size != int64(len(data)) {
			t.Errorf("range %d+%d: size %d, want the object's %d", c.off, c.n, oi.Size, len(data))
		}
	}
	if _, _, err := s.Get(ctxT(t), "r", objstore.GetOptions{Range: &objstore.Range{Offset: 10_000, Length: 1}}); !errors.Is(err, objstore.ErrInvalidArgument) {
		t.Errorf("range past the end: %v, want invalid argument", err)
	}
}

func testOverwrite(t *testing.T, s objstore.Store) {
	put(t, s, "o", []byte("first"), objstore.PutOptions{Metadata: map[string]string{"a": "1"}})
	put(t, s, "o", []byte("second!"), objstore.PutOptions{})
	got, oi := get(t, s, "o", objstore.GetOptions{})
	if string(got) != "second!" || oi.Metadata["a"] != "" {
		t.Fatalf("after overwrite: %q %v", got, oi.Metadata)
	}
}

func testConditional(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	oi := put(t, s, "c", []byte("v1"), objstore.PutOptions{IfNoneMatch: true})
	_, err := s.Put(ctx, "c", strings.NewReader("v2"), 2, objstore.PutOptions{IfNoneMatch: true})
	if !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("create-only put over an existing object: %v", err)
	}
	_, err = s.Put(ctx, "c", strings.NewReader("v2"), 2, objstore.PutOptions{IfMatch: "0123456789abcdef0123456789abcdef"})
	if !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("put with a stale etag: %v", err)
	}
	oi2 := put(t, s, "c", []byte("v3"), objstore.PutOptions{IfMatch: oi.ETag})
	if _, _, err := s.Get(ctx, "c", objstore.GetOptions{IfMatch: oi.ETag}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("get with a stale etag: %v", err)
	}
	got, _ := get(t, s, "c", objstore.GetOptions{IfMatch: oi2.ETag})
	if string(got) != "v3" {
		t.Fatalf("got %q", got)
	}
	// Only one of many racing create-only writers may win.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Put(ctx, "race", strings.NewReader(fmt.Sprint(i)), int64(len(fmt.Sprint(i))), objstore.PutOptions{IfNoneMatch: true})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, objstore.ErrPreconditionFailed) {
				t.Errorf("racing put: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d create-only writers won, want 1", wins)
	}
}

func testKeys(t *testing.T, s objstore.Store) {
	// Keys every S3-compatible store accepts (MinIO refuses empty and
	// ".." segments, and an object "a" beside objects under "a/", so the
	// suite does not use them; the embedded store's own tests do).
	keys := []string{"dir/", "a b/c d.txt", "ünï/cödé", "deep/a/b/c/d/e/f/g", "a", "a-b", "a.b", "%41", "x+y=z,@", strings.Repeat("k", 200)}
	for i, k := range keys {
		put(t, s, k, []byte(fmt.Sprint(i)), objstore.PutOptions{})
	}
	for i, k := range keys {
		got, _ := get(t, s, k, objstore.GetOptions{})
		if string(got) != fmt.Sprint(i) {
			t.Errorf("key %q: got %q", k, got)
		}
	}
	var listed []string
	if err := objstore.ListAll(ctxT(t), s, "", func(o objstore.ObjectInfo) error {
		listed = append(listed, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(keys)
	sort.Strings(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("listed %q\nwant   %q", listed, want)
	}
}

func testListPaging(t *testing.T, s objstore.Store) {
	const n = 1_100
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("page/%05d", i)
	}
	parallel(t, keys, func(k string) error {
		_, err := s.Put(ctxT(t), k, strings.NewReader(k), int64(len(k)), objstore.PutOptions{})
		return err
	})
	put(t, s, "pagf", []byte("outside"), objstore.PutOptions{})
	ctx := ctxT(t)
	p1, err := s.List(ctx, objstore.ListOptions{Prefix: "page/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.Objects) != 1000 || p1.NextToken == "" {
		t.Fatalf("first page: %d objects, token %q", len(p1.Objects), p1.NextToken)
	}
	p2, err := s.List(ctx, objstore.ListOptions{Prefix: "page/", Token: p1.NextToken})
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Objects) != 100 || p2.NextToken != "" {
		t.Fatalf("second page: %d objects, token %q", len(p2.Objects), p2.NextToken)
	}
	var got []string
	for _, o := range append(p1.Objects, p2.Objects...) {
		got = append(got, o.Key)
		if o.Size != int64(len(o.Key)) || o.ETag == "" {
			t.Fatalf("listed %+v", o)
		}
	}
	if !slices.Equal(got, keys) {
		t.Fatal("paged listing differs from the keys written")
	}
	// Small pages and StartAfter.
	var small []string
	opts := objstore.ListOptions{Prefix: "page/", MaxKeys: 333, StartAfter: "page/00099"}
	for {
		p, err := s.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Objects) > 333 {
			t.Fatalf("page of %d with MaxKeys 333", len(p.Objects))
		}
		for _, o := range p.Objects {
			small = append(small, o.Key)
		}
		if p.NextToken == "" {
			break
		}
		opts.Token = p.NextToken
	}
	if !slices.Equal(small, keys[100:]) {
		t.Fatalf("start-after listing: %d keys, want %d", len(small), n-100)
	}
}

func parallel(t *testing.T, keys []string, fn func(string) error) {
	t.Helper()
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ch {
				if err := fn(k); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func testListDelimiter(t *testing.T, s objstore.Store) {
	for _, k := range []string{"t/a", "t/b/1", "t/b/2", "t/b-c", "t/c/", "t/d/e/f", "t/z", "u/1"} {
		put(t, s, k, []byte("x"), objstore.PutOptions{})
	}
	ctx := ctxT(t)
	p, err := s.List(ctx, objstore.ListOptions{Prefix: "t/", Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	var objs []string
	for _, o := range p.Objects {
		objs = append(objs, o.Key)
	}
	if want := []string{"t/a", "t/b-c", "t/z"}; !slices.Equal(objs, want) {
		t.Errorf("objects %q, want %q", objs, want)
	}
	if want := []string{"t/b/", "t/c/", "t/d/"}; !slices.Equal(p.CommonPrefixes, want) {
		t.Errorf("prefixes %q, want %q", p.CommonPrefixes, want)
	}
	// Page by one: each common prefix appears once, in order.
	var items []string
	opts := objstore.ListOptions{Prefix: "t/", Delimiter: "/", MaxKeys: 1}
	for i := 0; i < 20; i++ {
		p, err := s.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Objects {
			items = append(items, o.Key)
		}
		items = append(items, p.CommonPrefixes...)
		if p.NextToken == "" {
			break
		}
		opts.Token = p.NextToken
	}
	if want := []string{"t/a", "t/b-c", "t/b/", "t/c/", "t/d/", "t/z"}; !slices.Equal(items, want) {
		t.Errorf("paged by one: %q, want %q", items, want)
	}
	// A prefix that ends inside a segment.
	p, err = s.List(ctx, objstore.ListOptions{Prefix: "t/b", Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Objects) != 1 || p.Objects[0].Key != "t/b-c" || !slices.Equal(p.CommonPrefixes, []string{"t/b/"}) {
		t.Errorf("prefix t/b: objects %v prefixes %q", p.Objects, p.CommonPrefixes)
	}
	// The top level.
	p, err = s.List(ctx, objstore.ListOptions{Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.CommonPrefixes, []string{"t/", "u/"}) || len(p.Objects) != 0 {
		t.Errorf("top level: objects %v prefixes %q", p.Objects, p.CommonPrefixes)
	}
}

func testDeleteMany(t *testing.T, s objstore.Store) {
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("del/%02d", i)
		keys = append(keys, k)
		put(t, s, k, []byte(k), objstore.PutOptions{})
	}
	failed, err := s.DeleteMany(ctxT(t), append(keys[:20:20], "del/missing"))
	if err != nil || len(failed) != 0 {
		t.Fatalf("delete many: %v %v", failed, err)
	}
	var left []string
	_ = objstore.ListAll(ctxT(t), s, "del/", func(o objstore.ObjectInfo) error {
		left = append(left, o.Key)
		return nil
	})
	if !slices.Equal(left, keys[20:]) {
		t.Fatalf("left %q", left)
	}
	if err := s.Delete(ctxT(t), keys[25]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(ctxT(t), keys[25]); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("head after delete: %v", err)
	}
}

func testCopy(t *testing.T, s objstore.Store) {
	data := randBytes(4, 50_000)
	src := put(t, s, "src", data, objstore.PutOptions{ContentType: "text/x-a", Metadata: map[string]string{"k": "v"}})
	if _, err := s.Copy(ctxT(t), "dst1", "src", objstore.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	got, oi := get(t, s, "dst1", objstore.GetOptions{})
	if !bytes.Equal(got, data) || oi.Metadata["k"] != "v" || oi.ContentType != "text/x-a" {
		t.Fatalf("copy: %d bytes, info %+v", len(got), oi)
	}
	if _, err := s.Copy(ctxT(t), "dst2", "src", objstore.CopyOptions{
		ReplaceMetadata: true, ContentType: "text/x-b", Metadata: map[string]string{"n": "w"},
	}); err != nil {
		t.Fatal(err)
	}
	_, oi = get(t, s, "dst2", objstore.GetOptions{})
	if oi.Metadata["k"] != "" || oi.Metadata["n"] != "w" || oi.ContentType != "text/x-b" {
		t.Fatalf("copy with new metadata: %+v", oi)
	}
	if _, err := s.Copy(ctxT(t), "dst3", "src", objstore.CopyOptions{IfMatch: "0123456789abcdef0123456789abcdef"}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("copy with a stale etag: %v", err)
	}
	if _, err := s.Copy(ctxT(t), "dst3", "src", objstore.CopyOptions{IfMatch: src.ETag}); err != nil {
		t.Fatalf("copy with the right etag: %v", err)
	}
}

func testMultipart(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	base := randBytes(5, 6<<20)
	put(t, s, "mp/base", base, objstore.PutOptions{})
	id, err := s.CreateMultipart(ctx, "mp/obj", objstore.PutOptions{ContentType: "application/x-mp", Metadata: map[string]string{"mp": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	p1data := randBytes(6, objstore.MinPartSize)
	p1, err := s.UploadPart(ctx, "mp/obj", id, 1, bytes.NewReader(p1data), int64(len(p1data)))
	if err != nil {
		t.Fatal(err)
	}
	// Part 2 is copied from a range of another object (at least the
	// minimum part size, since it is not the last part).
	p2, err := s.UploadPartCopy(ctx, "mp/obj", id, 2, "mp/base", 1000, objstore.MinPartSize)
	if err != nil {
		t.Fatal(err)
	}
	tail := []byte("the last part may be small")
	p3, err := s.UploadPart(ctx, "mp/obj", id, 3, bytes.NewReader(tail), int64(len(tail)))
	if err != nil {
		t.Fatal(err)
	}
	oi, err := s.CompleteMultipart(ctx, "mp/obj", id, []objstore.Part{p1, p2, p3})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(p1data, base[1000:1000+objstore.MinPartSize], tail)
	got, gi := get(t, s, "mp/obj", objstore.GetOptions{})
	if !bytes.Equal(got, want) {
		t.Fatalf("multipart object differs: %d bytes, want %d", len(got), len(want))
	}
	if !strings.HasSuffix(oi.ETag, "-3") || gi.ETag != oi.ETag {
		t.Errorf("etag %q / %q, want a multipart etag ending in -3", oi.ETag, gi.ETag)
	}
	if gi.ContentType != "application/x-mp" || gi.Metadata["mp"] != "yes" {
		t.Errorf("multipart metadata lost: %+v", gi)
	}
	// Abort discards.
	id2, err := s.CreateMultipart(ctx, "mp/aborted", objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "mp/aborted", id2, 1, bytes.NewReader(tail), int64(len(tail))); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortMultipart(ctx, "mp/aborted", id2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "mp/aborted", id2, 2, bytes.NewReader(tail), int64(len(tail))); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("upload to an aborted upload: %v", err)
	}
	if _, err := s.Head(ctx, "mp/aborted"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("aborted upload left an object: %v", err)
	}
}

func testMultipartErrors(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	id, err := s.CreateMultipart(ctx, "mpe", objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	small := []byte("too small for a non-last part")
	p1, err := s.UploadPart(ctx, "mpe", id, 1, bytes.NewReader(small), int64(len(small)))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.UploadPart(ctx, "mpe", id, 2, bytes.NewReader(small), int64(len(small)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteMultipart(ctx, "mpe", id, []objstore.Part{p1, p2}); !errors.Is(err, objstore.ErrInvalidArgument) {
		t.Errorf("complete with a small first part: %v", err)
	}
	if _, err := s.CompleteMultipart(ctx, "mpe", id, []objstore.Part{p2, p1}); !errors.Is(err, objstore.ErrInvalidArgument) {
		t.Errorf("complete with parts out of order: %v", err)
	}
	if _, err := s.UploadPart(ctx, "mpe", "no-such-upload", 1, bytes.NewReader(small), int64(len(small))); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("part for an unknown upload: %v", err)
	}
	if err := s.AbortMultipart(ctx, "mpe", id); err != nil {
		t.Fatal(err)
	}
}

func testConcurrent(t *testing.T, s objstore.Store) {
	var keys []string
	for i := range 64 {
		keys = append(keys, fmt.Sprintf("conc/%d", i))
	}
	parallel(t, keys, func(k string) error {
		data := randBytes(uint64(len(k)), 70_000)
		if _, err := s.Put(ctxT(t), k, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{}); err != nil {
			return err
		}
		rc, _, err := s.Get(ctxT(t), k, objstore.GetOptions{})
		if err != nil {
			return err
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return fmt.Errorf("%s: data differs", k)
		}
		return s.Delete(ctxT(t), k)
	})
}

func testRetryThroughFaults(t *testing.T, base objstore.Store) {
	ctx := ctxT(t)
	var faults *objstore.FaultStore
	m := objstore.NewMetrics()
	s := objstore.Wrap(base, objstore.Options{
		Retry:   objstore.RetryOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, RequestTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second},
		Metrics: m,
		Faults: func(s objstore.Store) objstore.Store {
			faults = objstore.NewFaultStore(s)
			return faults
		},
	})
	data := randBytes(7, 1<<20)

	// A failed call is retried, and the body is sent again from its start.
	faults.Add(objstore.FaultRule{Op: objstore.OpPut, Nth: 1, Err: objstore.ErrInjected})
	faults.Add(objstore.FaultRule{Op: objstore.OpPut, Nth: 2, CutAfter: 300_000})
	if _, err := s.Put(ctx, "f", bytes.NewReader(data), int64(len(data)), objstore.PutOptions{}); err != nil {
		t.Fatalf("put through two faults: %v", err)
	}
	if got := faults.Calls(objstore.OpPut); got != 3 {
		t.Errorf("%d put attempts, want 3", got)
	}
	faults.Clear()
	got, _ := get(t, s, "f", objstore.GetOptions{})
	if !bytes.Equal(got, data) {
		t.Fatal("data differs after retried put")
	}

	// A stream cut mid-way is resumed where it broke.
	gets := faults.Calls(objstore.OpGet)
	faults.Add(objstore.FaultRule{Op: objstore.OpGet, Nth: 1, CutAfter: 123_457})
	faults.Add(objstore.FaultRule{Op: objstore.OpGet, Nth: 2, CutAfter: 400_000})
	got, _ = get(t, s, "f", objstore.GetOptions{})
	if !bytes.Equal(got, data) {
		t.Fatal("data differs after a resumed get")
	}
	if n := faults.Calls(objstore.OpGet) - gets; n != 3 {
		t.Errorf("%d get requests, want 3", n)
	}
	faults.Clear()

	// A ranged read resumes inside its range.
	faults.Add(objstore.FaultRule{Op: objstore.OpGet, Nth: 1, CutAfter: 1000})
	got, _ = get(t, s, "f", objstore.GetOptions{Range: &objstore.Range{Offset: 5000, Length: 10_000}})
	if !bytes.Equal(got, data[5000:15_000]) {
		t.Fatal("resumed ranged read differs")
	}
	faults.Clear()

	// Permanent errors are not retried.
	before := faults.Calls(objstore.OpHead)
	if _, err := s.Head(ctx, "missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatal(err)
	}
	if n := faults.Calls(objstore.OpHead) - before; n != 1 {
		t.Errorf("not-found head tried %d times", n)
	}

	// A hung call is abandoned after the request timeout and retried.
	faults.Add(objstore.FaultRule{Op: objstore.OpHead, Nth: 1, Latency: time.Hour})
	start := time.Now()
	if _, err := s.Head(ctx, "f"); err != nil {
		t.Fatalf("head after a hung attempt: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("hung attempt took %v", d)
	}
	faults.Clear()

	// Retries give up after MaxAttempts.
	faults.Add(objstore.FaultRule{Op: objstore.OpDelete, Err: objstore.ErrInjected})
	if err := s.Delete(ctx, "f"); !errors.Is(err, objstore.ErrTransient) {
		t.Fatalf("delete with a persistent fault: %v", err)
	}
	if n := faults.Calls(objstore.OpDelete); n != 5 {
		t.Errorf("%d delete attempts, want the default 5", n)
	}
	st := m.Snapshot()
	if st.Requests[objstore.OpDelete] != 5 || st.Errors[objstore.OpDelete] != 5 {
		t.Errorf("metrics: %d delete requests, %d errors; want 5 and 5", st.Requests[objstore.OpDelete], st.Errors[objstore.OpDelete])
	}
	if st.BytesUp < int64(len(data)) || st.BytesDown < int64(len(data)) {
		t.Errorf("metrics: %d bytes up, %d down", st.BytesUp, st.BytesDown)
	}
}
