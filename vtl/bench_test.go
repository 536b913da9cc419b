package vtl

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/iscsi/iscsitest"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// benchTotal is the bytes written (and read back) per benchmark run: 4 GiB,
// or 256 MiB with -short; VTL_BENCH_BYTES overrides it.
func benchTotal() int64 {
	if s := os.Getenv("VTL_BENCH_BYTES"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	if testing.Short() {
		return 256 << 20
	}
	return 4 << 30
}

// tapeStream writes total bytes in blocks of bs to a drive, then a filemark
// (the durability point), rewinds and reads everything back. It returns the
// write and read durations.
func tapeStream(b *testing.B, c *iscsitest.Client, lun uint64, bs int, total int64, data []byte) (w, r time.Duration) {
	ctx := context.Background()
	run := func(cdb, out []byte, in int) *iscsitest.Response {
		for try := 0; ; try++ {
			resp, err := c.Command(ctx, lun, cdb, out, in)
			if err != nil {
				b.Fatal(err)
			}
			if resp.Status == scsi.StatusCheckCondition && len(resp.Sense) > 2 && resp.Sense[2]&0x0f == scsi.SenseUnitAttention && try < 4 {
				continue
			}
			return resp
		}
	}
	must := func(resp *iscsitest.Response, what string) {
		if resp.Status != scsi.StatusGood {
			b.Fatalf("%s: status %#x sense % x", what, resp.Status, resp.Sense)
		}
	}
	must(run([]byte{0x01, 0, 0, 0, 0, 0}, nil, 0), "REWIND")
	n := int(total / int64(bs))
	start := time.Now()
	for i := 0; i < n; i++ {
		off := (i * 4099) % (len(data) - bs)
		must(run(cdbWrite(bs, false), data[off:off+bs], 0), "WRITE")
	}
	must(run(cdbWFM(1), nil, 0), "WRITE FILEMARKS")
	w = time.Since(start)
	must(run([]byte{0x01, 0, 0, 0, 0, 0}, nil, 0), "REWIND")
	start = time.Now()
	for i := 0; i < n; i++ {
		must(run(cdbRead(bs, false, false), nil, bs), "READ")
	}
	r = time.Since(start)
	return w, r
}

// BenchmarkTape measures sequential write and read through 1 and 4 drives
// over iSCSI on loopback, with tapes in a real MinIO. With
// VTL_BENCH_TGT="host:port,iqn,lun" it also drives a tgt tape target
// (tgtadm --device-type tape) with the same workload (one drive).
func BenchmarkTape(b *testing.B) {
	m := testenv.StartMinIO(b)
	store := minioStore(b, m)
	total := benchTotal()
	data := make([]byte, 8<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	cfg := Config{Store: store, Prefix: "bench/", Gateway: "bench", Drives: 4, Slots: 16, IESlots: 1, MinTapeSize: 1 << 20}
	// VTL_BENCH_UPLOADS and VTL_BENCH_SEGMENT_MIB tune the write pipeline.
	cfg.UploadConcurrency, _ = strconv.Atoi(os.Getenv("VTL_BENCH_UPLOADS"))
	if mib, _ := strconv.Atoi(os.Getenv("VTL_BENCH_SEGMENT_MIB")); mib > 0 {
		cfg.SegmentSize = mib << 20
	}
	s := serveLibrary(b, cfg)
	b.Cleanup(func() { s.stop(b) })
	tapes, err := s.lib.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "BN", Count: 4, Size: 2*total + 1<<30})
	if err != nil {
		b.Fatal(err)
	}
	ch := s.login(b, s.lib.ChangerIQN())
	var drives []*iscsitest.Client
	for i := range 4 {
		good(b, cmd(b, ch, cdbMove(tapes[i].Element, uint16(addrDrive+i)), nil, 0), "MOVE MEDIUM")
		drives = append(drives, s.login(b, s.lib.DriveIQN(i+1)))
	}
	for _, bs := range []int{256 << 10, 1 << 20} {
		for _, nd := range []int{1, 4} {
			b.Run(fmt.Sprintf("sluice/bs=%dKiB/drives=%d", bs>>10, nd), func(b *testing.B) {
				for range b.N {
					var wg sync.WaitGroup
					var mu sync.Mutex
					var wmax, rmax time.Duration
					per := total / int64(nd)
					for i := range nd {
						wg.Add(1)
						go func() {
							defer wg.Done()
							w, r := tapeStream(b, drives[i], 0, bs, per, data)
							mu.Lock()
							wmax, rmax = max(wmax, w), max(rmax, r)
							mu.Unlock()
						}()
					}
					wg.Wait()
					b.ReportMetric(float64(total)/1e6/wmax.Seconds(), "writeMB/s")
					b.ReportMetric(float64(total)/1e6/rmax.Seconds(), "readMB/s")
				}
			})
		}
	}
	if spec := os.Getenv("VTL_BENCH_TGT"); spec != "" {
		parts := strings.Split(spec, ",")
		if len(parts) != 3 {
			b.Fatalf("VTL_BENCH_TGT=%q: want host:port,iqn,lun", spec)
		}
		lun, _ := strconv.ParseUint(parts[2], 10, 64)
		ctx := context.Background()
		c, err := iscsitest.Dial(ctx, parts[0])
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(ctx, iscsitest.Options{TargetName: parts[1]}); err != nil {
			b.Fatal(err)
		}
		for _, bs := range []int{256 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("tgt/bs=%dKiB/drives=1", bs>>10), func(b *testing.B) {
				for range b.N {
					w, r := tapeStream(b, c, lun, bs, total, data)
					b.ReportMetric(float64(total)/1e6/w.Seconds(), "writeMB/s")
					b.ReportMetric(float64(total)/1e6/r.Seconds(), "readMB/s")
				}
			})
		}
	}
}

// discardSegments is a store that throws segment data away, to measure the
// drive's own cost.
type discardSegments struct{ objstore.Store }

func (s discardSegments) Put(ctx context.Context, key string, r io.Reader, size int64, o objstore.PutOptions) (objstore.ObjectInfo, error) {
	if strings.Contains(key, "/seg-") {
		n, err := io.Copy(io.Discard, r)
		return objstore.ObjectInfo{Key: key, Size: n}, err
	}
	return s.Store.Put(ctx, key, r, size, o)
}

// BenchmarkDriveWriteDirect measures the drive's write path without the
// network or a store: WRITE commands executed directly, segment uploads
// discarded.
func BenchmarkDriveWriteDirect(b *testing.B) {
	l := openTestLibrary(b, discardSegments{embeddedStore(b)}, func(c *Config) {
		c.MaxBlockSize = 1 << 20
		c.SegmentSize = 32 << 20
		c.MaxTapeSize = 1 << 50
	})
	defer l.Close(context.Background())
	tapes, err := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "BD", Count: 1, Size: 1 << 45})
	if err != nil {
		b.Fatal(err)
	}
	exec(b, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(b, "MOVE")
	d := l.Drives()[0]
	data := make([]byte, 256<<10)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	cmd := &scsi.Command{Nexus: testNexus, CDB: cdbWrite(len(data), false), DataOut: data}
	ctx := context.Background()
	d.Execute(ctx, cmd)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := d.Execute(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
	exec(b, d, cdbWFM(0), nil, 0).mustOK(b, "WFM")
}

// BenchmarkDriveReadDirect measures the drive's read path without the
// network: READ commands executed directly over a tape in an embedded
// store, rewinding at the filemark.
func BenchmarkDriveReadDirect(b *testing.B) {
	l := openTestLibrary(b, embeddedStore(b), func(c *Config) {
		c.MaxBlockSize = 1 << 20
		c.SegmentSize = 8 << 20
	})
	defer l.Close(context.Background())
	tapes, err := l.CreateTapes(context.Background(), CreateOptions{BarcodePrefix: "BR", Count: 1, Size: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	exec(b, l.Changer(), cdbMove(tapes[0].Element, addrDrive), nil, 0).mustOK(b, "MOVE")
	d := l.Drives()[0]
	data := record(7, 256<<10)
	for range 128 {
		exec(b, d, cdbWrite(len(data), false), data, 0).mustOK(b, "WRITE")
	}
	exec(b, d, cdbWFM(1), nil, 0).mustOK(b, "WFM")
	exec(b, d, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0).mustOK(b, "REWIND")
	ctx := context.Background()
	read := &scsi.Command{Nexus: testNexus, CDB: cdbRead(len(data), false, false), DataIn: make([]byte, len(data))}
	rewind := &scsi.Command{Nexus: testNexus, CDB: []byte{0x01, 0, 0, 0, 0, 0}}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := d.Execute(ctx, read); err != nil {
			if _, err := d.Execute(ctx, rewind); err != nil {
				b.Fatal(err)
			}
		}
	}
}
