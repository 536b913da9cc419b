package snapshot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func sampleManifest(r *rand.Rand, blocks int) *Manifest {
	m := &Manifest{ID: "snap-1", Volume: "vol", Parent: "snap-0", Created: time.Unix(1700000000, 5).UTC()}
	m.Map = BlockMap{BlockSize: MinBlockSize, Size: int64(blocks)*MinBlockSize - 512, Codec: CodecZstd, Blocks: make([]BlockRef, blocks)}
	for i := range m.Map.Blocks {
		if r.IntN(3) == 0 {
			continue
		}
		for j := range m.Map.Blocks[i].ID {
			m.Map.Blocks[i].ID[j] = byte(r.Uint32())
		}
		m.Map.Blocks[i].Stored = uint32(r.IntN(MinBlockSize))
	}
	return m
}

func TestManifestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{1, 2, 63, 1000} {
		m := sampleManifest(r, n)
		b := m.Encode()
		got, err := DecodeManifest(b)
		if err != nil {
			t.Fatalf("%d blocks: %v", n, err)
		}
		if got.ID != m.ID || got.Volume != m.Volume || got.Parent != m.Parent || !got.Created.Equal(m.Created) ||
			got.Map.Size != m.Map.Size || got.Map.BlockSize != m.Map.BlockSize || got.Map.Codec != m.Map.Codec {
			t.Fatalf("header differs: %+v", got)
		}
		for i := range m.Map.Blocks {
			if got.Map.Blocks[i] != m.Map.Blocks[i] {
				t.Fatalf("block %d differs", i)
			}
		}
		// Any flipped byte is caught.
		for _, k := range []int{0, 5, len(b) / 2, len(b) - 1} {
			c := bytes.Clone(b)
			c[k] ^= 0x40
			if _, err := DecodeManifest(c); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flip at %d: %v", k, err)
			}
		}
	}
}

// withSum replaces the trailing checksum so that the fuzzer reaches the
// parser behind it.
func withSum(b []byte) []byte {
	if len(b) < sha256.Size {
		return b
	}
	body := b[:len(b)-sha256.Size]
	s := sha256.Sum256(body)
	return append(bytes.Clone(body), s[:]...)
}

func FuzzManifestDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{1, 3, 70} {
		f.Add(sampleManifest(r, n).Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, withSum(b)} {
			m, err := decodeManifest(in, 1<<16)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error not ErrCorrupt: %v", err)
				}
				continue
			}
			// A manifest that decodes re-encodes to the same bytes.
			if out := m.Encode(); !bytes.Equal(out, in) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}

func TestChunkCodecs(t *testing.T) {
	coder, err := NewCoder(2)
	if err != nil {
		t.Fatal(err)
	}
	defer coder.Close()
	img := newMemImage(3*MinBlockSize, MinBlockSize)
	r := rand.New(rand.NewPCG(4, 4))
	img.fill(r, 0, 0)
	img.fill(r, 1, 1)
	for _, codec := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		for b := int64(0); b < 3; b++ {
			raw := img.clone()[b*MinBlockSize : (b+1)*MinBlockSize]
			obj := coder.Encode(nil, raw, codec)
			stored := Codec(obj[3])
			switch {
			case b == 0 && stored != CodecNone:
				t.Errorf("%s: random block stored as %s", codec, stored)
			case b > 0 && codec != CodecNone && stored != codec:
				t.Errorf("%s: compressible block %d stored as %s", codec, b, stored)
			}
			got, err := coder.Decode(nil, obj, HashChunk(raw))
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("%s block %d: %v", codec, b, err)
			}
			if _, err := coder.Decode(nil, obj, ChunkID{1}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("wrong id accepted: %v", err)
			}
		}
	}
	for _, s := range []string{"none", "zstd", "lz4", ""} {
		if _, err := ParseCodec(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseCodec("gzip"); !errors.Is(err, ErrInvalid) {
		t.Error("gzip accepted")
	}
}

func FuzzChunkDecode(f *testing.F) {
	coder, err := NewCoder(1)
	if err != nil {
		f.Fatal(err)
	}
	defer coder.Close()
	raw := bytes.Repeat([]byte("sluice chunk "), 100)
	for _, c := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		f.Add(coder.Encode(nil, raw, c))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		out, err := coder.decode(nil, obj)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if len(out) > MaxBlockSize {
			t.Fatalf("decoded %d bytes", len(out))
		}
	})
}

func TestBitmap(t *testing.T) {
	for _, n := range []int64{1, 63, 64, 65, 1000} {
		b := NewBitmap(n)
		want := map[int64]bool{}
		r := rand.New(rand.NewPCG(uint64(n), 0))
		for k := 0; k < int(n)/3+1; k++ {
			i := r.Int64N(n)
			b.Set(i)
			want[i] = true
		}
		if b.Count() != int64(len(want)) {
			t.Fatalf("count %d, want %d", b.Count(), len(want))
		}
		var got int64
		for i := b.Next(0); i >= 0; i = b.Next(i + 1) {
			if !want[i] {
				t.Fatalf("Next returned %d", i)
			}
			got++
		}
		if got != int64(len(want)) {
			t.Fatal("Next missed blocks")
		}
		c := BitmapFromBytes(n, b.Bytes())
		for i := int64(0); i < n; i++ {
			if c.Test(i) != b.Test(i) {
				t.Fatalf("bytes round trip differs at %d", i)
			}
		}
		f := FullBitmap(n)
		if f.Count() != n {
			t.Fatalf("full bitmap counts %d", f.Count())
		}
		f.Or(b)
		if f.Count() != n {
			t.Fatal("or grew a full bitmap")
		}
	}
}

// TestWriteFuzzSeeds keeps testdata/fuzz seeds in step with the encoders
// (run with SLUICE_WRITE_SEEDS=1 to regenerate).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SLUICE_WRITE_SEEDS") == "" {
		return
	}
	r := rand.New(rand.NewPCG(9, 9))
	dir := filepath.Join("testdata", "fuzz", "FuzzManifestDecode")
	os.MkdirAll(dir, 0o755)
	for i, n := range []int{1, 5, 300} {
		writeSeed(t, dir, i, sampleManifest(r, n).Encode())
	}
	coder, err := NewCoder(1)
	if err != nil {
		t.Fatal(err)
	}
	defer coder.Close()
	dir = filepath.Join("testdata", "fuzz", "FuzzChunkDecode")
	raw := bytes.Repeat([]byte("sluice chunk seed "), 200)
	for i, c := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		writeSeed(t, dir, i, coder.Encode(nil, raw, c))
	}
	dir = filepath.Join("testdata", "fuzz", "FuzzPackIndexDecode")
	for i, n := range []int{1, 3, 40} {
		writeSeed(t, dir, i, encodePackIndex(samplePackEntries(r, n)))
	}
	dir = filepath.Join("testdata", "fuzz", "FuzzMergedIndexDecode")
	for i, n := range []int{1, 2, 20} {
		writeSeed(t, dir, i, encodeMergedIndex(sampleMergedPacks(r, n)))
	}
}

func writeSeed(t *testing.T, dir string, i int, b []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "seed"+string(rune('0'+i)))
	if err := os.WriteFile(name, []byte("go test fuzz v1\n[]byte("+quote(b)+")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func quote(b []byte) string {
	var s bytes.Buffer
	s.WriteByte('"')
	for _, c := range b {
		s.WriteString("\\x")
		s.WriteByte("0123456789abcdef"[c>>4])
		s.WriteByte("0123456789abcdef"[c&15])
	}
	s.WriteByte('"')
	return s.String()
}
