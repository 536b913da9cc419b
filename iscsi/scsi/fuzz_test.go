package scsi_test

import (
	"context"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/iscsi/scsi/scsitest"
)

// FuzzDecodeCDB checks that DecodeCDB never panics and that what it
// accepts is consistent with the opcode's CDB length.
func FuzzDecodeCDB(f *testing.F) {
	f.Add([]byte{0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := scsi.DecodeCDB(raw)
		if err != nil {
			if st, sense := scsi.Status(err); st != scsi.StatusCheckCondition || len(sense) != scsi.FixedLen {
				t.Fatalf("decode error maps to %#x %x", st, sense)
			}
			return
		}
		if len(c.Raw) == 0 || len(c.Raw) > len(raw) || c.Opcode != raw[0] {
			t.Fatalf("decoded %d of %d bytes, opcode %#x", len(c.Raw), len(raw), c.Opcode)
		}
		if n := scsi.CDBLen(c.Opcode); c.Opcode != 0x7f && len(c.Raw) != n {
			t.Fatalf("opcode %#x: %d bytes, CDBLen %d", c.Opcode, len(c.Raw), n)
		}
		if c.Control != c.Raw[len(c.Raw)-1] && c.Opcode != 0x7f {
			t.Fatalf("control byte %#x", c.Control)
		}
		if len(c.Raw) == 6 && (c.LBA >= 1<<21 || c.Length > 255) {
			t.Fatalf("6-byte CDB decoded to LBA %d length %d", c.LBA, c.Length)
		}
	})
}

var fuzzNexusB = scsi.Nexus{InitiatorName: "iqn.fuzz:b", ISID: [6]byte{2}}

// FuzzDiskExecute runs arbitrary CDBs with arbitrary data-out through a
// small thin-provisioned disk: a command from nexus A, a second one from
// nexus B, then the first again from B. Execute must never panic, never
// claim more data-in than the buffer holds, and every error must map to a
// well-formed status.
func FuzzDiskExecute(f *testing.F) {
	f.Add([]byte{0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0}, make([]byte, 512), uint16(0), []byte{0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, cdb, out []byte, inLen uint16, second []byte) {
		dev := scsitest.NewMemDevice(64 * 512)
		d, err := scsi.NewDisk(dev, scsi.DiskOptions{MaxTransferBlocks: 32, MaxWriteSameBlocks: 48})
		if err != nil {
			t.Fatal(err)
		}
		nexusA := scsi.Nexus{InitiatorName: "iqn.fuzz:a", ISID: [6]byte{1}}
		run := func(n scsi.Nexus, c []byte) {
			cmd := &scsi.Command{Nexus: n, CDB: c, DataOut: out, DataIn: make([]byte, inLen)}
			k, err := d.Execute(context.Background(), cmd)
			if k < 0 || k > len(cmd.DataIn) {
				t.Fatalf("CDB %x: %d bytes of data-in for a %d-byte buffer", c, k, inLen)
			}
			st, sense := scsi.Status(err)
			switch st {
			case scsi.StatusGood:
			case scsi.StatusReservationConflict:
			case scsi.StatusCheckCondition:
				if len(sense) != scsi.FixedLen || sense[0]&0x7f != 0x70 {
					t.Fatalf("CDB %x: bad sense %x", c, sense)
				}
				if sense[2]&0x0f == scsi.SenseHardwareError {
					t.Fatalf("CDB %x: internal error %v", c, err)
				}
			default:
				t.Fatalf("CDB %x: unexpected status %#x", c, st)
			}
		}
		run(nexusA, cdb)
		run(fuzzNexusB, second)
		run(fuzzNexusB, cdb)
		d.Reset(scsi.ResetLogicalUnit, nexusA)
		d.NexusLost(fuzzNexusB)
		run(nexusA, cdb)
	})
}
