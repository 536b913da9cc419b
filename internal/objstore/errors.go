package objstore

import (
	"context"
	"errors"
	"net"
)

// Error classes. Implementations wrap these so callers can test with
// errors.Is; see the package documentation for their meaning.
var (
	// ErrNotFound: the object or multipart upload does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrBucketNotFound: the bucket does not exist.
	ErrBucketNotFound = errors.New("bucket not found")
	// ErrPreconditionFailed: a conditional request's condition did not hold.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrInvalidArgument: the request is malformed; retrying cannot help.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTransient: the store was unreachable, slow or overloaded; the
	// request may succeed if tried again.
	ErrTransient = errors.New("transient object store error")
	// ErrNotSupported: the store does not implement the operation.
	ErrNotSupported = errors.New("operation not supported by this store")
)

// IsRetryable reports whether err is worth retrying: it wraps ErrTransient,
// or it is a network error or timeout. Context cancellation by the caller
// is never retryable.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrTransient) {
		return true
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrPreconditionFailed) ||
		errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrBucketNotFound) ||
		errors.Is(err, ErrNotSupported) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}
