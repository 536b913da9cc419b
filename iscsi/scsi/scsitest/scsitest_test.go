//go:build linux

package scsitest

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sluicegw/sluice/internal/testenv"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// device is what both test devices implement.
type device interface {
	scsi.BlockDevice
	scsi.Unmapper
	scsi.MappingReporter
}

func devices(t *testing.T) map[string]device {
	t.Helper()
	f, err := OpenFileDevice(filepath.Join(t.TempDir(), "vol"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return map[string]device{"mem": NewMemDevice(1 << 20), "file": f}
}

func TestDevices(t *testing.T) {
	ctx := context.Background()
	for name, d := range devices(t) {
		t.Run(name, func(t *testing.T) {
			if d.Size() != 1<<20 {
				t.Fatalf("size %d", d.Size())
			}
			m, run, err := d.Mapped(ctx, 0)
			if err != nil || m || run != 1<<20 {
				t.Fatalf("fresh device: mapped %v run %d err %v", m, run, err)
			}
			data := bytes.Repeat([]byte{7}, 64<<10)
			if err := d.WriteAt(ctx, data, 256<<10, true); err != nil {
				t.Fatal(err)
			}
			if err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if err := d.ReadAt(ctx, got, 256<<10); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %v", err)
			}
			m, run, err = d.Mapped(ctx, 256<<10)
			if err != nil || !m || run != 64<<10 {
				t.Fatalf("written range: mapped %v run %d err %v", m, run, err)
			}
			m, run, err = d.Mapped(ctx, 0)
			if err != nil || m || run != 256<<10 {
				t.Fatalf("hole before: mapped %v run %d err %v", m, run, err)
			}
			if err := d.Unmap(ctx, 256<<10, 64<<10); errors.Is(err, syscall.EOPNOTSUPP) {
				testenv.Unsupported(t, "file system cannot punch holes")
			} else if err != nil {
				t.Fatal(err)
			}
			if err := d.ReadAt(ctx, got, 256<<10); err != nil || !bytes.Equal(got, make([]byte, len(got))) {
				t.Fatalf("unmapped range does not read as zeros: %v", err)
			}
			if m, _, err := d.Mapped(ctx, 256<<10); err != nil || m {
				t.Fatalf("unmapped range still mapped: %v", err)
			}
			if err := d.WriteAt(ctx, data, 1<<20-1024, false); err == nil {
				t.Fatal("write past the end accepted")
			}
		})
	}
}

func TestMemDeviceResizeAndFaults(t *testing.T) {
	ctx := context.Background()
	m := NewMemDevice(4096)
	if err := m.WriteAt(ctx, []byte{1, 2, 3}, 0, false); err != nil {
		t.Fatal(err)
	}
	m.Resize(8192)
	if m.Size() != 8192 || !bytes.Equal(m.Bytes(0, 3), []byte{1, 2, 3}) {
		t.Fatal("resize lost data")
	}
	m.Fail = func(op string, _ int64) error {
		if op == "flush" {
			return context.DeadlineExceeded
		}
		return nil
	}
	if err := m.Flush(ctx); err == nil {
		t.Fatal("injected fault ignored")
	}
	if m.Flushes() != 0 {
		t.Fatal("failed flush counted")
	}
}
