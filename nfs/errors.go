package nfs

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sluicegw/sluice/internal/objstore"
)

// Errors returned by the Server's Go API.
var (
	// ErrShareExists: AddShare was given a name already in use.
	ErrShareExists = errors.New("nfs: share already exists")
	// ErrNoShare: the named share does not exist.
	ErrNoShare = errors.New("nfs: no such share")
	// ErrInvalidShare: a share definition is incomplete or out of range.
	ErrInvalidShare = errors.New("nfs: invalid share")
	// ErrServerClosed: Serve was called after Shutdown, or the server is
	// shutting down.
	ErrServerClosed = errors.New("nfs: server closed")
	// ErrNotFound: Refresh was given a path that does not exist.
	ErrNotFound = errors.New("nfs: no such file or directory")

	// errBadArgs marks undecodable procedure arguments; the dispatcher
	// answers GARBAGE_ARGS.
	errBadArgs = errors.New("nfs: undecodable arguments")
	// errBaseMoved: a fetch found a newer object version written by an
	// upload of the same file; the fetch is retried.
	errBaseMoved = errors.New("nfs: object replaced by an upload")
)

// Status is an NFSv3 status code (RFC 1813 section 2.6, nfsstat3).
type Status uint32

// NFSv3 status codes used by Sluice.
const (
	StatusOK          Status = 0
	StatusPerm        Status = 1
	StatusNoEnt       Status = 2
	StatusIO          Status = 5
	StatusAccess      Status = 13
	StatusExist       Status = 17
	StatusXDev        Status = 18
	StatusNotDir      Status = 20
	StatusIsDir       Status = 21
	StatusInval       Status = 22
	StatusFBig        Status = 27
	StatusNoSpc       Status = 28
	StatusROFS        Status = 30
	StatusNameTooLong Status = 63
	StatusNotEmpty    Status = 66
	StatusStale       Status = 70
	StatusBadHandle   Status = 10001
	StatusNotSync     Status = 10002
	StatusBadCookie   Status = 10003
	StatusNotSupp     Status = 10004
	StatusServerFault Status = 10006
	StatusJukebox     Status = 10008
)

// StatusError is an error with the NFSv3 status it is reported with. The
// procedure handlers return it (wrapping the cause) and the dispatcher
// alone turns it into a reply (see nfs3.go, replyStatus).
type StatusError struct {
	Status Status
	Err    error
}

// Error describes the status and its cause.
func (e *StatusError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("nfs status %d", e.Status)
	}
	return fmt.Sprintf("nfs status %d: %v", e.Status, e.Err)
}

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.Err }

// statusErr builds a StatusError; err may be nil.
func statusErr(st Status, err error) error { return &StatusError{Status: st, Err: err} }

// statusOf maps any error to the NFSv3 status it is reported with: a
// StatusError keeps its own, object-store errors are classified (not found
// → NOENT, retryable → JUKEBOX so the client tries again, others → IO).
func statusOf(err error) Status {
	var se *StatusError
	switch {
	case err == nil:
		return StatusOK
	case errors.As(err, &se):
		return se.Status
	case errors.Is(err, objstore.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return StatusNoEnt
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), objstore.IsRetryable(err):
		return StatusJukebox
	default:
		return StatusIO
	}
}

// mountStatus is a MOUNT v3 status (RFC 1813 section 5.1.5, mountstat3).
type mountStatus uint32

const (
	mnt3OK          mountStatus = 0
	mnt3ErrNoEnt    mountStatus = 2
	mnt3ErrAccess   mountStatus = 13
	mnt3ErrInval    mountStatus = 22
	mnt3ErrNameLong mountStatus = 63
)
