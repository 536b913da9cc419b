package vtl

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/iscsi/iscsitest"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// served is a library behind an in-process iSCSI server on loopback.
type served struct {
	lib  *Library
	srv  *iscsi.Server
	addr string
	done chan error
}

func serveLibrary(t testing.TB, cfg Config) *served {
	t.Helper()
	lib, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &served{lib: lib, srv: iscsi.NewServer(iscsi.Config{}), done: make(chan error, 1)}
	for _, tg := range lib.Targets() {
		if err := s.srv.AddTarget(tg); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go func() { s.done <- s.srv.Serve(ln) }()
	return s
}

func (s *served) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-s.done; !errors.Is(err, iscsi.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := s.lib.Close(ctx); err != nil {
		t.Errorf("close library: %v", err)
	}
}

func (s *served) login(t testing.TB, target string) *iscsitest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := iscsitest.Dial(ctx, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, iscsitest.Options{TargetName: target}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cmd runs one command and returns the response; unit attentions are
// cleared first.
func cmd(t testing.TB, c *iscsitest.Client, cdb, out []byte, in int) *iscsitest.Response {
	t.Helper()
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := c.Command(ctx, 0, cdb, out, in)
		cancel()
		if err != nil {
			t.Fatalf("command %#02x: %v", cdb[0], err)
		}
		if r.Status == scsi.StatusCheckCondition && len(r.Sense) >= 14 && r.Sense[2]&0x0f == scsi.SenseUnitAttention && try < 4 {
			continue
		}
		return r
	}
}

func good(t testing.TB, r *iscsitest.Response, what string) *iscsitest.Response {
	t.Helper()
	if r.Status != scsi.StatusGood {
		t.Fatalf("%s: status %#x sense % x", what, r.Status, r.Sense)
	}
	return r
}

func senseKey(r *iscsitest.Response) (byte, scsi.ASC) {
	if r.Status != scsi.StatusCheckCondition || len(r.Sense) < 14 {
		return 0xff, 0
	}
	return r.Sense[2] & 0x0f, scsi.ASC(r.Sense[12])<<8 | scsi.ASC(r.Sense[13])
}

// minioStore connects to a test MinIO.
func minioStore(t testing.TB, m *testenv.MinIO) objstore.Store {
	t.Helper()
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket, Credentials: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return s3
}

// elementStatus returns the barcodes by element address.
func elementStatus(t testing.TB, c *iscsitest.Client) map[uint16]string {
	t.Helper()
	cdb := []byte{0xb8, 0x10, 0, 0, 0xff, 0xff, 0x01, 0, 0x40, 0, 0, 0}
	r := good(t, cmd(t, c, cdb, nil, 0x4000), "READ ELEMENT STATUS")
	out := map[uint16]string{}
	b := r.Data[8:]
	for len(b) >= 8 {
		dl := int(binary.BigEndian.Uint16(b[2:]))
		n := int(b[5])<<16 | int(b[6])<<8 | int(b[7])
		page := b[8 : 8+n]
		for len(page) >= dl {
			d := page[:dl]
			if d[2]&0x01 != 0 {
				out[binary.BigEndian.Uint16(d)] = string(trimSpace(d[12:44]))
			}
			page = page[dl:]
		}
		b = b[8+n:]
	}
	return out
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

func TestEndToEndMinIO(t *testing.T) {
	m := testenv.StartMinIO(t)
	store := minioStore(t, m)
	cfg := Config{
		Store: store, Prefix: "vtl/", Gateway: "e2e", Drives: 2, Slots: 10, IESlots: 2,
		MinTapeSize: 1 << 20, SegmentSize: 2 << 20,
		Pools: map[string]Pool{PoolArchive: {RetentionMode: RetentionCompliance, RetentionDays: 30}},
	}
	ctx := context.Background()
	s := serveLibrary(t, cfg)
	tapes, err := s.lib.CreateTapes(ctx, CreateOptions{BarcodePrefix: "E", Count: 3, Size: 1 << 30, Pool: PoolArchive})
	if err != nil {
		t.Fatal(err)
	}
	bc := tapes[0].Barcode
	ch := s.login(t, s.lib.ChangerIQN())
	dr := s.login(t, s.lib.DriveIQN(1))
	inq := good(t, cmd(t, ch, []byte{0x12, 0, 0, 0, 96, 0}, nil, 96), "INQUIRY changer")
	if inq.Data[0]&0x1f != scsi.TypeMediumChanger || string(inq.Data[8:11]) != "AWS" {
		t.Fatalf("changer inquiry % x", inq.Data[:36])
	}
	if st := elementStatus(t, ch); st[addrSlot] != bc {
		t.Fatalf("element status %v", st)
	}
	cmd(t, dr, []byte{0, 0, 0, 0, 0, 0}, nil, 0) // clear power-on UA
	if k, a := senseKey(cmd(t, dr, []byte{0, 0, 0, 0, 0, 0}, nil, 0)); k != scsi.SenseNotReady || a != scsi.ASCMediumNotPresent {
		t.Fatalf("TUR without tape: %x %x", k, a)
	}
	good(t, cmd(t, ch, cdbMove(addrSlot, addrDrive), nil, 0), "MOVE MEDIUM to drive")
	good(t, cmd(t, dr, []byte{0, 0, 0, 0, 0, 0}, nil, 0), "TUR")

	sizes := []int{65536, 65536, 1 << 20, 10, 262144, 777, 1 << 20, 1 << 20, 1 << 20, 65536}
	var want [][]byte
	for i, n := range sizes {
		rec := record(i, n)
		want = append(want, rec)
		good(t, cmd(t, dr, cdbWrite(n, false), rec, 0), "WRITE")
		if i == 4 {
			good(t, cmd(t, dr, cdbWFM(1), nil, 0), "WFM")
		}
	}
	good(t, cmd(t, dr, cdbWFM(1), nil, 0), "WFM")
	good(t, cmd(t, dr, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0), "REWIND")
	// Positions: records 0-4 at 0-4, FM at 5, records 5-9 at 6-10, FM at 11.
	objPos := func(i int) uint64 {
		if i < 5 {
			return uint64(i)
		}
		return uint64(i + 1)
	}
	readAll := func(c *iscsitest.Client) {
		t.Helper()
		good(t, cmd(t, c, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0), "REWIND")
		good(t, cmd(t, c, cdbSpace(1, 1), nil, 0), "SPACE 1 FM")
		good(t, cmd(t, c, cdbSpace(0, 2), nil, 0), "SPACE 2 blocks")
		r := good(t, cmd(t, c, cdbRead(1<<20, false, true), nil, 1<<20), "READ after SPACE")
		if !eq(r.Data, want[7]) {
			t.Fatal("record 7 differs")
		}
		good(t, cmd(t, c, cdbSpace(0, -2&0xffffff), nil, 0), "SPACE -2")
		for _, i := range []int{9, 3, 0, 6} {
			good(t, cmd(t, c, cdbLocate(objPos(i)), nil, 0), "LOCATE")
			r := good(t, cmd(t, c, cdbRead(1<<20, false, true), nil, 1<<20), "READ after LOCATE")
			if !eq(r.Data, want[i]) {
				t.Fatalf("record %d differs after LOCATE", i)
			}
		}
		good(t, cmd(t, c, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0), "REWIND")
		for i := range sizes {
			r := cmd(t, c, cdbRead(1<<20, false, true), nil, 1<<20)
			if r.Status != scsi.StatusGood || !eq(r.Data, want[i]) {
				t.Fatalf("sequential read of record %d: status %x", i, r.Status)
			}
			if i == 4 {
				if k, a := senseKey(cmd(t, c, cdbRead(1<<20, false, true), nil, 1<<20)); k != scsi.SenseNoSense || a != scsi.ASCFilemarkDetected {
					t.Fatalf("filemark: %x %x", k, a)
				}
			}
		}
		pos := good(t, cmd(t, c, cdbReadPosLong(), nil, 32), "READ POSITION")
		if p := binary.BigEndian.Uint64(pos.Data[8:]); p != 11 {
			t.Fatalf("position %d, want 11", p)
		}
	}
	readAll(dr)
	good(t, cmd(t, dr, []byte{0x1b, 0, 0, 0, 0, 0}, nil, 0), "UNLOAD")
	good(t, cmd(t, ch, cdbMove(addrDrive, addrSlot), nil, 0), "MOVE MEDIUM to slot")
	s.stop(t)

	// Restart from the same bucket.
	s = serveLibrary(t, cfg)
	ch = s.login(t, s.lib.ChangerIQN())
	dr = s.login(t, s.lib.DriveIQN(1))
	good(t, cmd(t, ch, cdbMove(addrSlot, addrDrive), nil, 0), "MOVE MEDIUM after restart")
	readAll(dr)
	good(t, cmd(t, ch, cdbMove(addrDrive, addrSlot), nil, 0), "MOVE MEDIUM out")

	// Export, archive, retrieve: read-only afterwards.
	if _, err := s.lib.ExportTape(ctx, bc); err != nil {
		t.Fatal(err)
	}
	if _, err := s.lib.ImportTape(ctx, bc); err != nil {
		t.Fatal(err)
	}
	if st := elementStatus(t, ch); st[addrIE] != bc {
		t.Fatalf("imported tape not in the I/E slot: %v", st)
	}
	if _, err := s.lib.ArchiveTape(ctx, bc); err != nil {
		t.Fatal(err)
	}
	if err := s.lib.DeleteTape(ctx, bc, DeleteOptions{BypassGovernance: true}); !errors.Is(err, ErrRetentionLocked) {
		t.Fatalf("delete under compliance lock: %v", err)
	}
	ti, err := s.lib.RetrieveTape(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	good(t, cmd(t, ch, cdbMove(ti.Element, addrDrive), nil, 0), "MOVE retrieved tape")
	if k, a := senseKey(cmd(t, dr, cdbWrite(10, false), record(1, 10), 0)); k != scsi.SenseDataProtect || a != scsi.ASCWriteProtected {
		t.Fatalf("write to retrieved tape: %x %x", k, a)
	}
	ms := good(t, cmd(t, dr, []byte{0x1a, 0, 0x3f, 0, 255, 0}, nil, 255), "MODE SENSE")
	if ms.Data[2]&0x80 == 0 {
		t.Fatal("MODE SENSE: WP not set")
	}
	readAll(dr)
	mustCheck(t, s.lib)
	s.stop(t)
}
