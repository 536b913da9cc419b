package objstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestEmbeddedAwkwardKeys covers keys that S3 allows but a file system
// cannot hold as plain names.
func TestEmbeddedAwkwardKeys(t *testing.T) {
	e, err := OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := []string{"a", "a/b", "a/b/", "x//y", "/lead", "..", "dot/../x", ".", "p%2Fq", "a.o", "a.o/z"}
	for _, k := range keys {
		if _, err := e.Put(ctx, k, bytes.NewReader([]byte(k)), int64(len(k)), PutOptions{}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	var listed []string
	if err := ListAll(ctx, e, "", func(o ObjectInfo) error {
		listed = append(listed, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("listed %q\nwant   %q", listed, want)
	}
	for _, k := range keys {
		rc, _, err := e.Get(ctx, k, GetOptions{})
		if err != nil {
			t.Fatalf("get %q: %v", k, err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(rc)
		rc.Close()
		if buf.String() != k {
			t.Errorf("key %q holds %q", k, buf.String())
		}
	}
	// Nothing escapes the objects directory.
	if _, err := os.Stat(filepath.Join(e.root, "x")); err == nil {
		t.Fatal("a key wrote outside objects/")
	}
	for _, k := range []string{"", string(bytes.Repeat([]byte("k"), 1025)), "\xff"} {
		if _, err := e.Put(ctx, k, bytes.NewReader(nil), 0, PutOptions{}); err == nil {
			t.Errorf("put of invalid key %q accepted", k)
		}
	}
}

// TestEmbeddedCrashLeftovers checks that temporary files of an interrupted
// write are removed on open and never listed.
func TestEmbeddedCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	e, err := OpenEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.tempFile()
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half a write")
	f.Close()
	if _, err := OpenEmbedded(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); !os.IsNotExist(err) {
		t.Fatalf("leftover temp file still there: %v", err)
	}
}
