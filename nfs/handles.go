package nfs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// rootID is the file id of a share's root directory.
const rootID = 1

// handleLen is the length of every Sluice file handle: the share id and the
// file id, eight bytes each, big endian.
const handleLen = 16

// deleted marks a removal record in the handle log.
const deletedLen = 0xFFFFFFFF

// handleIndex is the persistent mapping between file ids (the second half
// of a file handle) and paths of one share. It lives in memory and in an
// append-only log of (id, path) records in the state directory, replayed at
// start, so handles survive restarts and renames keep a file's id.
type handleIndex struct {
	syncMu sync.Mutex // held by sync
	mu     sync.Mutex
	f      *os.File
	next   uint64
	byID   map[uint64]string
	byPath map[string]uint64
	dirty  bool
}

// openHandleIndex replays (and compacts) the log at path.
func openHandleIndex(path string) (*handleIndex, error) {
	h := &handleIndex{next: rootID + 1, byID: map[uint64]string{rootID: ""}, byPath: map[string]uint64{"": rootID}}
	if f, err := os.Open(path); err == nil {
		r := bufio.NewReader(f)
		var hdr [12]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				break // end of log, or a torn last record
			}
			id := binary.BigEndian.Uint64(hdr[:8])
			n := binary.BigEndian.Uint32(hdr[8:])
			if n == deletedLen {
				h.forgetLocked(id)
				continue
			}
			if n > 4096 {
				break
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				break
			}
			h.setLocked(id, string(b))
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("handle index: %w", err)
	}
	// Compact: write the live records to a new log and swap it in.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("handle index: %w", err)
	}
	h.f = f
	for id, p := range h.byID {
		if id != rootID {
			h.appendLocked(id, p, false)
		}
	}
	if err := h.syncLocked(); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return nil, fmt.Errorf("handle index: %w", err)
	}
	return h, nil
}

func (h *handleIndex) setLocked(id uint64, p string) {
	if old, ok := h.byID[id]; ok {
		delete(h.byPath, old)
	}
	h.byID[id] = p
	h.byPath[p] = id
	if id >= h.next {
		h.next = id + 1
	}
}

func (h *handleIndex) forgetLocked(id uint64) {
	if p, ok := h.byID[id]; ok && id != rootID {
		delete(h.byID, id)
		if h.byPath[p] == id {
			delete(h.byPath, p)
		}
	}
}

func (h *handleIndex) appendLocked(id uint64, p string, del bool) {
	var hdr [12]byte
	binary.BigEndian.PutUint64(hdr[:8], id)
	if del {
		binary.BigEndian.PutUint32(hdr[8:], deletedLen)
	} else {
		binary.BigEndian.PutUint32(hdr[8:], uint32(len(p)))
	}
	rec := hdr[:]
	if !del {
		rec = append(rec, p...)
	}
	// Written straight to the file: a record survives a crash of the
	// process at once, and a crash of the machine after sync.
	_, _ = h.f.Write(rec)
	h.dirty = true
}

// id returns the file id of path, allocating one if needed.
func (h *handleIndex) id(p string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.byPath[p]; ok {
		return id
	}
	id := h.next
	h.setLocked(id, p)
	h.appendLocked(id, p, false)
	return id
}

// path returns the path of a file id.
func (h *handleIndex) path(id uint64) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.byID[id]
	return p, ok
}

// forget drops the id of path (the file was removed).
func (h *handleIndex) forget(p string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.byPath[p]; ok && id != rootID {
		h.forgetLocked(id)
		h.appendLocked(id, "", true)
	}
}

// rename moves path from, and every path below it, to to; ids stay.
func (h *handleIndex) rename(from, to string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.byPath[to]; ok {
		h.forgetLocked(id)
		h.appendLocked(id, "", true)
	}
	type mv struct {
		id uint64
		p  string
	}
	var moves []mv
	for p, id := range h.byPath {
		if p == from || strings.HasPrefix(p, from+"/") {
			moves = append(moves, mv{id, to + p[len(from):]})
		}
	}
	for _, m := range moves {
		h.setLocked(m.id, m.p)
		h.appendLocked(m.id, m.p, false)
	}
}

// sync makes the log durable. Lookups and appends go on while the file is
// synced; syncMu keeps one sync at a time, so a caller that finds the log
// clean knows that an earlier sync covered every record written before.
func (h *handleIndex) sync() error {
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	h.mu.Lock()
	dirty := h.dirty
	h.dirty = false
	h.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := h.f.Sync(); err != nil {
		h.mu.Lock()
		h.dirty = true
		h.mu.Unlock()
		return fmt.Errorf("handle index: %w", err)
	}
	return nil
}

func (h *handleIndex) syncLocked() error {
	if !h.dirty {
		return nil
	}
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("handle index: %w", err)
	}
	h.dirty = false
	return nil
}

func (h *handleIndex) close() error {
	err := h.sync()
	h.mu.Lock()
	defer h.mu.Unlock()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// encodeHandle builds a file handle.
func encodeHandle(share, id uint64) []byte {
	b := make([]byte, handleLen)
	binary.BigEndian.PutUint64(b, share)
	binary.BigEndian.PutUint64(b[8:], id)
	return b
}

// decodeHandle splits a file handle.
func decodeHandle(b []byte) (share, id uint64, ok bool) {
	if len(b) != handleLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), true
}
