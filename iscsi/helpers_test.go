package iscsi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/iscsi/scsi/scsitest"
)

const testTarget = "iqn.2026-11.io.sluicegw:v1"

// testServer is a Server on 127.0.0.1:0 with one disk target.
type testServer struct {
	srv    *Server
	addr   string
	disk   *scsi.Disk
	served chan error
	mu     sync.Mutex
	events []LoginEvent
}

type serverOpts struct {
	cfg    Config
	target Target
	// file backs the disk with a temp file instead of memory.
	file bool
	size int64
}

// startServer starts a server; it is shut down at the end of the test.
func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	if o.size == 0 {
		o.size = 64 << 20
	}
	var dev scsi.BlockDevice
	if o.file {
		fd, err := scsitest.OpenFileDevice(filepath.Join(t.TempDir(), "disk.img"), o.size)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fd.Close() })
		dev = fd
	} else {
		dev = scsitest.NewMemDevice(o.size)
	}
	disk, err := scsi.NewDisk(dev, scsi.DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{disk: disk, served: make(chan error, 1)}
	if o.cfg.Logger == nil && os.Getenv("ISCSI_TEST_LOG") != "" {
		o.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	user := o.cfg.OnLogin
	o.cfg.OnLogin = func(ev LoginEvent) {
		ts.mu.Lock()
		ts.events = append(ts.events, ev)
		ts.mu.Unlock()
		if user != nil {
			user(ev)
		}
	}
	ts.srv = NewServer(o.cfg)
	tg := o.target
	if tg.Name == "" {
		tg.Name = testTarget
	}
	if tg.LUNs == nil {
		tg.LUNs = map[uint64]scsi.LogicalUnit{0: disk}
	}
	if err := ts.srv.AddTarget(tg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	go func() { ts.served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

func (ts *testServer) loginEvents() []LoginEvent {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]LoginEvent(nil), ts.events...)
}

// login dials and logs in to the test target.
func (ts *testServer) login(t testing.TB, o iscsitest.Options) *iscsitest.Client {
	t.Helper()
	c, err := ts.dialLogin(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (ts *testServer) dialLogin(o iscsitest.Options) (*iscsitest.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := iscsitest.Dial(ctx, ts.addr)
	if err != nil {
		return nil, err
	}
	if o.TargetName == "" && !o.Discovery {
		o.TargetName = testTarget
	}
	if err := c.Login(ctx, o); err != nil {
		c.Close()
		return nil, err
	}
	if !o.Discovery {
		// Consume the power-on unit attention of the new nexus.
		if _, err := c.Command(ctx, 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func read10(lba uint32, blocks uint16) []byte {
	return []byte{0x28, 0, byte(lba >> 24), byte(lba >> 16), byte(lba >> 8), byte(lba), 0, byte(blocks >> 8), byte(blocks), 0}
}

func write10(lba uint32, blocks uint16) []byte {
	return []byte{0x2a, 0, byte(lba >> 24), byte(lba >> 16), byte(lba >> 8), byte(lba), 0, byte(blocks >> 8), byte(blocks), 0}
}
