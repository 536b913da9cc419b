// Package rpc is the wire layer of Sluice's NFS front end: XDR encoding and
// decoding (RFC 4506), ONC RPC record marking and call/reply messages
// (RFC 5531), and the AUTH_NULL and AUTH_UNIX credential flavours.
//
// Everything here works on byte slices already read off the wire and never
// trusts a length it has not checked against the bytes that remain: every
// decoder is fuzzed (see fuzz_test.go and testdata/fuzz/).
package rpc
