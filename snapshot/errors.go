package snapshot

import "errors"

// Error values of the package. Functions wrap them with %w and context, so
// callers test with errors.Is. Errors from the object store keep their
// objstore classes (objstore.ErrNotFound, objstore.IsRetryable) underneath.
var (
	// ErrNotFound: no snapshot with that id exists in the catalogue.
	ErrNotFound = errors.New("snapshot not found")
	// ErrNotCompleted: the snapshot exists but is pending or failed, so it
	// cannot be restored or used as a parent.
	ErrNotCompleted = errors.New("snapshot not completed")
	// ErrCorrupt: a manifest, catalogue entry or chunk failed its checksum
	// or could not be decoded.
	ErrCorrupt = errors.New("snapshot data corrupt")
	// ErrChunkMissing: a chunk a manifest references is not in the store.
	ErrChunkMissing = errors.New("chunk missing")
	// ErrInvalid: a request or configuration value is out of range (block
	// size, codec, sizes that do not match, a bad schedule).
	ErrInvalid = errors.New("invalid snapshot request")
	// ErrConflict: the catalogue entry changed underneath the caller, for
	// example a pending snapshot that garbage collection declared stale and
	// marked as failed.
	ErrConflict = errors.New("snapshot catalogue entry changed concurrently")
	// ErrBusy: another garbage collection holds the collector lease.
	ErrBusy = errors.New("garbage collection already running")
	// ErrFailpoint is returned by a Failpoint hook in tests to simulate a
	// crash at a durability boundary.
	ErrFailpoint = errors.New("failpoint triggered")
)
