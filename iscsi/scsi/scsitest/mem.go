// Package scsitest provides block devices for testing logical units of
// package scsi: an in-memory device and a sparse-file device, both
// implementing scsi.BlockDevice, scsi.Unmapper and scsi.MappingReporter.
package scsitest

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluicegw/sluice/iscsi/scsi"
)

// sector is the allocation-tracking granularity of MemDevice.
const sector = 512

// MemDevice is an in-memory block device. It tracks which 512-byte
// sectors are mapped (written since creation or the last unmap) so that
// GET LBA STATUS can be tested. It is safe for concurrent use.
type MemDevice struct {
	// Fail, when set, is consulted before every operation ("read",
	// "write", "flush", "unmap") and its error returned instead of
	// performing it; tests use it to inject faults.
	Fail func(op string, off int64) error

	mu      sync.RWMutex
	data    []byte
	mapped  []bool
	flushes int
	fuas    int
}

var (
	_ scsi.BlockDevice     = (*MemDevice)(nil)
	_ scsi.Unmapper        = (*MemDevice)(nil)
	_ scsi.MappingReporter = (*MemDevice)(nil)
)

// NewMemDevice returns a zero-filled, fully unmapped device of size bytes
// (rounded down to 512 bytes).
func NewMemDevice(size int64) *MemDevice {
	size &^= sector - 1
	return &MemDevice{data: make([]byte, size), mapped: make([]bool, size/sector)}
}

func (m *MemDevice) check(op string, off int64, n int) error {
	if m.Fail != nil {
		if err := m.Fail(op, off); err != nil {
			return err
		}
	}
	if off < 0 || n < 0 || off+int64(n) > int64(len(m.data)) {
		return fmt.Errorf("scsitest: %s [%d,+%d) outside device of %d bytes", op, off, n, len(m.data))
	}
	return nil
}

// ReadAt implements scsi.BlockDevice.
func (m *MemDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check("read", off, len(p)); err != nil {
		return err
	}
	copy(p, m.data[off:])
	return nil
}

// WriteAt implements scsi.BlockDevice.
func (m *MemDevice) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("write", off, len(p)); err != nil {
		return err
	}
	copy(m.data[off:], p)
	for s := off / sector; s < (off+int64(len(p))+sector-1)/sector; s++ {
		m.mapped[s] = true
	}
	if fua {
		m.fuas++
	}
	return nil
}

// Flush implements scsi.BlockDevice.
func (m *MemDevice) Flush(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("flush", 0, 0); err != nil {
		return err
	}
	m.flushes++
	return nil
}

// Size implements scsi.BlockDevice.
func (m *MemDevice) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.data))
}

// Resize grows or shrinks the device to size bytes (rounded down to 512).
func (m *MemDevice) Resize(size int64) {
	size &^= sector - 1
	m.mu.Lock()
	defer m.mu.Unlock()
	data := make([]byte, size)
	copy(data, m.data)
	mapped := make([]bool, size/sector)
	copy(mapped, m.mapped)
	m.data, m.mapped = data, mapped
}

// Unmap implements scsi.Unmapper: the range reads as zeros afterwards.
func (m *MemDevice) Unmap(_ context.Context, off, length int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("unmap", off, int(length)); err != nil {
		return err
	}
	clear(m.data[off : off+length])
	for s := off / sector; s < (off+length)/sector; s++ {
		m.mapped[s] = false
	}
	return nil
}

// Mapped implements scsi.MappingReporter.
func (m *MemDevice) Mapped(_ context.Context, off int64) (bool, int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check("mapped", off, 0); err != nil {
		return false, 0, err
	}
	s := off / sector
	if s >= int64(len(m.mapped)) {
		return false, 0, nil
	}
	state := m.mapped[s]
	e := s
	for e < int64(len(m.mapped)) && m.mapped[e] == state {
		e++
	}
	return state, e*sector - off, nil
}

// Flushes returns how many times Flush succeeded.
func (m *MemDevice) Flushes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.flushes
}

// FUAWrites returns how many writes asked for force unit access.
func (m *MemDevice) FUAWrites() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.fuas
}

// Bytes returns a copy of the device contents in [off, off+n).
func (m *MemDevice) Bytes(off, n int64) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data[off:off+n]...)
}
