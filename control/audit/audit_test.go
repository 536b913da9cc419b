package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openT(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		err := l.Append(Record{
			Category: Management, Source: "api", Name: fmt.Sprintf("Call%d", i%3),
			Identity: Identity{Type: "token", ID: "abc", Role: "admin"}, Resource: fmt.Sprintf("volume/v%d", i),
			Params: map[string]any{"name": fmt.Sprintf("v%d", i), "chap_secret": "hunter2hunter2", "nested": map[string]any{"password": "pw"}},
			Result: Success,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// build writes a trail of three sealed segments and an open one.
func build(t *testing.T) string {
	dir := t.TempDir()
	l := openT(t, dir, Options{MaxSegmentBytes: 2000})
	appendN(t, l, 0, 20)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func verifyDir(t *testing.T, dir string) Report {
	t.Helper()
	rep, err := Verify(context.Background(), DirSource(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestTrailVerifiesAndRedacts(t *testing.T) {
	dir := build(t)
	rep := verifyDir(t, dir)
	if !rep.OK || rep.Records != 20 || rep.Sealed < 3 || rep.LastSeq != 20 {
		t.Fatalf("report %+v", rep)
	}
	names, _ := segments(dir)
	for _, n := range names {
		raw, _ := os.ReadFile(filepath.Join(dir, n))
		if bytes.Contains(raw, []byte("hunter2")) || bytes.Contains(raw, []byte(`"pw"`)) {
			t.Fatalf("%s holds a secret", n)
		}
	}
	// Reopening continues the chain.
	l := openT(t, dir, Options{MaxSegmentBytes: 2000})
	appendN(t, l, 20, 5)
	l.Close()
	if rep := verifyDir(t, dir); !rep.OK || rep.Records != 25 {
		t.Fatalf("after reopen: %+v", rep)
	}
}

// lines returns the segments and the lines of the one at index i.
func lines(t *testing.T, dir string, i int) (string, [][]byte) {
	names, _ := segments(dir)
	path := filepath.Join(dir, names[i])
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, bytes.SplitAfter(raw, []byte("\n"))
}

func TestTamperingIsPinpointed(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   string // substring of the problem
		line   int
	}{
		{"edit a record", func(t *testing.T, dir string) {
			path, ls := lines(t, dir, 1)
			ls[1] = bytes.Replace(ls[1], []byte(`"result":"success"`), []byte(`"result":"failure"`), 1)
			os.WriteFile(path, bytes.Join(ls, nil), 0o600)
		}, "does not match its hash", 2},
		{"delete a record", func(t *testing.T, dir string) {
			path, ls := lines(t, dir, 1)
			ls = append(ls[:1], ls[2:]...)
			os.WriteFile(path, bytes.Join(ls, nil), 0o600)
		}, "records deleted", 2},
		{"reorder records", func(t *testing.T, dir string) {
			path, ls := lines(t, dir, 1)
			ls[0], ls[1] = ls[1], ls[0]
			os.WriteFile(path, bytes.Join(ls, nil), 0o600)
		}, "found where", 1},
		{"truncate a sealed segment", func(t *testing.T, dir string) {
			path, ls := lines(t, dir, 0)
			os.WriteFile(path, bytes.Join(ls[:len(ls)-2], nil), 0o600)
		}, "records removed from the end", 0},
		{"cut a record in half", func(t *testing.T, dir string) {
			path, ls := lines(t, dir, 2)
			last := ls[len(ls)-2]
			ls[len(ls)-2] = last[:len(last)/2]
			os.WriteFile(path, bytes.Join(ls[:len(ls)-1], nil), 0o600)
		}, "not valid JSON", 0},
		{"remove a whole segment", func(t *testing.T, dir string) {
			names, _ := segments(dir)
			os.Remove(filepath.Join(dir, names[1]))
			os.Remove(filepath.Join(dir, names[1]+digestSuffix))
		}, "does not follow the previous segment's digest", 0},
		{"forge a digest", func(t *testing.T, dir string) {
			names, _ := segments(dir)
			p := filepath.Join(dir, names[0]+digestSuffix)
			raw, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(raw, []byte(`"count": `), []byte(`"count": 1`), 1), 0o600)
		}, "signature does not verify", 0},
		{"rewrite a record and its hash", func(t *testing.T, dir string) {
			path, ls := lines(t, dir, 1)
			r, _ := decodeRecord(bytes.TrimSpace(ls[0]))
			r.Name = "Innocent"
			r.Hash, _ = r.computeHash()
			ls[0] = append(mustJSON(r), '\n')
			os.WriteFile(path, bytes.Join(ls, nil), 0o600)
		}, "does not chain", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := build(t)
			c.tamper(t, dir)
			rep := verifyDir(t, dir)
			if rep.OK || rep.Problem == nil {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if !strings.Contains(rep.Problem.Reason, c.want) {
				t.Fatalf("problem %q, want %q", rep.Problem, c.want)
			}
			if c.line > 0 && rep.Problem.Line != c.line {
				t.Fatalf("problem at line %d, want %d: %s", rep.Problem.Line, c.line, rep.Problem)
			}
		})
	}
}

func TestQueryAndConcurrentAppend(t *testing.T) {
	l := openT(t, t.TempDir(), Options{MaxSegmentBytes: 4096})
	defer l.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				l.Append(Record{Category: Management, Name: "Op", Resource: fmt.Sprintf("g%d/%d", g, i), Result: Success})
			}
		}()
	}
	wg.Wait()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	got, next, err := l.Query(Filter{Resource: "g2/", Limit: 30})
	if err != nil || len(got) != 30 || next == 0 {
		t.Fatalf("query: %d records, next %d, %v", len(got), next, err)
	}
	rest, next2, err := l.Query(Filter{Resource: "g2/", AfterSeq: next})
	if err != nil || len(rest) != 20 || next2 != 0 {
		t.Fatalf("second page: %d records, next %d, %v", len(rest), next2, err)
	}
	if rep := verifyDir(t, l.Dir()); !rep.OK || rep.Records != 200 {
		t.Fatalf("report %+v", rep)
	}
	since := time.Now().Add(time.Hour)
	if got, _, _ := l.Query(Filter{Since: since}); len(got) != 0 {
		t.Fatalf("future query: %d", len(got))
	}
}

type memUploader struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (m *memUploader) Upload(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = bytes.Clone(data)
	return nil
}

func (m *memUploader) Names(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.files {
		out = append(out, n)
	}
	return out, nil
}

func (m *memUploader) Read(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return b, nil
}

func TestDeliveryAndTornTail(t *testing.T) {
	up := &memUploader{files: map[string][]byte{}}
	dir := t.TempDir()
	l := openT(t, dir, Options{MaxSegmentBytes: 1500, Uploader: up})
	appendN(t, l, 0, 12)
	l.Close()
	rep, err := Verify(context.Background(), up, nil)
	if err != nil || !rep.OK || rep.Records != 12 {
		t.Fatalf("bucket copy: %+v %v", rep, err)
	}
	// A crash mid-write leaves half a line at the end of the open segment.
	l = openT(t, dir, Options{MaxSegmentBytes: 1 << 20})
	appendN(t, l, 12, 3)
	l.Flush()
	names, _ := segments(dir)
	f, _ := os.OpenFile(filepath.Join(dir, names[len(names)-1]), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"v":1,"seq":16,"ti`)
	f.Close()
	// Simulate the crash: drop the writer without sealing.
	l.closed.Store(true)
	l2 := openT(t, dir, Options{})
	appendN(t, l2, 15, 1)
	l2.Close()
	if rep := verifyDir(t, dir); !rep.OK || rep.Records != 16 {
		t.Fatalf("after a torn tail: %+v", rep)
	}
}

func mustJSON(r Record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}
