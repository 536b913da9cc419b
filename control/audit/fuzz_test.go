package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify feeds arbitrary segment contents (and digests) to Verify: it
// must report a problem or OK, never panic.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"v":1,"seq":1,"time":"2026-11-25T00:00:00Z","category":"management","source":"api","name":"X","read_only":false,"identity":{"type":"system"},"result":"success","prev":"","hash":"00"}`+"\n"), []byte(`{}`))
	f.Add([]byte("not json\n{\n"), []byte(`{"v":1,"segment":"seg-00000000000000000001.jsonl","signature":"zz"}`))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, seg, digest []byte) {
		dir := t.TempDir()
		name := segmentName(1)
		os.WriteFile(filepath.Join(dir, name), seg, 0o600)
		if len(digest) > 0 {
			os.WriteFile(filepath.Join(dir, name+digestSuffix), digest, 0o600)
		}
		pub := make([]byte, 32)
		rep, err := Verify(context.Background(), DirSource(dir), pub)
		if err == nil && rep.OK && len(seg) > 0 && rep.Records == 0 {
			t.Fatalf("non-empty segment verified with no records: %+v", rep)
		}
	})
}
