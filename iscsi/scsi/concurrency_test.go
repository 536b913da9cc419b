package scsi_test

import (
	"context"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// TestConcurrentMix runs a mix of I/O, reservation, mode and inquiry
// commands from two nexuses while resets, nexus losses and resizes happen,
// to let the race detector look at every piece of shared state.
func TestConcurrentMix(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	blk := fill(512, 3)
	ms := h.do("mode sense", []byte{0x1a, 0x08, 0x08, 0, 255, 0}, nil, 255, good)
	modeParams := append([]byte{0, 0, 0, 0}, ms[4:]...)
	cmds := []struct {
		cdb []byte
		out []byte
		in  int
	}{
		{cdb10(0x28, 0, 0, 4), nil, 2048},
		{cdb10(0x2a, 0, 2, 4), fill(2048, 1), 0},
		{cdb16(0x88, 0, 4000, 8), nil, 4096},
		{cawCDB(1, 1, 0), append(fill(512, 0), blk...), 0},
		{cdb16(0x93, 0x08, 8, 16), fill(512, 0), 0},
		{unmapCDB(24), unmapParams([2]uint64{32, 8}), 0},
		{cdb16(0x9e, 0x12, 0, 64), nil, 64},
		{proutCDB(6, 0), proutParams(0, 0x77, 0), 0},
		{proutCDB(1, scsi.PRWriteExclusive), proutParams(0x77, 0, 0), 0},
		{proutCDB(2, scsi.PRWriteExclusive), proutParams(0x77, 0, 0), 0},
		{prinCDB(3, 512), nil, 512},
		{[]byte{0x16, 0, 0, 0, 0, 0}, nil, 0},
		{[]byte{0x17, 0, 0, 0, 0, 0}, nil, 0},
		{[]byte{0x1a, 0, 0x3f, 0, 255, 0}, nil, 255},
		{[]byte{0x15, 0x10, 0, 0, byte(len(modeParams)), 0}, modeParams, 0},
		{inquiryCDB(true, 0x83, 255), nil, 255},
		{rsocCDB(0x80, 0, 0, 4096), nil, 4096},
		{[]byte{0x03, 0, 0, 0, 18, 0}, nil, 18},
		{cdb10(0x35, 0, 0, 0), nil, 0},
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		n := nexusA
		if w%2 == 1 {
			n = nexusB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				c := cmds[(i*7+w)%len(cmds)]
				cmd := &scsi.Command{Nexus: n, CDB: c.cdb, DataOut: c.out, DataIn: make([]byte, c.in)}
				k, err := h.d.Execute(ctx, cmd)
				st, sense := scsi.Status(err)
				if k > c.in || st == scsi.StatusCheckCondition && sense[2]&0x0f == scsi.SenseHardwareError {
					t.Errorf("CDB %x: %d bytes, status %#x %x", c.cdb, k, st, sense)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			switch i % 4 {
			case 0:
				h.d.Reset(scsi.ResetLogicalUnit, nexusA)
			case 1:
				h.d.NexusLost(nexusB)
			case 2:
				h.d.Resize(int64(testBlocks+i) * 512)
			case 3:
				_ = h.d.PR()
			}
		}
	}()
	wg.Wait()
}
