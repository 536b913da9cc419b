package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

func inquiryCDB(evpd bool, page byte, alloc uint16) []byte {
	c := []byte{0x12, 0, page, 0, 0, 0}
	if evpd {
		c[1] = 1
	}
	binary.BigEndian.PutUint16(c[3:], alloc)
	return c
}

func TestInquiryStandard(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{Vendor: "ACME", Product: "ROADRUNNER", Revision: "7"})
	in := h.do("std", inquiryCDB(false, 0, 255), nil, 255, good)
	if len(in) != 96 || in[0] != 0 || in[2] != 6 || in[3] != 0x12 || int(in[4]) != len(in)-5 || in[7]&0x02 == 0 {
		t.Fatalf("standard inquiry header %x", in[:8])
	}
	if string(in[8:16]) != "ACME    " || string(in[16:32]) != "ROADRUNNER      " || string(in[32:36]) != "7   " {
		t.Fatalf("identification %q", in[8:36])
	}
	versions := map[uint16]bool{}
	for i := 58; i < 74; i += 2 {
		versions[binary.BigEndian.Uint16(in[i:])] = true
	}
	if !versions[scsi.VersionSPC4] || !versions[scsi.VersionSBC3] {
		t.Fatal("SPC-4/SBC-3 version descriptors missing")
	}
	for alloc := 0; alloc < 100; alloc += 7 {
		got := h.do("alloc", inquiryCDB(false, 0, uint16(alloc)), nil, 512, good)
		if !bytes.Equal(got, in[:min(alloc, 96)]) {
			t.Fatalf("alloc %d: %d bytes", alloc, len(got))
		}
	}
	h.do("page without evpd", inquiryCDB(false, 0x80, 255), nil, 255, badField)
	h.do("cmddt", []byte{0x12, 0x02, 0, 0, 255, 0}, nil, 255, badField)
}

func TestInquiryVPD(t *testing.T) {
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	h := newHarness(t, scsi.DiskOptions{ID: id, Serial: "SER123", MaxTransferBlocks: 256})
	sup := h.do("supported", inquiryCDB(true, 0, 255), nil, 255, good)
	if sup[1] != 0 || int(binary.BigEndian.Uint16(sup[2:])) != len(sup)-4 {
		t.Fatalf("supported pages header %x", sup[:4])
	}
	pages := sup[4:]
	for i, p := range pages {
		if i > 0 && p <= pages[i-1] {
			t.Fatalf("pages not ascending: %x", pages)
		}
		in := h.do("page", inquiryCDB(true, p, 512), nil, 512, good)
		if in[1] != p || int(binary.BigEndian.Uint16(in[2:])) != len(in)-4 {
			t.Fatalf("page %#x header %x len %d", p, in[:4], len(in))
		}
	}
	for _, want := range []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2} {
		if !bytes.Contains(pages, []byte{want}) {
			t.Fatalf("page %#x not supported", want)
		}
	}
	if sn := h.do("serial", inquiryCDB(true, 0x80, 255), nil, 255, good); string(sn[4:]) != "SER123" {
		t.Fatalf("serial %q", sn[4:])
	}
	di := h.do("devid", inquiryCDB(true, 0x83, 255), nil, 255, good)
	types := map[byte][]byte{}
	for off := 4; off+4 <= len(di); {
		l := int(di[off+3])
		types[di[off+1]&0x0f] = di[off+4 : off+4+l]
		off += 4 + l
	}
	naa := types[3]
	if len(naa) != 16 || naa[0]>>4 != 6 {
		t.Fatalf("NAA designator %x", naa)
	}
	if string(types[1][:8]) != "SLUICE  " {
		t.Fatalf("T10 designator %q", types[1])
	}
	if rel := types[4]; len(rel) != 4 || rel[3] != 1 {
		t.Fatalf("relative port designator %x", rel)
	}
	if name := types[8]; len(name)%4 != 0 || string(bytes.TrimRight(name, "\x00")) != nexusA.TargetName {
		t.Fatalf("target name designator %q", name)
	}
	other := newHarness(t, scsi.DiskOptions{ID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17}})
	di2 := other.do("devid", inquiryCDB(true, 0x83, 255), nil, 255, good)
	if bytes.Equal(di[8:24], di2[8:24]) {
		t.Fatal("different IDs give the same NAA designator")
	}
	bl := h.do("block limits", inquiryCDB(true, 0xb0, 255), nil, 255, good)
	if len(bl) != 64 || binary.BigEndian.Uint32(bl[8:]) != 256 || bl[5] != 255 ||
		binary.BigEndian.Uint32(bl[20:]) == 0 || binary.BigEndian.Uint32(bl[24:]) == 0 || binary.BigEndian.Uint64(bl[36:]) == 0 {
		t.Fatalf("block limits %x", bl)
	}
	bdc := h.do("characteristics", inquiryCDB(true, 0xb1, 255), nil, 255, good)
	if binary.BigEndian.Uint16(bdc[4:]) != 1 {
		t.Fatal("not reported as non-rotating")
	}
	lbp := h.do("provisioning", inquiryCDB(true, 0xb2, 255), nil, 255, good)
	if lbp[5]&0xe4 != 0xe4 || lbp[6]&0x07 != 2 {
		t.Fatalf("LBP page %x", lbp)
	}
	h.do("unknown page", inquiryCDB(true, 0x99, 255), nil, 255, badField)
	if got := h.do("truncated", inquiryCDB(true, 0x83, 10), nil, 255, good); !bytes.Equal(got, di[:10]) {
		t.Fatal("VPD allocation length not honoured")
	}
}

func TestRequestSense(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	n := scsi.Nexus{InitiatorName: "iqn.fresh"}
	st, sense, in := h.exec(n, []byte{0x03, 0, 0, 0, 252, 0}, nil, 252)
	h.check("request sense", st, sense, good)
	if len(in) != 18 || in[0] != 0x70 || in[2] != scsi.SenseUnitAttention || in[12] != 0x29 {
		t.Fatalf("power-on sense %x", in)
	}
	st, sense, in = h.exec(n, []byte{0x03, 1, 0, 0, 252, 0}, nil, 252)
	h.check("request sense desc", st, sense, good)
	if len(in) != 8 || in[0] != 0x72 || in[1] != 0 {
		t.Fatalf("descriptor no-sense %x", in)
	}
	st, sense, in = h.exec(n, []byte{0x03, 0, 0, 0, 4, 0}, nil, 252)
	h.check("request sense short", st, sense, good)
	if len(in) != 4 {
		t.Fatalf("allocation length ignored: %d", len(in))
	}
	h.do("reserved bits", []byte{0x03, 0x02, 0, 0, 18, 0}, nil, 18, badField)
}

func TestUnitAttentions(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	tur := []byte{0, 0, 0, 0, 0, 0}
	h.d.Reset(scsi.ResetLogicalUnit, nexusA)
	h.do("issuer told too", tur, nil, 0, ua(scsi.ASCBusDeviceResetOccurred))
	st, sense, _ := h.exec(nexusB, inquiryCDB(false, 0, 96), nil, 96)
	h.check("inquiry not blocked", st, sense, good)
	st, sense, _ = h.exec(nexusB, tur, nil, 0)
	h.check("reset UA", st, sense, ua(scsi.ASCBusDeviceResetOccurred))
	h.clearUA(nexusB)

	h.dev.Resize(4096 * 512)
	h.d.Resize(4096 * 512)
	h.do("capacity UA", cdb10(0x25, 0, 0, 0), nil, 8, ua(scsi.ASCCapacityDataChanged))
	in := h.do("new capacity", cdb10(0x25, 0, 0, 0), nil, 8, good)
	if binary.BigEndian.Uint32(in) != 4095 {
		t.Fatalf("capacity %d after resize", binary.BigEndian.Uint32(in))
	}
	h.d.NexusLost(nexusB)
	st, sense, _ = h.exec(nexusB, tur, nil, 0)
	h.check("new nexus after loss", st, sense, ua(scsi.ASCPowerOnResetOccurred))
}

func TestModeSense(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	tests := []struct {
		name     string
		cdb      []byte
		want     want
		hdr      int
		desc     int
		pageCode byte
	}{
		{"6 all", []byte{0x1a, 0, 0x3f, 0, 255, 0}, good, 4, 8, 0},
		{"6 all dbd", []byte{0x1a, 0x08, 0x3f, 0, 255, 0}, good, 4, 0, 0},
		{"6 caching", []byte{0x1a, 0x08, 0x08, 0, 255, 0}, good, 4, 0, 0x08},
		{"6 control", []byte{0x1a, 0x08, 0x0a, 0, 255, 0}, good, 4, 0, 0x0a},
		{"6 ie changeable", []byte{0x1a, 0x08, 0x5c, 0, 255, 0}, good, 4, 0, 0x1c},
		{"6 default", []byte{0x1a, 0x08, 0x88, 0, 255, 0}, good, 4, 0, 0x08},
		{"6 saved", []byte{0x1a, 0x08, 0xc8, 0, 255, 0}, good, 4, 0, 0x08},
		{"6 all subpages", []byte{0x1a, 0x08, 0x3f, 0xff, 255, 0}, good, 4, 0, 0},
		{"10 all", []byte{0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0}, good, 8, 8, 0},
		{"10 llbaa", []byte{0x5a, 0x10, 0x3f, 0, 0, 0, 0, 1, 0, 0}, good, 8, 16, 0},
		{"unknown page", []byte{0x1a, 0, 0x2e, 0, 255, 0}, badField, 0, 0, 0},
		{"unknown subpage", []byte{0x1a, 0, 0x08, 0x05, 255, 0}, badField, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.sub(t)
			in := h.do(tt.name, tt.cdb, nil, 256, tt.want)
			if tt.want != good {
				return
			}
			var mdl, bdl int
			if tt.hdr == 4 {
				mdl, bdl = int(in[0])+1, int(in[3])
			} else {
				mdl, bdl = int(binary.BigEndian.Uint16(in))+2, int(binary.BigEndian.Uint16(in[6:]))
			}
			if mdl != len(in) || bdl != tt.desc {
				t.Fatalf("mode data length %d (got %d bytes), block descriptor length %d", mdl, len(in), bdl)
			}
			if in[3-boolInt(tt.hdr == 4)]&0x10 == 0 {
				t.Fatal("DPOFUA not set")
			}
			if tt.desc == 8 && binary.BigEndian.Uint32(in[tt.hdr:]) != testBlocks {
				t.Fatalf("block descriptor %x", in[tt.hdr:tt.hdr+8])
			}
			if tt.desc == 16 && binary.BigEndian.Uint64(in[tt.hdr:]) != testBlocks {
				t.Fatalf("long block descriptor %x", in[tt.hdr:tt.hdr+16])
			}
			if tt.pageCode != 0 && in[tt.hdr+tt.desc]&0x3f != tt.pageCode {
				t.Fatalf("page %#x returned", in[tt.hdr+tt.desc])
			}
		})
	}
	short := h.do("6 alloc 4", []byte{0x1a, 0, 0x3f, 0, 4, 0}, nil, 4, good)
	if len(short) != 4 {
		t.Fatalf("%d bytes with allocation length 4", len(short))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestModeSelect(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	ctl := h.do("control", []byte{0x1a, 0x08, 0x0a, 0, 255, 0}, nil, 255, good)
	page := append([]byte(nil), ctl[4:]...)
	sel6 := func(flags byte, params []byte) []byte { return []byte{0x15, flags, 0, 0, byte(len(params)), 0} }
	swp := append([]byte(nil), page...)
	swp[4] |= 0x08
	badPage := append([]byte(nil), page...)
	badPage[2] |= 0x04 // D_SENSE is not changeable
	desc := append([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0}, page...)
	wrongBS := append([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 16, 0}, page...)
	unknown := []byte{0, 0, 0, 0, 0x2e, 2, 0, 0}
	tests := []struct {
		name   string
		cdb    []byte
		params []byte
		want   want
	}{
		{"unchanged", nil, append([]byte{0, 0, 0, 0}, page...), good},
		{"with block descriptor", nil, desc, good},
		{"wrong block size", nil, wrongBS, badParam},
		{"unchangeable bit", nil, append([]byte{0, 0, 0, 0}, badPage...), badParam},
		{"unknown page", nil, unknown, badParam},
		{"wrong page length", nil, []byte{0, 0, 0, 0, 0x0a, 4, 0, 0, 0, 0}, badParam},
		{"truncated page", []byte{0x15, 0x10, 0, 0, 8, 0}, append([]byte{0, 0, 0, 0}, page[:4]...), badParamLen},
		{"short header", []byte{0x15, 0x10, 0, 0, 2, 0}, []byte{0, 0}, badParamLen},
		{"sp", []byte{0x15, 0x11, 0, 0, 0, 0}, nil, badField},
		{"empty", []byte{0x15, 0x10, 0, 0, 0, 0}, nil, good},
		{"10", []byte{0x55, 0x10, 0, 0, 0, 0, 0, 0, byte(8 + len(page)), 0}, append(make([]byte, 8), page...), good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cdb
			if c == nil {
				c = sel6(0x10, tt.params)
			}
			h.sub(t).do(tt.name, c, tt.params, 0, tt.want)
		})
	}
	// Software write protect through the control page.
	h.do("set swp", sel6(0x10, append([]byte{0, 0, 0, 0}, swp...)), append([]byte{0, 0, 0, 0}, swp...), 0, good)
	st, sense, _ := h.exec(nexusB, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	h.check("other nexus told", st, sense, ua(scsi.ASCModeParametersChanged))
	h.do("write protected", cdb10(0x2a, 0, 0, 1), fill(512, 1), 0, protected)
	h.do("read allowed", cdb10(0x28, 0, 0, 1), nil, 512, good)
	if ms := h.do("wp bit", []byte{0x1a, 0x08, 0x3f, 0, 255, 0}, nil, 255, good); ms[2]&0x80 == 0 {
		t.Fatal("WP not reported")
	}
	h.do("clear swp", sel6(0x10, append([]byte{0, 0, 0, 0}, page...)), append([]byte{0, 0, 0, 0}, page...), 0, good)
	h.do("write again", cdb10(0x2a, 0, 0, 1), fill(512, 1), 0, good)
}

func rsocCDB(opts byte, op byte, sa uint16, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1], c[2], c[3] = 0xa3, 0x0c, opts, op
	binary.BigEndian.PutUint16(c[4:], sa)
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

func TestReportSupportedOpcodes(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	all := h.do("all", rsocCDB(0, 0, 0, 65535), nil, 65535, good)
	if int(binary.BigEndian.Uint32(all))+4 != len(all) {
		t.Fatalf("command data length %d for %d bytes", binary.BigEndian.Uint32(all), len(all))
	}
	seen := 0
	for off := 4; off < len(all); off += 8 {
		d := all[off:]
		op, sa, servactv := d[0], binary.BigEndian.Uint16(d[2:]), d[5]&1 != 0
		cdbLen := int(binary.BigEndian.Uint16(d[6:]))
		if !servactv && sa != 0 {
			t.Fatalf("opcode %#x: service action without SERVACTV", op)
		}
		opts := byte(1)
		if servactv {
			opts = 2
		}
		one := h.do("one", rsocCDB(opts, op, sa, 512), nil, 512, good)
		if one[1]&7 != 3 || int(binary.BigEndian.Uint16(one[2:])) != cdbLen || one[4] != op {
			t.Fatalf("one command %#x/%#x: %x", op, sa, one)
		}
		wrong := byte(2)
		if servactv {
			wrong = 1
		}
		h.do("wrong format", rsocCDB(wrong, op, sa, 512), nil, 512, badField)
		seen++
	}
	if seen < 40 {
		t.Fatalf("only %d commands reported", seen)
	}
	rctd := h.do("rctd", rsocCDB(0x80, 0, 0, 65535), nil, 65535, good)
	if (len(rctd)-4)%20 != 0 || rctd[4+5]&0x02 == 0 {
		t.Fatal("RCTD descriptors malformed")
	}
	one := h.do("one rctd", rsocCDB(0x81, 0x28, 0, 512), nil, 512, good)
	if one[1]&0x80 == 0 || len(one) != 4+10+12 || one[5]&0x18 != 0x18 {
		t.Fatalf("READ(10) with RCTD: %x", one)
	}
	none := h.do("unsupported", rsocCDB(1, 0xc5, 0, 512), nil, 512, good)
	if none[1]&7 != 1 {
		t.Fatalf("unsupported opcode support %d", none[1]&7)
	}
	h.do("bad reporting options", rsocCDB(5, 0, 0, 512), nil, 512, badField)
	tmf := h.do("tmf", []byte{0xa3, 0x0d, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0}, nil, 4, good)
	if tmf[0]&0x80 == 0 {
		t.Fatal("ABORT TASK not reported")
	}
}

func TestReportLUNsAndNoSuchLU(t *testing.T) {
	buf := make([]byte, 64)
	n := scsi.ReportLUNsData([]uint64{0, 1, 300}, buf)
	want := []byte{0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("REPORT LUNS data %x", buf[:n])
	}
	if n := scsi.ReportLUNsData([]uint64{0, 1, 300}, buf[:12]); n != 12 || buf[3] != 24 {
		t.Fatal("truncated REPORT LUNS data")
	}
	for _, l := range []uint64{0, 5, 255, 256, 16383} {
		if got := scsi.DecodeLUN(scsi.EncodeLUN(l)); got != l {
			t.Fatalf("LUN %d round trips to %d", l, got)
		}
	}
	var u scsi.NoSuchLU
	ctx := context.Background()
	cmd := &scsi.Command{CDB: inquiryCDB(false, 0, 96), DataIn: make([]byte, 96)}
	k, err := u.Execute(ctx, cmd)
	if err != nil || k != 96 || cmd.DataIn[0] != 0x7f {
		t.Fatalf("NoSuchLU INQUIRY: %d %v %x", k, err, cmd.DataIn[:1])
	}
	cmd = &scsi.Command{CDB: []byte{0x03, 0, 0, 0, 18, 0}, DataIn: make([]byte, 18)}
	k, err = u.Execute(ctx, cmd)
	if err != nil || k != 18 || cmd.DataIn[2] != scsi.SenseIllegalRequest || cmd.DataIn[12] != 0x25 {
		t.Fatalf("NoSuchLU REQUEST SENSE: %d %v %x", k, err, cmd.DataIn)
	}
	for _, c := range [][]byte{{0, 0, 0, 0, 0, 0}, cdb10(0x28, 0, 0, 1), {0xff}} {
		_, err = u.Execute(ctx, &scsi.Command{CDB: c})
		st, sense := scsi.Status(err)
		if st != scsi.StatusCheckCondition || len(sense) < 14 || (sense[12] != 0x25 && c[0] != 0xff) {
			t.Fatalf("NoSuchLU %x: %#x %x", c, st, sense)
		}
	}
	h := newHarness(t, scsi.DiskOptions{})
	in := h.do("report luns", []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256, good)
	if len(in) != 16 || in[3] != 8 {
		t.Fatalf("disk REPORT LUNS %x", in)
	}
	h.do("report luns short alloc", []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}, nil, 8, badField)
}

func TestMiscCommands(t *testing.T) {
	h := newHarness(t, scsi.DiskOptions{})
	for _, tt := range []struct {
		name string
		cdb  []byte
		want want
	}{
		{"start", []byte{0x1b, 0, 0, 0, 1, 0}, good},
		{"stop", []byte{0x1b, 1, 0, 0, 0, 0}, good},
		{"prevent", []byte{0x1e, 0, 0, 0, 1, 0}, good},
		{"allow", []byte{0x1e, 0, 0, 0, 0, 0}, good},
		{"log sense supported pages", []byte{0x4d, 0, 0x40, 0, 0, 0, 0, 0, 64, 0}, good},
		{"log sense other page", []byte{0x4d, 0, 0x42, 0, 0, 0, 0, 0, 64, 0}, badField},
		{"read capacity pmi lba", []byte{0x25, 0, 0, 0, 0, 5, 0, 0, 0, 0}, badField},
		{"read capacity16 short alloc", cdb16(0x9e, 0x10, 0, 8), good},
	} {
		t.Run(tt.name, func(t *testing.T) { h.sub(t).do(tt.name, tt.cdb, nil, 64, tt.want) })
	}
	if in := h.do("rc16 alloc 8", cdb16(0x9e, 0x10, 0, 8), nil, 64, good); len(in) != 8 {
		t.Fatalf("READ CAPACITY(16) returned %d bytes for allocation length 8", len(in))
	}
}
