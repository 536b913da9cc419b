// Package iscsi is Sluice's iSCSI target (RFC 7143): it accepts initiator
// connections, runs the login phase with text-key negotiation and CHAP
// authentication, serves discovery sessions (SendTargets) and normal sessions,
// and hands each SCSI command to the scsi.LogicalUnit that owns the addressed
// LUN.
//
// A Server holds a set of Targets, each an iSCSI name with its LUNs, optional
// CHAP credentials and an optional initiator allow-list. Serve accepts
// connections on a listener; Shutdown stops accepting, ends the sessions and
// waits for the commands in flight.
//
// Every connection has one goroutine that reads PDUs and one write path that
// sends whole responses with vectored writes. SCSI commands run concurrently,
// bounded per session by the queue depth that the CmdSN window advertises.
// Data buffers come from size-classed pools; write data is received straight
// into the buffer handed to the logical unit and read data is sent straight
// from the buffer the logical unit filled.
package iscsi
