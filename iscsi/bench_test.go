package iscsi

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
)

// rawSession logs in by hand and then drives the connection with
// pre-encoded PDUs, so the only allocations left are the server's.
type rawSession struct {
	nc      net.Conn
	cmdSN   uint32
	expStat uint32
	hdr     [48]byte
	buf     []byte
}

func rawLogin(t testing.TB, addr string) *rawSession {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &iscsitest.PDU{}
	p.BHS[0] = 0x43
	p.BHS[1] = 0x87 // T, CSG 1, NSG 3
	p.BHS[8] = 0x80
	p.SetU32(16, 1)
	p.SetU32(24, 1)
	p.Data = iscsitest.EncodeText("InitiatorName", "iqn.2026-11.io.sluicegw:raw", "TargetName", testTarget,
		"SessionType", "Normal", "MaxRecvDataSegmentLength", "262144", "ImmediateData", "Yes",
		"InitialR2T", "No", "FirstBurstLength", "262144", "MaxBurstLength", "1048576")
	if _, err := nc.Write(p.Encode(false, false)); err != nil {
		t.Fatal(err)
	}
	r, err := iscsitest.ReadPDU(nc, false, false)
	if err != nil || r.BHS[36] != 0 || r.BHS[1]&0x83 != 0x83 {
		t.Fatalf("raw login: %v %v", err, r)
	}
	return &rawSession{nc: nc, cmdSN: r.U32(28), expStat: r.U32(24) + 1, buf: make([]byte, 1<<20)}
}

// do sends pdu (a pre-encoded SCSI command whose ITT/CmdSN are patched in
// place) and reads PDUs until the status arrives.
func (s *rawSession) do(t testing.TB, pdu []byte) byte {
	binary.BigEndian.PutUint32(pdu[16:], s.cmdSN)
	binary.BigEndian.PutUint32(pdu[24:], s.cmdSN)
	binary.BigEndian.PutUint32(pdu[28:], s.expStat)
	s.cmdSN++
	if _, err := s.nc.Write(pdu); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := io.ReadFull(s.nc, s.hdr[:]); err != nil {
			t.Fatal(err)
		}
		n := int(s.hdr[5])<<16 | int(s.hdr[6])<<8 | int(s.hdr[7])
		if _, err := io.ReadFull(s.nc, s.buf[:(n+3)&^3]); err != nil {
			t.Fatal(err)
		}
		op := s.hdr[0] & 0x3f
		if op == 0x21 || (op == 0x25 && s.hdr[1]&1 != 0) {
			s.expStat = binary.BigEndian.Uint32(s.hdr[24:]) + 1
			return s.hdr[3]
		}
	}
}

func commandPDU(cdb []byte, read bool, n int, data []byte) []byte {
	p := &iscsitest.PDU{}
	p.BHS[0] = 0x01
	p.BHS[1] = 0x81
	if read {
		p.BHS[1] |= 0x40
	} else if n > 0 {
		p.BHS[1] |= 0x20
	}
	p.SetU32(20, uint32(n))
	copy(p.BHS[32:], cdb)
	p.Data = data
	return p.Encode(false, false)
}

// TestDataPathAllocs checks that steady-state reads and writes allocate
// nothing in the server (buffers, tasks and PDUs are pooled). Under the
// race detector sync.Pool drops items on purpose, so the count is only
// logged there.
func TestDataPathAllocs(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: Config{NopInterval: -1}})
	s := rawLogin(t, ts.addr)
	defer s.nc.Close()
	s.do(t, commandPDU([]byte{0, 0, 0, 0, 0, 0}, false, 0, nil)) // unit attention
	rd := commandPDU(read10(0, 256), true, 128<<10, nil)
	wr := commandPDU(write10(0, 256), false, 128<<10, make([]byte, 128<<10))
	small := commandPDU(read10(8, 8), true, 4096, nil)
	for range 200 {
		s.do(t, rd)
		s.do(t, wr)
		s.do(t, small)
	}
	const n = 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if st := s.do(t, rd); st != 0 {
			t.Fatalf("read status %#x", st)
		}
		if st := s.do(t, wr); st != 0 {
			t.Fatalf("write status %#x", st)
		}
		s.do(t, small)
	}
	runtime.ReadMemStats(&after)
	perOp := float64(after.Mallocs-before.Mallocs) / (3 * n)
	t.Logf("%.3f allocations per command", perOp)
	if perOp > 0.5 && !raceEnabled {
		t.Fatalf("%.2f allocations per command in steady state, want ~0", perOp)
	}
}

// benchmarkIO runs QD-deep streams of one command over loopback.
func benchmarkIO(b *testing.B, write bool, size int, qd int) {
	ts := startServer(b, serverOpts{size: 256 << 20, cfg: Config{NopInterval: -1}})
	c := ts.login(b, iscsitest.Options{})
	defer c.Logout(context.Background())
	blocks := uint16(size / 512)
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	var wg sync.WaitGroup
	ops := make(chan int, qd)
	go func() {
		for i := range b.N {
			ops <- i
		}
		close(ops)
	}()
	start := time.Now()
	for range qd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range ops {
				lba := uint32(i*int(blocks)) % (256 << 20 / 512)
				var err error
				var r *iscsitest.Response
				if write {
					r, err = c.Command(ctx, 0, write10(lba, blocks), data, 0)
				} else {
					r, err = c.Command(ctx, 0, read10(lba, blocks), nil, size)
				}
				if err != nil || r.Status != 0 {
					b.Error(err, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "IOPS")
}

func BenchmarkRead128KQD32(b *testing.B)  { benchmarkIO(b, false, 128<<10, 32) }
func BenchmarkWrite128KQD32(b *testing.B) { benchmarkIO(b, true, 128<<10, 32) }
func BenchmarkRead4KQD32(b *testing.B)    { benchmarkIO(b, false, 4<<10, 32) }
func BenchmarkWrite4KQD32(b *testing.B)   { benchmarkIO(b, true, 4<<10, 32) }
