package snapshot

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestCreateFromMap: a snapshot made from a block map of chunks already in
// the store restores to the same image, uploads nothing but its manifest
// and entry, and a Freeze failure or bad geometry fails it.
func TestCreateFromMap(t *testing.T) {
	ctx := ctxT(t)
	c := newTestCatalog(t, "", Options{})
	const bs = MinBlockSize
	size := int64(bs*6 + 1024)
	img := newMemImage(size, bs)
	r := rand.New(rand.NewPCG(7, 7))
	for i := int64(0); i < 7; i++ {
		img.fill(r, i, int(i%3))
	}
	// Store the chunks as a cached volume's uploader would.
	bm, err := NewBlockMap(size, bs, CodecZstd)
	if err != nil {
		t.Fatal(err)
	}
	for i := range bm.Blocks {
		p := make([]byte, bm.BlockLen(int64(i)))
		if err := img.ReadBlock(ctx, int64(i), p); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(p, make([]byte, len(p))) {
			continue
		}
		obj := c.Coder().Encode(nil, p, CodecZstd)
		id := HashChunk(p)
		if _, err := c.Chunks().PutIfAbsent(ctx, id, obj); err != nil {
			t.Fatal(err)
		}
		bm.Blocks[i] = BlockRef{ID: id, Stored: uint32(len(obj))}
	}
	if err := c.WaitGC(ctx); err != nil {
		t.Fatal(err)
	}
	before := c.metrics.Snapshot()
	froze := 0
	in, err := c.CreateFromMap(ctx, MapRequest{
		Volume: "cv", Size: size, BlockSize: bs, Codec: CodecZstd, Description: "d",
		Freeze: func(context.Context) (*BlockMap, error) { froze++; return bm, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	after := c.metrics.Snapshot()
	if d := after.Requests["put"] - before.Requests["put"]; d != 3 || froze != 1 {
		t.Errorf("CreateFromMap made %d puts, froze %d times", d, froze)
	}
	if in.Status != StatusCompleted || in.Blocks != 5 || in.Description != "d" {
		t.Fatalf("entry: %+v", in)
	}
	if got := restoreBytes(t, c.Catalog, in.ID, size); !bytes.Equal(got, img.clone()) {
		t.Fatal("restored image differs")
	}
	// Same id again: returns the completed entry without freezing.
	if again, err := c.CreateFromMap(ctx, MapRequest{ID: in.ID, Volume: "cv", Size: size, BlockSize: bs, Codec: CodecZstd,
		Freeze: func(context.Context) (*BlockMap, error) { froze++; return bm, nil }}); err != nil || again.ID != in.ID || froze != 1 {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	boom := errors.New("boom")
	tests := []struct {
		name   string
		freeze func(context.Context) (*BlockMap, error)
	}{
		{"freeze fails", func(context.Context) (*BlockMap, error) { return nil, boom }},
		{"wrong geometry", func(context.Context) (*BlockMap, error) { m, _ := NewBlockMap(size+bs, bs, CodecZstd); return m, nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := c.CreateFromMap(ctx, MapRequest{Volume: "cv", Size: size, BlockSize: bs, Freeze: tc.freeze})
			if err == nil {
				t.Fatal("succeeded")
			}
			if got, _ := c.Get(ctx, in.ID); got.Status != StatusError {
				t.Fatalf("entry after failure: %+v", got)
			}
		})
	}
	if _, err := c.CreateFromMap(ctx, MapRequest{Volume: "cv", Size: size, BlockSize: bs}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no freeze: %v", err)
	}
}

// TestLiveMap: a live map round-trips, is replaced, deleted, and names
// are checked.
func TestLiveMap(t *testing.T) {
	ctx := ctxT(t)
	c := newTestCatalog(t, "", Options{})
	bm, _ := NewBlockMap(4*MinBlockSize, MinBlockSize, CodecLZ4)
	bm.Blocks[1] = BlockRef{ID: HashChunk([]byte("b")), Stored: 7}
	tests := []struct {
		name    string
		run     func() error
		wantErr error
	}{
		{"missing", func() error { _, _, err := c.LiveMap(ctx, "vol"); return err }, ErrNotFound},
		{"bad name", func() error { return c.PutLiveMap(ctx, "../x", bm) }, ErrInvalid},
		{"put", func() error { return c.PutLiveMap(ctx, "vol", bm) }, nil},
		{"get", func() error {
			got, _, err := c.LiveMap(ctx, "vol")
			if err == nil && (got.Blocks[1] != bm.Blocks[1] || got.Size != bm.Size || got.Codec != CodecLZ4) {
				t.Errorf("live map read back as %+v", got)
			}
			return err
		}, nil},
		{"delete", func() error { return c.DeleteLiveMap(ctx, "vol") }, nil},
		{"deleted", func() error { _, _, err := c.LiveMap(ctx, "vol"); return err }, ErrNotFound},
	}
	for _, tc := range tests {
		if err := tc.run(); !errors.Is(err, tc.wantErr) && (tc.wantErr != nil || err != nil) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}
