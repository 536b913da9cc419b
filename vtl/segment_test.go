package vtl

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	text := bytes.Repeat([]byte("sluice tape gateway record "), 40000)
	for _, name := range []string{"lz4", "zstd", "none"} {
		c, err := newCodec(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name     string
			data     []byte
			compress bool
		}{{"random", random, false}, {"text", text, name != "none"}, {"small", text[:100], name != "none"}} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				hdr, body, _ := c.encode(nil, tc.data)
				if got := len(body) < len(tc.data); got != tc.compress {
					t.Fatalf("compressed %v (%d of %d bytes), want %v", got, len(body), len(tc.data), tc.compress)
				}
				obj := append(hdr[:], body...)
				raw, err := c.decode(nil, obj, uint32(len(tc.data)))
				if err != nil || !bytes.Equal(raw, tc.data) {
					t.Fatalf("decode: %v", err)
				}
				obj[len(obj)-1] ^= 1
				if _, err := c.decode(nil, obj, uint32(len(tc.data))); !errors.Is(err, ErrCorruptIndex) {
					t.Fatalf("corrupt segment decoded: %v", err)
				}
			})
		}
		c.close()
	}
}
