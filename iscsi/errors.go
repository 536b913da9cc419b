package iscsi

import "errors"

// Errors returned by the Server's methods. Protocol errors seen on a
// connection are logged and end only that connection; they are not returned
// to the caller of Serve.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("iscsi: server closed")
	// ErrTargetExists is returned by AddTarget for a name already served.
	ErrTargetExists = errors.New("iscsi: target already exists")
	// ErrNoSuchTarget is returned by RemoveTarget and SetTarget for an
	// unknown target name.
	ErrNoSuchTarget = errors.New("iscsi: no such target")
	// ErrInvalidTarget is returned by AddTarget and SetTarget when the target
	// definition is unusable (empty or malformed name, nil logical unit,
	// CHAP secret of the wrong size).
	ErrInvalidTarget = errors.New("iscsi: invalid target")

	// errProtocol marks a violation of RFC 7143 by the peer; the connection
	// is closed.
	errProtocol = errors.New("iscsi: protocol error")
	// errDigest marks a header or data digest mismatch.
	errDigest = errors.New("iscsi: digest mismatch")
	// errTooLarge marks a PDU larger than negotiated.
	errTooLarge = errors.New("iscsi: PDU too large")
	// errAuth is a failed authentication; the login is answered with
	// status 0x0201 and the reason is logged (never the secret).
	errAuth = errors.New("authentication failed")
	// errLogout ends the read loop after a logout response.
	errLogout = errors.New("logged out")
)
