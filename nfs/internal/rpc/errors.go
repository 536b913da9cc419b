package rpc

import "errors"

// Decoding errors. A decoder that fails returns one of these, wrapped with
// the field it was reading.
var (
	// ErrShort: the input ended before the value did.
	ErrShort = errors.New("xdr: input too short")
	// ErrTooLong: a length prefix exceeds the limit for that field.
	ErrTooLong = errors.New("xdr: length exceeds limit")
	// ErrRecordTooLarge: a record's fragments add up to more than the
	// reader's limit; the connection must be closed.
	ErrRecordTooLarge = errors.New("rpc: record too large")
	// ErrNotCall: the message is not an RPC call.
	ErrNotCall = errors.New("rpc: message is not a call")
	// ErrRPCVersion: the call uses an RPC version other than 2; the server
	// answers RPC_MISMATCH.
	ErrRPCVersion = errors.New("rpc: unsupported RPC version")
	// ErrBadCred: a credential or verifier could not be decoded; the server
	// answers AUTH_BADCRED.
	ErrBadCred = errors.New("rpc: malformed credential")
)
