package nfs

import (
	"os"
	"testing"
)

func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	noSync := func() error { return nil }
	w, latest, err := openWAL(dir, noSync)
	if err != nil || len(latest) != 0 {
		t.Fatalf("open empty: %v %v", latest, err)
	}
	recs := []*record{
		{ID: 2, Seq: 1, Kind: recState, Path: "a", Size: 3, Data: []byte("abc"), Local: true, DataDirty: true},
		{ID: 3, Seq: 1, Kind: recState, Path: "b", Size: 1},
		{ID: 2, Seq: 2, Kind: recState, Path: "a2", Size: 3, Data: []byte("xyz"), DataDirty: true},
		{ID: 3, Seq: 2, Kind: recClean},
		{ID: 4, Seq: 5, Kind: recState, Path: "c"},
		{ID: 4, Seq: 4, Kind: recGone}, // older sequence: loses
	}
	for i, r := range recs {
		if err := w.append(r, i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	w.close()
	// A torn record at the end is ignored.
	f, _ := os.OpenFile(walName(dir, 1), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0, 50, 1, 2, 3, 4, '{'})
	f.Close()
	w, latest, err = openWAL(dir, noSync)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   uint64
		kind string
		path string
	}{{2, recState, "a2"}, {3, recClean, ""}, {4, recState, "c"}} {
		r := latest[tc.id]
		if r == nil || r.Kind != tc.kind || r.Path != tc.path {
			t.Errorf("id %d: %+v, want %s %q", tc.id, r, tc.kind, tc.path)
		}
	}
	if string(latest[2].Data) != "xyz" {
		t.Errorf("inline data %q", latest[2].Data)
	}
	// Rotation keeps only what live() appends and removes older files.
	if err := w.rotate(func() error {
		return w.append(&record{ID: 2, Seq: 3, Kind: recState, Path: "a3"}, false)
	}); err != nil {
		t.Fatal(err)
	}
	w.close()
	if _, err := os.Stat(walName(dir, 1)); !os.IsNotExist(err) {
		t.Errorf("old journal file still there: %v", err)
	}
	_, latest, err = openWAL(dir, noSync)
	if err != nil {
		t.Fatal(err)
	}
	if latest[2] == nil || latest[2].Path != "a3" || latest[3] != nil || latest[4] != nil {
		t.Errorf("after rotation: %+v", latest)
	}
}
