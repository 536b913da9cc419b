package nfs

import (
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// maxIO is the largest READ or WRITE (rtmax and wtmax in FSINFO).
const maxIO = 1 << 20

// time_how values of sattr3.
const (
	timeDontChange = 0
	timeServer     = 1
	timeClient     = 2
)

// sattr is a decoded sattr3: the attributes a client asks to set.
type sattr struct {
	setMode, setUID, setGID, setSize bool
	mode, uid, gid                   uint32
	size                             uint64
	atime, mtime                     uint32 // time_how
	atimeVal, mtimeVal               time.Time
}

func decodeTime(d *rpc.Decoder) time.Time {
	sec := d.Uint32()
	nsec := d.Uint32()
	return time.Unix(int64(sec), int64(nsec%1e9))
}

// decodeSattr decodes a sattr3.
func decodeSattr(d *rpc.Decoder) sattr {
	var s sattr
	if s.setMode = d.Bool(); s.setMode {
		s.mode = d.Uint32()
	}
	if s.setUID = d.Bool(); s.setUID {
		s.uid = d.Uint32()
	}
	if s.setGID = d.Bool(); s.setGID {
		s.gid = d.Uint32()
	}
	if s.setSize = d.Bool(); s.setSize {
		s.size = d.Uint64()
	}
	if s.atime = d.Uint32(); s.atime == timeClient {
		s.atimeVal = decodeTime(d)
	} else if s.atime > timeClient {
		d.Fixed(-1) // poison the decoder
	}
	if s.mtime = d.Uint32(); s.mtime == timeClient {
		s.mtimeVal = decodeTime(d)
	} else if s.mtime > timeClient {
		d.Fixed(-1)
	}
	return s
}

// decodeDirop decodes a diropargs3 (directory handle and name).
func decodeDirop(d *rpc.Decoder) ([]byte, string) {
	fh := d.Opaque(64)
	name := d.String(maxPathLen)
	return fh, name
}

func putTime(e *rpc.Encoder, t time.Time) {
	s := t.Unix()
	if s < 0 {
		e.Uint32(0)
		e.Uint32(0)
		return
	}
	e.Uint32(uint32(s))
	e.Uint32(uint32(t.Nanosecond()))
}

// putFattr encodes a fattr3.
func (x *share) putFattr(e *rpc.Encoder, id uint64, a attrs) {
	e.Uint32(uint32(a.typ))
	e.Uint32(a.mode & 0o7777)
	if a.typ == typeDir {
		e.Uint32(2)
	} else {
		e.Uint32(1)
	}
	e.Uint32(a.uid)
	e.Uint32(a.gid)
	e.Uint64(uint64(a.size))
	e.Uint64(uint64((a.size + 4095) &^ 4095))
	e.Uint64(0) // rdev
	e.Uint64(x.id)
	e.Uint64(id)
	putTime(e, a.atime)
	putTime(e, a.mtime)
	putTime(e, a.ctime)
}

// putPostOp encodes a post_op_attr.
func (x *share) putPostOp(e *rpc.Encoder, id uint64, a attrs, ok bool) {
	e.Bool(ok)
	if ok {
		x.putFattr(e, id, a)
	}
}

// putWcc encodes a wcc_data with no pre-operation attributes.
func (x *share) putWcc(e *rpc.Encoder, id uint64, a attrs, ok bool) {
	e.Bool(false)
	x.putPostOp(e, id, a, ok)
}

// putNewObj encodes post_op_fh3 and post_op_attr of a created object.
func (x *share) putNewObj(e *rpc.Encoder, id uint64, a attrs) {
	e.Bool(true)
	e.Opaque(encodeHandle(x.id, id))
	x.putPostOp(e, id, a, true)
}
