package nfs

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// inlineMax is the largest file whose data is copied into its journal
// records: committing a small file then costs one shared log sync instead
// of an fsync of its own data file.
const inlineMax = 256 << 10

// walRotateSize is the log size beyond which it is rewritten with only
// the records still needed.
const walRotateSize = 64 << 20

// record is one journal entry: the state of a file with changes not yet
// uploaded, or the news that a file became clean or was removed.
type record struct {
	ID   uint64 `json:"id"`
	Seq  uint64 `json:"seq"` // per file, increasing; replay keeps the highest
	Kind string `json:"kind"`
	// State of a "state" record.
	Path      string            `json:"path,omitempty"`
	Size      int64             `json:"size,omitempty"`
	Base      string            `json:"base,omitempty"`
	BaseSize  int64             `json:"base_size,omitempty"`
	Local     bool              `json:"local,omitempty"`
	DataDirty bool              `json:"data_dirty,omitempty"`
	MetaDirty bool              `json:"meta_dirty,omitempty"`
	Present   bitmap            `json:"present,omitempty"`
	Dirty     bitmap            `json:"dirty,omitempty"`
	Type      ftype             `json:"type,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"`
	Data      []byte            `json:"data,omitempty"`
}

// Record kinds.
const (
	recState = "state"
	recClean = "clean"
	recGone  = "gone"
)

// wal is a share's journal: an append-only log of records, each framed
// as length, CRC-32C and JSON. Appends are written at once (a killed
// process loses nothing written); durable appends wait for a group sync
// that one committer performs for all waiting ones.
type wal struct {
	dir        string
	beforeSync func() error // also made durable by every sync (the handle index)

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	gen     int
	size    int64
	written uint64
	synced  uint64
	syncing bool
}

func walName(dir string, gen int) string {
	return filepath.Join(dir, "journal."+strconv.Itoa(gen))
}

// openWAL replays every journal file in dir and returns the newest record
// of each file, and a log ready for appends.
func openWAL(dir string, beforeSync func() error) (*wal, map[uint64]*record, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	latest := map[uint64]*record{}
	gens := []int{}
	for _, e := range ents {
		g, ok := strings.CutPrefix(e.Name(), "journal.")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(g)
		if err != nil {
			continue
		}
		gens = append(gens, n)
		if err := replay(walName(dir, n), latest); err != nil {
			return nil, nil, err
		}
	}
	sort.Ints(gens)
	w := &wal{dir: dir, beforeSync: beforeSync}
	w.cond = sync.NewCond(&w.mu)
	if len(gens) > 0 {
		w.gen = gens[len(gens)-1]
	}
	w.gen++
	f, err := os.OpenFile(walName(dir, w.gen), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	w.f = f
	return w, latest, nil
}

// replay reads one journal file; a torn or corrupt tail ends it.
func replay(path string, latest map[uint64]*record) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > 4*inlineMax+1<<20 {
			return nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil || crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) != binary.BigEndian.Uint32(hdr[4:]) {
			return nil
		}
		var rec record
		if json.Unmarshal(b, &rec) != nil {
			return nil
		}
		if old := latest[rec.ID]; old == nil || rec.Seq >= old.Seq {
			latest[rec.ID] = &rec
		}
	}
}

func frame(rec *record) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	out := make([]byte, 8, 8+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	binary.BigEndian.PutUint32(out[4:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return append(out, b...), nil
}

// append writes a record; with sync it returns once the record is durable.
func (w *wal) append(rec *record, sync bool) error {
	b, err := frame(rec)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(b); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	w.size += int64(len(b))
	w.written++
	seq := w.written
	for sync && w.synced < seq {
		if w.syncing {
			w.cond.Wait()
			continue
		}
		w.syncing = true
		target, f := w.written, w.f
		w.mu.Unlock()
		// The handle index and the log are synced in parallel.
		herr := make(chan error, 1)
		go func() { herr <- w.beforeSync() }()
		err := f.Sync()
		if e := <-herr; err == nil {
			err = e
		}
		w.mu.Lock()
		w.syncing = false
		w.cond.Broadcast()
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		w.synced = max(w.synced, target)
	}
	return nil
}

// needsRotate reports whether the log has grown past walRotateSize.
func (w *wal) needsRotate() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size > walRotateSize
}

// rotate starts a new log file, has live() append the records still
// needed to it, makes it durable and deletes the older files. Records
// carry per-file sequence numbers, so appends racing with live() are
// replayed correctly.
func (w *wal) rotate(live func() error) error {
	w.mu.Lock()
	old, oldGen := w.f, w.gen
	f, err := os.OpenFile(walName(w.dir, w.gen+1), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		w.mu.Unlock()
		return fmt.Errorf("journal: %w", err)
	}
	w.f, w.gen, w.size = f, w.gen+1, 0
	w.mu.Unlock()
	if err := live(); err != nil {
		return err
	}
	if err := w.append(&record{Kind: "rotated"}, true); err != nil {
		return err
	}
	old.Close()
	for g := oldGen; g > 0; g-- {
		if err := os.Remove(walName(w.dir, g)); errors.Is(err, os.ErrNotExist) && g < oldGen {
			break
		}
	}
	return nil
}

func (w *wal) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}
