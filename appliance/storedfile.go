package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// fileDevice is a stored volume's data in a sparse local file: the interim
// device of issue B until blockcache's stored volumes (changed-block
// tracking, snapshots) replace it.
type fileDevice struct {
	f    *os.File
	size int64
}

// openStoredDevice opens (with create, creates) a volume's sparse data file.
func openStoredDevice(path string, size int64, create bool) (volumeDevice, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		// The record was committed but the file never made it (crash
		// between the two): recreate it empty.
		f, err = os.OpenFile(path, flags|os.O_CREATE, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("opening volume data: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() != size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("sizing volume data: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &fileDevice{f: f, size: size}, nil
}

func (d *fileDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	return err
}

func (d *fileDevice) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if _, err := d.f.WriteAt(p, off); err != nil {
		return err
	}
	if fua {
		return unix.Fdatasync(int(d.f.Fd()))
	}
	return nil
}

func (d *fileDevice) Flush(context.Context) error { return unix.Fdatasync(int(d.f.Fd())) }

func (d *fileDevice) Size() int64 { return d.size }

// Unmap punches a hole; the range reads back as zeros.
func (d *fileDevice) Unmap(_ context.Context, off, length int64) error {
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}

// Mapped reports allocation with SEEK_DATA/SEEK_HOLE.
func (d *fileDevice) Mapped(_ context.Context, off int64) (bool, int64, error) {
	fd := int(d.f.Fd())
	data, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false, d.size - off, nil
	}
	if err != nil {
		return false, 0, err
	}
	if data > off {
		return false, data - off, nil
	}
	hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, err
	}
	return true, hole - off, nil
}

func (d *fileDevice) Close() error {
	err := d.f.Sync()
	return errors.Join(err, d.f.Close())
}
