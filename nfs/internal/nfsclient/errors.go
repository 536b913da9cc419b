package nfsclient

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("nfsclient: connection closed")

// StatusError is a non-zero NFS or MOUNT status.
type StatusError struct {
	Proc   uint32
	Status uint32
}

// Error names the procedure and status.
func (e *StatusError) Error() string {
	return fmt.Sprintf("nfsclient: procedure %d failed with status %d", e.Proc, e.Status)
}
