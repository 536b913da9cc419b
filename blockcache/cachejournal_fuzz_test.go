package blockcache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/snapshot"
)

// journalSeed is a journal with one record of every type.
func journalSeed() []byte {
	b := encodeJournalHeader(7)
	id := snapshot.HashChunk([]byte("x"))
	for _, r := range []journalRec{
		{typ: recVol, key: 1, block: 1 << 30, bs: 1 << 20, codec: snapshot.CodecZstd, name: "vol-a"},
		{typ: recSlot, slot: 3, key: 1, block: 9, state: slotStateDirty},
		{typ: recMap, slot: 3, key: 1, block: 9, ref: snapshot.BlockRef{ID: id, Stored: 1234}},
		{typ: recMap, slot: noSlot, key: 1, block: 10},
		{typ: recSlot, slot: 4, key: 1, block: 11, state: slotStateClean},
		{typ: recFree, slot: 4},
		{typ: recDelVol, key: 1},
	} {
		b = appendRecord(b, r)
	}
	return b
}

// indexSeed is a checkpoint with two volumes and used slots.
func indexSeed() []byte {
	a, _ := snapshot.NewBlockMap(8<<20, 1<<20, snapshot.CodecZstd)
	a.Blocks[2] = snapshot.BlockRef{ID: snapshot.HashChunk([]byte("a")), Stored: 99}
	b, _ := snapshot.NewBlockMap(64<<10*5+512, 64<<10, snapshot.CodecLZ4)
	return encodeIndex(&indexState{
		journalID: 3, slotSize: 1 << 20, slots: 16,
		vols: []indexVol{{key: 10, name: "a", bm: a}, {key: 11, name: "b", bm: b}},
		used: []indexSlot{{slot: 0, key: 10, block: 2, state: slotStateClean}, {slot: 5, key: 11, block: 5, state: slotStateDirty}},
	})
}

// FuzzCacheJournalDecode: the journal decoder never panics, and the valid
// prefix it reports re-encodes from its records to the same bytes.
func FuzzCacheJournalDecode(f *testing.F) {
	s := journalSeed()
	f.Add(s)
	f.Add(s[:len(s)-3])
	f.Add(encodeJournalHeader(1))
	f.Fuzz(func(t *testing.T, p []byte) {
		id, recs, valid, err := decodeJournal(p)
		if err != nil {
			return
		}
		re := encodeJournalHeader(id)
		for _, r := range recs {
			re = appendRecord(re, r)
		}
		if !bytes.Equal(re, p[:valid]) {
			t.Fatalf("re-encoded journal differs from its valid prefix (%d of %d bytes)", valid, len(p))
		}
	})
}

// FuzzCacheIndexDecode: the checkpoint decoder never panics, and a
// checkpoint that decodes re-encodes to the same bytes.
func FuzzCacheIndexDecode(f *testing.F) {
	s := indexSeed()
	f.Add(s)
	f.Add(s[:len(s)-1])
	f.Fuzz(func(t *testing.T, p []byte) {
		st, err := decodeIndex(p)
		if err != nil {
			return
		}
		if re := encodeIndex(st); !bytes.Equal(re, p) {
			t.Fatal("re-encoded index differs")
		}
	})
}

// TestWriteCacheFuzzSeeds writes the seed corpora under testdata/fuzz
// when SLUICE_WRITE_FUZZ_SEEDS=1 (run once after a format change).
func TestWriteCacheFuzzSeeds(t *testing.T) {
	if os.Getenv("SLUICE_WRITE_FUZZ_SEEDS") != "1" {
		return
	}
	j := journalSeed()
	for name, seeds := range map[string][][]byte{
		"FuzzCacheJournalDecode": {j, j[:len(j)-3], encodeJournalHeader(1)},
		"FuzzCacheIndexDecode":   {indexSeed()},
	} {
		for i, s := range seeds {
			path := filepath.Join("testdata", "fuzz", name, fmt.Sprintf("seed%d", i))
			if err := os.WriteFile(path, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCacheIndexRoundTrip: the seeds decode, and damaged copies do not.
func TestCacheIndexRoundTrip(t *testing.T) {
	s := indexSeed()
	st, err := decodeIndex(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.vols) != 2 || len(st.used) != 2 || st.vols[0].bm.Blocks[2].Stored != 99 {
		t.Fatalf("decoded: %+v", st)
	}
	for i := range s {
		d := bytes.Clone(s)
		d[i] ^= 0x40
		if _, err := decodeIndex(d); err == nil {
			t.Fatalf("index with byte %d flipped decodes", i)
		}
	}
	j := journalSeed()
	_, recs, valid, err := decodeJournal(j)
	if err != nil || len(recs) != 7 || valid != len(j) {
		t.Fatalf("journal: %d records, %d of %d bytes, %v", len(recs), valid, len(j), err)
	}
	// A torn last record ends the valid prefix.
	_, recs, valid, err = decodeJournal(j[:len(j)-1])
	if err != nil || len(recs) != 6 || valid >= len(j)-1 {
		t.Fatalf("torn journal: %d records, %d bytes, %v", len(recs), valid, err)
	}
}
