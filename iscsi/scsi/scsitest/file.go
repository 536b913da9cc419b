package scsitest

import (
	"context"
	"fmt"
	"os"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// FileDevice is a block device stored in a (sparse) file. Writes with FUA
// and Flush call fsync. On Linux it also implements scsi.Unmapper (punching
// holes) and scsi.MappingReporter (SEEK_DATA/SEEK_HOLE).
type FileDevice struct {
	f    *os.File
	size int64
}

var _ scsi.BlockDevice = (*FileDevice)(nil)

// OpenFileDevice opens or creates the file at path and sets its size to
// size bytes. Close it when done.
func OpenFileDevice(path string, size int64) (*FileDevice, error) {
	if size < 0 {
		return nil, fmt.Errorf("scsitest: negative size %d", size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("scsitest: open device file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("scsitest: size device file: %w", err)
	}
	return &FileDevice{f: f, size: size}, nil
}

// Close closes the file.
func (d *FileDevice) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("scsitest: close device file: %w", err)
	}
	return nil
}

// ReadAt implements scsi.BlockDevice.
func (d *FileDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	if _, err := d.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("scsitest: read at %d: %w", off, err)
	}
	return nil
}

// WriteAt implements scsi.BlockDevice.
func (d *FileDevice) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if off < 0 || off+int64(len(p)) > d.size {
		return fmt.Errorf("scsitest: write [%d,+%d) outside device of %d bytes", off, len(p), d.size)
	}
	if _, err := d.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("scsitest: write at %d: %w", off, err)
	}
	if fua {
		if err := d.f.Sync(); err != nil {
			return fmt.Errorf("scsitest: fsync: %w", err)
		}
	}
	return nil
}

// Flush implements scsi.BlockDevice.
func (d *FileDevice) Flush(context.Context) error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("scsitest: fsync: %w", err)
	}
	return nil
}

// Size implements scsi.BlockDevice.
func (d *FileDevice) Size() int64 { return d.size }
