package scsi_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func proutCDB(sa, typ byte) []byte {
	return []byte{0x5f, sa, typ, 0, 0, 0, 0, 0, 24, 0}
}

func proutParams(key, saKey uint64, flags byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	p[20] = flags
	return p
}

func prinCDB(sa byte, alloc uint16) []byte {
	c := []byte{0x5e, sa, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(c[7:], alloc)
	return c
}

// prout runs PERSISTENT RESERVE OUT from n.
func (h *harness) prout(n scsi.Nexus, sa, typ byte, key, saKey uint64, w want) {
	h.t.Helper()
	st, sense, _ := h.exec(n, proutCDB(sa, typ), proutParams(key, saKey, 0), 0)
	h.check("prout", st, sense, w)
}

func (h *harness) readKeys(n scsi.Nexus) (gen uint32, keys []uint64) {
	h.t.Helper()
	st, sense, in := h.exec(n, prinCDB(0, 1024), nil, 1024)
	h.check("read keys", st, sense, good)
	for off := 8; off < len(in); off += 8 {
		keys = append(keys, binary.BigEndian.Uint64(in[off:]))
	}
	return binary.BigEndian.Uint32(in), keys
}

func TestPRAccessMatrix(t *testing.T) {
	// For each type: can a registered / unregistered second initiator read
	// and write while the first holds the reservation (SPC-4 table 42).
	tests := []struct {
		name                           string
		typ                            byte
		regRead, regWrite, unRead, unW bool
	}{
		{"write exclusive", scsi.PRWriteExclusive, true, false, true, false},
		{"exclusive access", scsi.PRExclusiveAccess, false, false, false, false},
		{"write exclusive registrants only", scsi.PRWriteExclusiveRegOnly, true, true, true, false},
		{"exclusive access registrants only", scsi.PRExclusiveAccessRegOnly, true, true, false, false},
		{"write exclusive all registrants", scsi.PRWriteExclusiveAllReg, true, true, true, false},
		{"exclusive access all registrants", scsi.PRExclusiveAccessAllReg, true, true, false, false},
	}
	access := func(h *harness, n scsi.Nexus, read, write bool) {
		h.t.Helper()
		exp := func(ok bool) want {
			if ok {
				return good
			}
			return conflict
		}
		st, sense, _ := h.exec(n, cdb10(0x28, 0, 0, 1), nil, 512)
		h.check("read", st, sense, exp(read))
		st, sense, _ = h.exec(n, cdb10(0x2a, 0, 0, 1), fill(512, 1), 0)
		h.check("write", st, sense, exp(write))
		st, sense, _ = h.exec(n, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
		h.check("tur", st, sense, good)
		st, sense, _ = h.exec(n, inquiryCDB(false, 0, 96), nil, 96)
		h.check("inquiry", st, sense, good)
		st, sense, _ = h.exec(n, cdb10(0x25, 0, 0, 0), nil, 8)
		h.check("read capacity", st, sense, good)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, scsi.DiskOptions{})
			h.prout(nexusA, 6, 0, 0, 0xa, good)
			h.prout(nexusB, 6, 0, 0, 0xb, good)
			h.prout(nexusA, 1, tt.typ, 0xa, 0, good)
			st, sense, in := h.exec(nexusA, prinCDB(1, 64), nil, 64)
			h.check("read reservation", st, sense, good)
			wantKey := uint64(0xa)
			if tt.typ == scsi.PRWriteExclusiveAllReg || tt.typ == scsi.PRExclusiveAccessAllReg {
				wantKey = 0
			}
			if binary.BigEndian.Uint32(in[4:]) != 16 || binary.BigEndian.Uint64(in[8:]) != wantKey || in[21]&0x0f != tt.typ {
				t.Fatalf("READ RESERVATION %x", in)
			}
			access(h, nexusA, true, true)
			access(h, nexusB, tt.regRead, tt.regWrite)
			h.prout(nexusB, 0, 0, 0xb, 0, good) // unregister
			access(h, nexusB, tt.unRead, tt.unW)
			h.prout(nexusA, 2, tt.typ, 0xa, 0, good)
			access(h, nexusB, true, true)
			h.prout(nexusA, 0, 0, 0xa, 0, good)
		})
	}
}

func TestPRRegister(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	gen0, _ := h.readKeys(nexusA)
	tests := []struct {
		name      string
		n         scsi.Nexus
		sa        byte
		key, sak  uint64
		want      want
		keys      []uint64
		genChange uint32
	}{
		{"unregistered with key", nexusA, 0, 5, 0xa, conflict, nil, 0},
		{"unregister nothing", nexusA, 0, 0, 0, good, nil, 0},
		{"register", nexusA, 0, 0, 0xa, good, []uint64{0xa}, 1},
		{"register again wrong key", nexusA, 0, 0, 0xa, conflict, []uint64{0xa}, 1},
		{"change key", nexusA, 0, 0xa, 0xaa, good, []uint64{0xaa}, 2},
		{"register b ignore", nexusB, 6, 77, 0xb, good, []uint64{0xaa, 0xb}, 3},
		{"ignore existing", nexusB, 6, 77, 0xbb, good, []uint64{0xaa, 0xbb}, 4},
		{"unregister a", nexusA, 0, 0xaa, 0, good, []uint64{0xbb}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.sub(t)
			h.prout(tt.n, tt.sa, 0, tt.key, tt.sak, tt.want)
			gen, keys := h.readKeys(nexusA)
			if gen != gen0+tt.genChange || len(keys) != len(tt.keys) {
				t.Fatalf("generation %d keys %x, want +%d %x", gen, keys, tt.genChange, tt.keys)
			}
			for i := range keys {
				if keys[i] != tt.keys[i] {
					t.Fatalf("keys %x, want %x", keys, tt.keys)
				}
			}
		})
	}
}

func TestPRErrors(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	h.prout(nexusA, 0, 0, 0, 0xa, good)
	for _, tt := range []struct {
		name   string
		cdb    []byte
		params []byte
		want   want
	}{
		{"bad type", proutCDB(1, 0x02), proutParams(0xa, 0, 0), badField},
		{"bad scope", proutCDB(1, 0x11), proutParams(0xa, 0, 0), badField},
		{"register and move", proutCDB(7, 0), proutParams(0xa, 0, 0), badField},
		{"bad service action", proutCDB(0x1f, 0), proutParams(0xa, 0, 0), badField},
		{"param length", []byte{0x5f, 0, 0, 0, 0, 0, 0, 0, 20, 0}, proutParams(0xa, 0, 0)[:20], badParamLen},
		{"short data", proutCDB(0, 0), proutParams(0xa, 0, 0)[:10], badParamLen},
		{"spec_i_pt", proutCDB(0, 0), proutParams(0xa, 0xc, 0x08), badParam},
		{"reserve wrong key", proutCDB(1, 1), proutParams(0xb, 0, 0), conflict},
		{"prin bad sa", prinCDB(4, 64), nil, badField},
	} {
		t.Run(tt.name, func(t *testing.T) { h.sub(t).do(tt.name, tt.cdb, tt.params, 64, tt.want) })
	}
	h.prout(nexusA, 1, scsi.PRWriteExclusive, 0xa, 0, good)
	h.prout(nexusA, 1, scsi.PRWriteExclusive, 0xa, 0, good) // same type again
	h.prout(nexusA, 1, scsi.PRExclusiveAccess, 0xa, 0, conflict)
	h.prout(nexusA, 2, scsi.PRExclusiveAccess, 0xa, 0, want{scsi.StatusCheckCondition, scsi.SenseIllegalRequest, 0x2604})
	h.prout(nexusB, 6, 0, 0, 0xb, good)
	h.prout(nexusB, 1, scsi.PRWriteExclusive, 0xb, 0, conflict)
	h.prout(nexusB, 2, scsi.PRWriteExclusive, 0xb, 0, good) // not the holder: no effect
	if pr := h.d.PR(); !pr.Reserved || pr.Registrations[pr.Holder].Key != 0xa {
		t.Fatalf("reservation lost: %+v", pr)
	}
}

func TestPRPreemptAndClear(t *testing.T) {
	t.Run("remove registration without reservation", func(t *testing.T) {
		h := newHarness(t, scsi.DiskOptions{})
		h.prout(nexusA, 6, 0, 0, 0xa, good)
		h.prout(nexusB, 6, 0, 0, 0xb, good)
		gen, _ := h.readKeys(nexusA)
		h.prout(nexusB, 4, scsi.PRExclusiveAccess, 0xb, 0xa, good)
		st, sense, _ := h.exec(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
		h.check("preempted UA", st, sense, ua(scsi.ASCRegistrationsPreempted))
		gen2, keys := h.readKeys(nexusA)
		if gen2 != gen+1 || len(keys) != 1 || keys[0] != 0xb {
			t.Fatalf("after preempt gen %d keys %x", gen2-gen, keys)
		}
		h.prout(nexusB, 4, scsi.PRExclusiveAccess, 0xb, 0x99, conflict)
		h.prout(nexusB, 4, scsi.PRExclusiveAccess, 0xb, 0, badParam)
	})
	t.Run("take over reservation", func(t *testing.T) {
		h := newHarness(t, scsi.DiskOptions{})
		h.prout(nexusA, 6, 0, 0, 0xa, good)
		h.prout(nexusB, 6, 0, 0, 0xb, good)
		h.prout(nexusA, 1, scsi.PRExclusiveAccess, 0xa, 0, good)
		h.prout(nexusB, 5, scsi.PRWriteExclusive, 0xb, 0xa, good)
		pr := h.d.PR()
		if !pr.Reserved || pr.Type != scsi.PRWriteExclusive || pr.Registrations[pr.Holder].Key != 0xb || len(pr.Registrations) != 1 {
			t.Fatalf("after preempt: %+v", pr)
		}
		st, sense, _ := h.exec(nexusA, cdb10(0x28, 0, 0, 1), nil, 512)
		h.check("preempted UA", st, sense, ua(scsi.ASCRegistrationsPreempted))
		st, sense, _ = h.exec(nexusA, cdb10(0x28, 0, 0, 1), nil, 512)
		h.check("read under WE", st, sense, good)
	})
	t.Run("all registrants with zero key", func(t *testing.T) {
		h := newHarness(t, scsi.DiskOptions{})
		h.prout(nexusA, 6, 0, 0, 0xa, good)
		h.prout(nexusB, 6, 0, 0, 0xb, good)
		h.prout(nexusA, 1, scsi.PRExclusiveAccessAllReg, 0xa, 0, good)
		h.prout(nexusB, 4, scsi.PRExclusiveAccess, 0xb, 0, good)
		pr := h.d.PR()
		if !pr.Reserved || pr.Type != scsi.PRExclusiveAccess || len(pr.Registrations) != 1 || pr.Registrations[0].Key != 0xb {
			t.Fatalf("after preempt: %+v", pr)
		}
	})
	t.Run("clear", func(t *testing.T) {
		h := newHarness(t, scsi.DiskOptions{})
		h.prout(nexusA, 6, 0, 0, 0xa, good)
		h.prout(nexusB, 6, 0, 0, 0xb, good)
		h.prout(nexusA, 1, scsi.PRWriteExclusiveRegOnly, 0xa, 0, good)
		h.prout(nexusB, 3, 0, 0xa, 0, conflict)
		h.prout(nexusB, 3, 0, 0xb, 0, good)
		if pr := h.d.PR(); pr.Reserved || len(pr.Registrations) != 0 {
			t.Fatalf("after clear: %+v", pr)
		}
		st, sense, _ := h.exec(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
		h.check("cleared UA", st, sense, ua(scsi.ASCReservationsPreempted))
	})
	t.Run("release registrants only tells others", func(t *testing.T) {
		h := newHarness(t, scsi.DiskOptions{})
		h.prout(nexusA, 6, 0, 0, 0xa, good)
		h.prout(nexusB, 6, 0, 0, 0xb, good)
		h.prout(nexusA, 1, scsi.PRWriteExclusiveRegOnly, 0xa, 0, good)
		h.prout(nexusA, 2, scsi.PRWriteExclusiveRegOnly, 0xa, 0, good)
		st, sense, _ := h.exec(nexusB, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
		h.check("released UA", st, sense, ua(scsi.ASCReservationsReleased))
	})
}

func TestPRIn(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	caps := h.do("report capabilities", prinCDB(2, 8), nil, 8, good)
	if binary.BigEndian.Uint16(caps) != 8 || caps[4] != 0xea || caps[5] != 0x01 || caps[3]&0x70 > 0x50 {
		t.Fatalf("REPORT CAPABILITIES %x", caps)
	}
	res := h.do("no reservation", prinCDB(1, 64), nil, 64, good)
	if len(res) != 8 || binary.BigEndian.Uint32(res[4:]) != 0 {
		t.Fatalf("READ RESERVATION without one: %x", res)
	}
	st, sense, _ := h.exec(nexusA, proutCDB(0, 0), proutParams(0, 0xa, 0x04), 0) // ALL_TG_PT
	h.check("register all tg pt", st, sense, good)
	h.prout(nexusB, 6, 0, 0, 0xb, good)
	h.prout(nexusB, 1, scsi.PRExclusiveAccess, 0xb, 0, good)
	full := h.do("full status", prinCDB(3, 1024), nil, 1024, good)
	if int(binary.BigEndian.Uint32(full[4:]))+8 != len(full) {
		t.Fatalf("additional length %d for %d bytes", binary.BigEndian.Uint32(full[4:]), len(full))
	}
	var holders, allTg int
	for off := 8; off < len(full); {
		d := full[off:]
		if d[12]&1 != 0 {
			holders++
			if binary.BigEndian.Uint64(d) != 0xb || d[13] != scsi.PRExclusiveAccess {
				t.Fatalf("holder descriptor %x", d[:24])
			}
		}
		if d[12]&2 != 0 {
			allTg++
		}
		tidLen := int(binary.BigEndian.Uint32(d[20:]))
		if d[24] != 0x45 || tidLen%4 != 0 {
			t.Fatalf("TransportID %x", d[24:24+tidLen])
		}
		off += 24 + tidLen
	}
	if holders != 1 || allTg != 1 {
		t.Fatalf("%d holders, %d ALL_TG_PT registrations", holders, allTg)
	}
	// Truncation keeps the header.
	if k := h.do("truncated keys", prinCDB(0, 12), nil, 12, good); len(k) != 12 || binary.BigEndian.Uint32(k[4:]) != 16 {
		t.Fatalf("truncated READ KEYS %x", k)
	}
}

type memPRStore struct {
	saved []scsi.PRState
	err   error
}

func (m *memPRStore) SavePR(s scsi.PRState) error {
	m.saved = append(m.saved, s)
	return m.err
}

func TestPRPersistence(t *testing.T) {
	store := &memPRStore{}
	h := newHarness(t, scsi.DiskOptions{PR: store})
	h.prout(nexusA, 6, 0, 0, 0xa, good)
	if len(store.saved) != 0 {
		t.Fatal("saved without APTPL")
	}
	st, sense, _ := h.exec(nexusA, proutCDB(0, 0), proutParams(0xa, 0xa, 0x01), 0)
	h.check("register aptpl", st, sense, good)
	h.prout(nexusA, 1, scsi.PRWriteExclusive, 0xa, 0, good)
	if len(store.saved) != 2 || !store.saved[1].APTPL || !store.saved[1].Reserved {
		t.Fatalf("saved %+v", store.saved)
	}
	caps := h.do("caps", prinCDB(2, 8), nil, 8, good)
	if caps[3]&1 == 0 {
		t.Fatal("PTPL_A not set")
	}
	// Restore into a new disk: the reservation is back.
	h2 := newHarness(t, scsi.DiskOptions{InitialPR: &store.saved[1]})
	st, sense, _ = h2.exec(nexusB, cdb10(0x2a, 0, 0, 1), fill(512, 0), 0)
	h2.check("restored reservation", st, sense, conflict)
	store.err = errors.New("disk full")
	h.prout(nexusA, 2, scsi.PRWriteExclusive, 0xa, 0, want{scsi.StatusCheckCondition, scsi.SenseHardwareError, scsi.ASCInternalTargetFailure})
}

func TestReserve6(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	reserve6, release6 := []byte{0x16, 0, 0, 0, 0, 0}, []byte{0x17, 0, 0, 0, 0, 0}
	reserve10 := []byte{0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	run := func(n scsi.Nexus, c []byte, w want) {
		t.Helper()
		st, sense, _ := h.exec(n, c, nil, 255)
		h.check("cmd", st, sense, w)
	}
	run(nexusA, reserve6, good)
	run(nexusA, reserve6, good)
	run(nexusB, reserve6, conflict)
	run(nexusB, reserve10, conflict)
	run(nexusB, release6, good) // no effect
	run(nexusB, []byte{0x1a, 0, 0x3f, 0, 255, 0}, conflict)
	run(nexusB, cdb10(0x28, 0, 0, 1), conflict)
	run(nexusB, inquiryCDB(false, 0, 96), good)
	run(nexusB, []byte{0x03, 0, 0, 0, 18, 0}, good)
	run(nexusB, prinCDB(0, 64), conflict)
	run(nexusA, cdb10(0x28, 0, 0, 1), good)
	run(nexusA, release6, good)
	run(nexusB, reserve10, good)
	h.d.Reset(scsi.ResetLogicalUnit, nexusA)
	h.clearUA(nexusA)
	h.clearUA(nexusB)
	run(nexusA, reserve6, good)
	h.d.NexusLost(nexusA)
	h.clearUA(nexusB)
	run(nexusB, reserve6, good)
	run(nexusB, release6, good)
	// Persistent reservations exclude SPC-2 reservations.
	h.clearUA(nexusA)
	h.prout(nexusA, 6, 0, 0, 0xa, good)
	run(nexusB, reserve6, conflict)
	run(nexusA, []byte{0x16, 1, 0, 0, 0, 0}, badField)
}
