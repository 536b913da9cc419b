package rpc

import "fmt"

// Message types, reply states and accept states (RFC 5531 section 9).
const (
	msgCall  = 0
	msgReply = 1

	replyAccepted = 0
	replyDenied   = 1

	rejectRPCMismatch = 0
	rejectAuthError   = 1
)

// AcceptStat is the status of an accepted reply.
type AcceptStat uint32

// Accept states.
const (
	Success      AcceptStat = 0
	ProgUnavail  AcceptStat = 1
	ProgMismatch AcceptStat = 2
	ProcUnavail  AcceptStat = 3
	GarbageArgs  AcceptStat = 4
	SystemErr    AcceptStat = 5
)

// AuthStat is the reason an authentication failed.
type AuthStat uint32

// Authentication failures used by Sluice.
const (
	AuthBadCred  AuthStat = 1
	AuthTooWeak  AuthStat = 5
	AuthRejected AuthStat = 2
)

// Authentication flavours.
const (
	AuthNull = 0
	AuthUnix = 1
)

// Limits on credential fields (RFC 5531 sections 8.2 and 14).
const (
	maxAuthBody    = 400
	maxMachineName = 255
	maxGids        = 16
)

// Cred is the decoded credential of a call.
type Cred struct {
	// Flavor is AuthNull, AuthUnix or another (unsupported) flavour.
	Flavor  uint32
	Machine string
	UID     uint32
	GID     uint32
	GIDs    []uint32
}

// Call is a decoded RPC call message.
type Call struct {
	XID  uint32
	Prog uint32
	Vers uint32
	Proc uint32
	Cred Cred
	// Args are the procedure's XDR arguments (aliasing the record).
	Args []byte
}

// ParseCall decodes a call message. When it returns ErrRPCVersion or
// ErrBadCred, the returned call's XID is valid and the server should send
// the matching rejection; other errors mean the message cannot be answered.
func ParseCall(rec []byte) (Call, error) {
	d := NewDecoder(rec)
	var c Call
	c.XID = d.Uint32()
	mtype := d.Uint32()
	if err := d.Err(); err != nil {
		return c, fmt.Errorf("call header: %w", err)
	}
	if mtype != msgCall {
		return c, ErrNotCall
	}
	rpcvers := d.Uint32()
	c.Prog = d.Uint32()
	c.Vers = d.Uint32()
	c.Proc = d.Uint32()
	if err := d.Err(); err != nil {
		return c, fmt.Errorf("call header: %w", err)
	}
	if rpcvers != 2 {
		return c, ErrRPCVersion
	}
	flavor := d.Uint32()
	body := d.Opaque(maxAuthBody)
	vflavor := d.Uint32()
	_ = vflavor
	d.Opaque(maxAuthBody)
	if err := d.Err(); err != nil {
		return c, fmt.Errorf("%w: %w", ErrBadCred, err)
	}
	cred, err := ParseCred(flavor, body)
	if err != nil {
		return c, err
	}
	c.Cred = cred
	c.Args = d.Remaining()
	return c, nil
}

// ParseCred decodes a credential body of the given flavour. Flavours other
// than AUTH_NULL and AUTH_UNIX are returned with only Flavor set.
func ParseCred(flavor uint32, body []byte) (Cred, error) {
	c := Cred{Flavor: flavor}
	if flavor != AuthUnix {
		return c, nil
	}
	d := NewDecoder(body)
	d.Uint32() // stamp
	c.Machine = d.String(maxMachineName)
	c.UID = d.Uint32()
	c.GID = d.Uint32()
	n := d.Uint32()
	if d.Err() == nil && n > maxGids {
		return c, fmt.Errorf("%w: %d supplementary groups", ErrBadCred, n)
	}
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		c.GIDs = append(c.GIDs, d.Uint32())
	}
	if err := d.Err(); err != nil {
		return c, fmt.Errorf("%w: auth_unix: %w", ErrBadCred, err)
	}
	return c, nil
}

// replyHeader starts a reply: four bytes reserved for the record mark, the
// XID and the reply message type.
func replyHeader(xid uint32, size int) *Encoder {
	e := &Encoder{B: make([]byte, 4, 4+24+size)}
	e.Uint32(xid)
	e.Uint32(msgReply)
	return e
}

// AcceptedReply returns an accepted reply with a null verifier, the given
// status and body, framed as one record.
func AcceptedReply(xid uint32, stat AcceptStat, body []byte) []byte {
	e := replyHeader(xid, len(body))
	e.Uint32(replyAccepted)
	e.Uint32(AuthNull)
	e.Uint32(0)
	e.Uint32(uint32(stat))
	e.B = append(e.B, body...)
	return FrameRecord(e.B)
}

// SuccessHeaderLen is the length of the header StartSuccess writes.
const SuccessHeaderLen = 4 + 4 + 4 + 4 + 8 + 4

// StartSuccess returns an encoder holding the header of an accepted,
// successful reply (record mark included), with room for size bytes of
// results: procedures append their results and FrameRecord frames it, so
// large replies are built without copying.
func StartSuccess(xid uint32, size int) *Encoder {
	return StartSuccessIn(xid, make([]byte, 0, SuccessHeaderLen+size))
}

// StartSuccessIn is StartSuccess building the reply in buf (reused from
// its start).
func StartSuccessIn(xid uint32, buf []byte) *Encoder {
	e := &Encoder{B: buf[:4]}
	e.Uint32(xid)
	e.Uint32(msgReply)
	e.Uint32(replyAccepted)
	e.Uint32(AuthNull)
	e.Uint32(0)
	e.Uint32(uint32(Success))
	return e
}

// MismatchReply returns a PROG_MISMATCH reply naming the supported version
// range, framed as one record.
func MismatchReply(xid uint32, low, high uint32) []byte {
	var b Encoder
	b.Uint32(low)
	b.Uint32(high)
	return AcceptedReply(xid, ProgMismatch, b.B)
}

// RPCMismatchReply returns the rejection of a call with an RPC version other
// than 2.
func RPCMismatchReply(xid uint32) []byte {
	e := replyHeader(xid, 12)
	e.Uint32(replyDenied)
	e.Uint32(rejectRPCMismatch)
	e.Uint32(2)
	e.Uint32(2)
	return FrameRecord(e.B)
}

// AuthErrorReply returns the rejection of a call whose credential is not
// acceptable.
func AuthErrorReply(xid uint32, stat AuthStat) []byte {
	e := replyHeader(xid, 8)
	e.Uint32(replyDenied)
	e.Uint32(rejectAuthError)
	e.Uint32(uint32(stat))
	return FrameRecord(e.B)
}

// EncodeCall builds a framed call message with the given credential, for
// Sluice's own clients and tests.
func EncodeCall(xid, prog, vers, proc uint32, cred Cred, args []byte) []byte {
	e := &Encoder{B: make([]byte, 4, 64+len(args))}
	e.Uint32(xid)
	e.Uint32(msgCall)
	e.Uint32(2)
	e.Uint32(prog)
	e.Uint32(vers)
	e.Uint32(proc)
	e.Uint32(cred.Flavor)
	if cred.Flavor == AuthUnix {
		var b Encoder
		b.Uint32(0)
		b.String(cred.Machine)
		b.Uint32(cred.UID)
		b.Uint32(cred.GID)
		b.Uint32(uint32(len(cred.GIDs)))
		for _, g := range cred.GIDs {
			b.Uint32(g)
		}
		e.Opaque(b.B)
	} else {
		e.Uint32(0)
	}
	e.Uint32(AuthNull)
	e.Uint32(0)
	e.B = append(e.B, args...)
	return FrameRecord(e.B)
}

// ParseReply decodes a reply to one of Sluice's own calls and returns its
// XID and result body; a reply that is not accepted with SUCCESS is an
// error.
func ParseReply(rec []byte) (uint32, []byte, error) {
	d := NewDecoder(rec)
	xid := d.Uint32()
	if d.Uint32() != msgReply {
		return xid, nil, fmt.Errorf("rpc: not a reply")
	}
	if st := d.Uint32(); st != replyAccepted {
		return xid, nil, fmt.Errorf("rpc: call denied (reject %d, stat %d)", d.Uint32(), d.Uint32())
	}
	d.Uint32()
	d.Opaque(maxAuthBody)
	stat := AcceptStat(d.Uint32())
	if err := d.Err(); err != nil {
		return xid, nil, fmt.Errorf("rpc reply: %w", err)
	}
	if stat != Success {
		return xid, nil, fmt.Errorf("rpc: call not executed (accept stat %d)", stat)
	}
	return xid, d.Remaining(), nil
}
