//go:build linux

package scsitest

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

var (
	_ scsi.Unmapper        = (*FileDevice)(nil)
	_ scsi.MappingReporter = (*FileDevice)(nil)
)

// fallocate(2) mode bits and lseek(2) whence values (linux/falloc.h,
// linux/fs.h).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	seekData        = 3
	seekHole        = 4
)

// Unmap implements scsi.Unmapper by punching a hole.
func (d *FileDevice) Unmap(_ context.Context, off, length int64) error {
	if err := syscall.Fallocate(int(d.f.Fd()), fallocPunchHole|fallocKeepSize, off, length); err != nil {
		return fmt.Errorf("scsitest: punch hole [%d,+%d): %w", off, length, err)
	}
	return nil
}

// Mapped implements scsi.MappingReporter with SEEK_DATA and SEEK_HOLE.
// The answer has the file system's allocation granularity.
func (d *FileDevice) Mapped(_ context.Context, off int64) (bool, int64, error) {
	if off >= d.size {
		return false, 0, nil
	}
	fd := int(d.f.Fd())
	data, err := syscall.Seek(fd, off, seekData)
	if errors.Is(err, syscall.ENXIO) {
		return false, d.size - off, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("scsitest: SEEK_DATA at %d: %w", off, err)
	}
	if data > off {
		return false, min(data, d.size) - off, nil
	}
	hole, err := syscall.Seek(fd, off, seekHole)
	if err != nil {
		return false, 0, fmt.Errorf("scsitest: SEEK_HOLE at %d: %w", off, err)
	}
	return true, min(hole, d.size) - off, nil
}
