package blockcache

import "errors"

// Error values of the package; functions wrap them with %w.
var (
	// ErrOutOfRange: an I/O request falls outside the volume.
	ErrOutOfRange = errors.New("request outside the volume")
	// ErrClosed: the volume has been closed.
	ErrClosed = errors.New("volume closed")
	// ErrExists: a volume already exists in the directory.
	ErrExists = errors.New("volume already exists")
	// ErrNotVolume: the directory does not hold a volume.
	ErrNotVolume = errors.New("not a volume directory")
	// ErrLocked: another process has the volume open.
	ErrLocked = errors.New("volume in use by another process")
	// ErrCorrupt: a volume state file failed its checks.
	ErrCorrupt = errors.New("volume state corrupt")
	// ErrInvalid: a configuration value is out of range.
	ErrInvalid = errors.New("invalid volume configuration")
	// ErrSnapshotBusy: a snapshot of the volume is already running.
	ErrSnapshotBusy = errors.New("snapshot already running")
	// ErrFailpoint is what a Failpoint hook returns in tests to simulate a
	// crash at a durability boundary.
	ErrFailpoint = errors.New("failpoint triggered")
)
