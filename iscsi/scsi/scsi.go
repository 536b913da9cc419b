// Package scsi holds the SCSI side of Sluice's iSCSI target: the contract
// between the iSCSI transport (package iscsi) and the logical units it serves,
// the sense-data error type that carries a SCSI status to the wire, and the
// SBC-3 direct-access disk emulation that block volumes plug into.
//
// The transport delivers each SCSI command to a LogicalUnit as a Command and
// turns the error it returns into a SCSI status and sense data with Status,
// the one place where errors become wire bytes.
package scsi

import (
	"context"
	"fmt"
)

// Nexus identifies the I_T nexus (SAM-5) a command arrived on: one iSCSI
// session between an initiator port and a target port.
type Nexus struct {
	// InitiatorName is the initiator's iSCSI name (IQN or EUI).
	InitiatorName string
	// ISID is the initiator session identifier from the login request.
	ISID [6]byte
	// TargetName is the iSCSI name of the target the session logged in to.
	TargetName string
	// TPGT is the target portal group tag.
	TPGT uint16
}

// InitiatorPortID returns the SCSI initiator port name of the nexus as
// RFC 7143 section 4.4 builds it ("<name>,i,0x<isid>").
func (n Nexus) InitiatorPortID() string {
	return fmt.Sprintf("%s,i,0x%012x", n.InitiatorName, n.ISID[:])
}

// TargetPortID returns the SCSI target port name of the nexus
// ("<name>,t,0x<tpgt>").
func (n Nexus) TargetPortID() string {
	return fmt.Sprintf("%s,t,0x%04x", n.TargetName, n.TPGT)
}

// Command is one SCSI command as the transport hands it to a LogicalUnit.
type Command struct {
	// Nexus is the I_T nexus the command arrived on.
	Nexus Nexus
	// LUN is the logical unit number addressed (already decoded from the
	// 8-byte LUN field).
	LUN uint64
	// CDB is the command descriptor block, including any additional CDB
	// bytes carried in an AHS.
	CDB []byte
	// Tag is the initiator task tag; it identifies the task for ABORT TASK.
	Tag uint32
	// Attr is the task attribute (0 untagged, 1 simple, 2 ordered, 3 head of
	// queue, 4 ACA) from the SCSI Command PDU.
	Attr byte
	// DataOut holds all data the initiator sent for the command (write-type
	// commands), in order. It is owned by the transport and valid only until
	// Execute returns.
	DataOut []byte
	// DataIn is the buffer for data to the initiator; its length is the
	// initiator's expected data-in transfer length. The logical unit writes
	// into it and returns how many bytes are valid. It is owned by the
	// transport and valid only until Execute returns.
	DataIn []byte
}

// LogicalUnit is what the target calls for every command addressed to one
// LUN. Disks, tape drives and media changers implement it. Implementations
// must be safe for concurrent use by several sessions.
type LogicalUnit interface {
	// Execute runs one command. It returns the number of bytes of
	// cmd.DataIn that hold data for the initiator, and nil for GOOD status
	// or an error that Status turns into a SCSI status and sense data
	// (typically a *SenseError or a StatusError). Any other error is
	// reported as a hardware error.
	Execute(ctx context.Context, cmd *Command) (dataIn int, err error)
	// Reset is called for LOGICAL UNIT RESET and TARGET WARM/COLD RESET task
	// management functions; the unit clears its task state and establishes
	// a unit attention for every I_T nexus, the one that requested the
	// reset (by) included, as SAM-5 requires.
	Reset(kind ResetKind, by Nexus)
	// NexusLost is called when a session ends, so the unit can drop state
	// held for that nexus (RESERVE(6) reservations, pending unit attentions).
	NexusLost(n Nexus)
}

// ResetKind names the task management function that reset a logical unit.
type ResetKind int

// Reset kinds.
const (
	ResetLogicalUnit ResetKind = iota + 1
	ResetTargetWarm
	ResetTargetCold
)

// BlockDevice is the storage behind a Disk: a volume addressed by byte
// offset. Offsets and lengths passed by Disk are always multiples of the
// disk's logical block size. Implementations must be safe for concurrent use.
type BlockDevice interface {
	// ReadAt fills p with the device's bytes at off.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt stores p at off. With fua the data must be durable before
	// WriteAt returns (SBC Force Unit Access).
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	// Flush makes every completed write durable (SYNCHRONIZE CACHE).
	Flush(ctx context.Context) error
	// Size is the device size in bytes.
	Size() int64
}

// Unmapper is implemented by block devices that can deallocate ranges
// (UNMAP, WRITE SAME with the UNMAP bit). Deallocated ranges read as zeros.
type Unmapper interface {
	Unmap(ctx context.Context, off, length int64) error
}

// MappingReporter is implemented by block devices that can tell which
// ranges are allocated (GET LBA STATUS). Mapped reports whether the range
// starting at off is mapped and how many bytes from off share that state.
type MappingReporter interface {
	Mapped(ctx context.Context, off int64) (mapped bool, run int64, err error)
}

// SAM status codes.
const (
	StatusGood                byte = 0x00
	StatusCheckCondition      byte = 0x02
	StatusConditionMet        byte = 0x04
	StatusBusy                byte = 0x08
	StatusReservationConflict byte = 0x18
	StatusTaskSetFull         byte = 0x28
	StatusACAActive           byte = 0x30
	StatusTaskAborted         byte = 0x40
)
