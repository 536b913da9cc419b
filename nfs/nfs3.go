package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// NFSv3 procedures (RFC 1813 section 3).
const (
	procNull = iota
	procGetattr
	procSetattr
	procLookup
	procAccess
	procReadlink
	procRead
	procWrite
	procCreate
	procMkdir
	procSymlink
	procMknod
	procRemove
	procRmdir
	procRename
	procLink
	procReaddir
	procReaddirplus
	procFsstat
	procFsinfo
	procPathconf
	procCommit
)

// request is one NFS call being served.
type request struct {
	ctx  context.Context
	x    *share
	who  ident
	d    *rpc.Decoder
	id   uint64 // file id of the first handle
	path string // its path
	// tail, when a handler sets it, is sent after the reply (READ data
	// straight from a cache data file).
	tail *fileTail
}

// fileTail is READ data sent from a cache data file after the reply that
// announces it, with sendfile where the connection supports it, instead of
// being read into the reply: the page cache goes to the socket without a
// copy through the server's memory.
type fileTail struct {
	f   *os.File // opened for this reply, closed once sent
	off int64
	n   int // bytes announced; zeros follow where the data file ends before
}

// padded is the number of bytes the tail takes on the wire.
func (t *fileTail) padded() int { return t.n + (4-t.n%4)%4 }

// procInfo describes one procedure: its handler, whether it changes
// anything (refused on read-only shares), and how many XDR words of
// "false" (absent attributes) follow the status in its failure reply.
type procInfo struct {
	fn        func(r *request, e *rpc.Encoder) error
	mutating  bool
	failWords int
}

// procFor returns the description of an NFSv3 procedure (not NULL).
func procFor(proc uint32) (procInfo, bool) {
	switch proc {
	case procGetattr:
		return procInfo{fn: nfsGetattr}, true
	case procSetattr:
		return procInfo{fn: nfsSetattr, mutating: true, failWords: 2}, true
	case procLookup:
		return procInfo{fn: nfsLookup, failWords: 1}, true
	case procAccess:
		return procInfo{fn: nfsAccess, failWords: 1}, true
	case procReadlink:
		return procInfo{fn: nfsReadlink, failWords: 1}, true
	case procRead:
		return procInfo{fn: nfsRead, failWords: 1}, true
	case procWrite:
		return procInfo{fn: nfsWrite, mutating: true, failWords: 2}, true
	case procCreate:
		return procInfo{fn: nfsCreate, mutating: true, failWords: 2}, true
	case procMkdir:
		return procInfo{fn: nfsMkdir, mutating: true, failWords: 2}, true
	case procSymlink:
		return procInfo{fn: nfsSymlink, mutating: true, failWords: 2}, true
	case procMknod:
		return procInfo{fn: nfsNotSupp, mutating: true, failWords: 2}, true
	case procRemove:
		return procInfo{fn: nfsRemove, mutating: true, failWords: 2}, true
	case procRmdir:
		return procInfo{fn: nfsRmdir, mutating: true, failWords: 2}, true
	case procRename:
		return procInfo{fn: nfsRename, mutating: true, failWords: 4}, true
	case procLink:
		return procInfo{fn: nfsNotSupp, mutating: true, failWords: 3}, true
	case procReaddir:
		return procInfo{fn: nfsReaddir, failWords: 1}, true
	case procReaddirplus:
		return procInfo{fn: nfsReaddirplus, failWords: 1}, true
	case procFsstat:
		return procInfo{fn: nfsFsstat, failWords: 1}, true
	case procFsinfo:
		return procInfo{fn: nfsFsinfo, failWords: 1}, true
	case procPathconf:
		return procInfo{fn: nfsPathconf, failWords: 1}, true
	case procCommit:
		return procInfo{fn: nfsCommit, mutating: true, failWords: 2}, true
	}
	return procInfo{}, false
}

// nfsCall answers an NFSv3 call. This is the one place where a handler's
// error becomes a wire status.
func (s *Server) nfsCall(ctx context.Context, client netip.Addr, call rpc.Call) reply {
	if call.Proc == procNull {
		return reply{b: rpc.AcceptedReply(call.XID, rpc.Success, nil)}
	}
	pi, ok := procFor(call.Proc)
	if !ok {
		return reply{b: rpc.AcceptedReply(call.XID, rpc.ProcUnavail, nil)}
	}
	d := rpc.NewDecoder(call.Args)
	fh := d.Opaque(64)
	if d.Err() != nil {
		return reply{b: rpc.AcceptedReply(call.XID, rpc.GarbageArgs, nil)}
	}
	var (
		e    *rpc.Encoder
		tail *fileTail
	)
	if call.Proc == procRead || call.Proc == procReaddir || call.Proc == procReaddirplus {
		// Large replies are built in a recycled buffer (serveConn puts it
		// back once sent).
		e = rpc.StartSuccessIn(call.XID, *s.bufs.Get().(*[]byte))
	} else {
		e = rpc.StartSuccess(call.XID, 512)
	}
	e.Uint32(uint32(StatusOK))
	err := func() error {
		sid, id, ok := decodeHandle(fh)
		if !ok {
			return statusErr(StatusBadHandle, nil)
		}
		x := s.lookupShareByID(sid)
		if x == nil {
			return statusErr(StatusStale, nil)
		}
		if !x.allowed(client) {
			return statusErr(StatusAccess, errors.New("client not allowed"))
		}
		if pi.mutating && x.cfg.ReadOnly {
			return statusErr(StatusROFS, nil)
		}
		p, ok := x.handles.path(id)
		if !ok {
			return statusErr(StatusStale, nil)
		}
		r := &request{ctx: ctx, x: x, who: x.identity(call.Cred), d: d, id: id, path: p}
		err := pi.fn(r, e)
		tail = r.tail
		return err
	}()
	if err != nil && tail != nil {
		tail.f.Close()
		tail = nil
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("nfs call", "proc", call.Proc, "err", err)
	}
	if errors.Is(err, errBadArgs) {
		return reply{b: rpc.AcceptedReply(call.XID, rpc.GarbageArgs, nil)}
	}
	if err != nil {
		st := statusOf(err)
		if st == StatusNoEnt && (call.Proc != procLookup && call.Proc != procRemove &&
			call.Proc != procRmdir && call.Proc != procRename) {
			st = StatusStale // the object of a handle has gone
		}
		if st == StatusIO || st == StatusJukebox || st == StatusServerFault {
			s.log.Warn("nfs call failed", "proc", call.Proc, "status", uint32(st), "err", err)
		}
		e.B = e.B[:rpc.SuccessHeaderLen]
		e.Uint32(uint32(st))
		for range pi.failWords {
			e.Uint32(0)
		}
	}
	if tail != nil {
		return reply{b: rpc.FrameRecordExtra(e.B, tail.padded()), tail: tail}
	}
	return reply{b: rpc.FrameRecord(e.B)}
}

// done checks that the arguments decoded.
func (r *request) done() error {
	if r.d.Err() != nil {
		return errBadArgs
	}
	return nil
}

// resolve turns another handle of the same call into a path.
func (r *request) resolve(fh []byte) (uint64, string, error) {
	sid, id, ok := decodeHandle(fh)
	if !ok {
		return 0, "", statusErr(StatusBadHandle, nil)
	}
	if sid != r.x.id {
		return 0, "", statusErr(StatusXDev, nil)
	}
	p, ok := r.x.handles.path(id)
	if !ok {
		return 0, "", statusErr(StatusStale, nil)
	}
	return id, p, nil
}

func nfsNotSupp(r *request, e *rpc.Encoder) error {
	return statusErr(StatusNotSupp, errors.New("hard links and device files are not supported"))
}

func nfsGetattr(r *request, e *rpc.Encoder) error {
	if err := r.done(); err != nil {
		return err
	}
	a, err := r.x.stat(r.ctx, r.path)
	if err != nil {
		return err
	}
	r.x.putFattr(e, r.id, a)
	return nil
}

func nfsSetattr(r *request, e *rpc.Encoder) error {
	sa := decodeSattr(r.d)
	var guard *time.Time
	if r.d.Bool() {
		t := decodeTime(r.d)
		guard = &t
	}
	if err := r.done(); err != nil {
		return err
	}
	a, err := r.x.setattr(r.ctx, r.path, sa, r.who, guard)
	if err != nil {
		return err
	}
	r.x.putWcc(e, r.id, a, true)
	return nil
}

func nfsLookup(r *request, e *rpc.Encoder) error {
	name := r.d.String(maxPathLen)
	if err := r.done(); err != nil {
		return err
	}
	p, a, err := r.x.lookup(r.ctx, r.path, name, r.who)
	if err != nil {
		return err
	}
	id := r.x.handles.id(p)
	e.Opaque(encodeHandle(r.x.id, id))
	r.x.putPostOp(e, id, a, true)
	da, err := r.x.stat(r.ctx, r.path)
	r.x.putPostOp(e, r.id, da, err == nil)
	return nil
}

// ACCESS3 bits.
const (
	accessRead    = 0x01
	accessLookup  = 0x02
	accessModify  = 0x04
	accessExtend  = 0x08
	accessDelete  = 0x10
	accessExecute = 0x20
)

func nfsAccess(r *request, e *rpc.Encoder) error {
	want := r.d.Uint32()
	if err := r.done(); err != nil {
		return err
	}
	a, err := r.x.stat(r.ctx, r.path)
	if err != nil {
		return err
	}
	var got uint32
	if may(a, r.who, permR) {
		got |= accessRead
	}
	if may(a, r.who, permW) && !r.x.cfg.ReadOnly {
		got |= accessModify | accessExtend | accessDelete
	}
	if may(a, r.who, permX) {
		if a.typ == typeDir {
			got |= accessLookup
		} else {
			got |= accessExecute
		}
	}
	r.x.putPostOp(e, r.id, a, true)
	e.Uint32(got & want)
	return nil
}

func nfsReadlink(r *request, e *rpc.Encoder) error {
	if err := r.done(); err != nil {
		return err
	}
	t, a, err := r.x.readlink(r.ctx, r.path)
	if err != nil {
		return err
	}
	r.x.putPostOp(e, r.id, a, true)
	e.String(t)
	return nil
}

func nfsRead(r *request, e *rpc.Encoder) error {
	off := r.d.Uint64()
	n := min(r.d.Uint32(), maxIO)
	if err := r.done(); err != nil {
		return err
	}
	// Data in a cache data file is sent from it after the reply (a
	// fileTail). Other data is read straight into its place in the reply,
	// behind the post-op attributes, count, eof and opaque length
	// (readHeader bytes), instead of into a buffer that is then copied.
	start := len(e.B)
	e.B = slices.Grow(e.B, readHeader+int(n)+3)
	dst := e.B[start+readHeader : start+readHeader+int(n)]
	b, df, eof, a, err := r.x.read(r.ctx, r.id, r.path, off, dst, r.who, true)
	if err != nil {
		return err
	}
	r.x.putPostOp(e, r.id, a, true)
	e.Uint32(uint32(len(b)))
	e.Bool(eof)
	e.Uint32(uint32(len(b)))
	if len(e.B) != start+readHeader {
		if df != nil {
			df.Close()
		}
		return fmt.Errorf("READ reply header of %d bytes, want %d", len(e.B)-start, readHeader)
	}
	if df != nil {
		r.tail = &fileTail{f: df, off: int64(off), n: len(b)}
		return nil
	}
	e.B = e.B[:len(e.B)+len(b)] // read returns dst cut to the bytes read
	e.B = append(e.B, make([]byte, (4-len(b)%4)%4)...)
	return nil
}

// readHeader is the size of a successful READ reply before its data:
// post_op_attr (a bool and an 84-byte fattr3), count, eof and the opaque's
// length.
const readHeader = 4 + 84 + 4 + 4 + 4

// stable_how values of WRITE.
const (
	unstable = 0
	dataSync = 1
	fileSync = 2
)

func nfsWrite(r *request, e *rpc.Encoder) error {
	off := r.d.Uint64()
	count := r.d.Uint32()
	stable := r.d.Uint32()
	data := r.d.Opaque(maxIO)
	if err := r.done(); err != nil {
		return err
	}
	if stable > fileSync || int(count) > len(data) {
		return errBadArgs
	}
	data = data[:count]
	a, err := r.x.write(r.ctx, r.id, r.path, off, data, stable != unstable, r.who)
	if err != nil {
		return err
	}
	r.x.putWcc(e, r.id, a, true)
	e.Uint32(count)
	if stable == unstable {
		e.Uint32(unstable)
	} else {
		e.Uint32(fileSync)
	}
	e.Uint64(r.x.srv.verf)
	return nil
}

// createhow3 modes.
const (
	createUnchecked = 0
	createGuarded   = 1
	createExclusive = 2
)

func nfsCreate(r *request, e *rpc.Encoder) error {
	name := r.d.String(maxPathLen)
	mode := r.d.Uint32()
	var sa sattr
	var verf []byte
	switch mode {
	case createUnchecked, createGuarded:
		sa = decodeSattr(r.d)
	case createExclusive:
		verf = append([]byte(nil), r.d.Fixed(8)...)
	default:
		return errBadArgs
	}
	if err := r.done(); err != nil {
		return err
	}
	p, a, err := r.x.create(r.ctx, r.path, name, r.who, sa, mode == createGuarded, verf)
	if err != nil {
		return err
	}
	r.putCreated(e, p, a)
	return nil
}

// putCreated encodes the common tail of CREATE, MKDIR and SYMLINK.
func (r *request) putCreated(e *rpc.Encoder, p string, a attrs) {
	r.x.putNewObj(e, r.x.handles.id(p), a)
	da, err := r.x.stat(r.ctx, r.path)
	r.x.putWcc(e, r.id, da, err == nil)
}

func nfsMkdir(r *request, e *rpc.Encoder) error {
	name := r.d.String(maxPathLen)
	sa := decodeSattr(r.d)
	if err := r.done(); err != nil {
		return err
	}
	p, a, err := r.x.mkdir(r.ctx, r.path, name, r.who, sa)
	if err != nil {
		return err
	}
	r.putCreated(e, p, a)
	return nil
}

func nfsSymlink(r *request, e *rpc.Encoder) error {
	name := r.d.String(maxPathLen)
	sa := decodeSattr(r.d)
	target := r.d.String(maxPathLen)
	if err := r.done(); err != nil {
		return err
	}
	p, a, err := r.x.symlink(r.ctx, r.path, name, target, r.who, sa)
	if err != nil {
		return err
	}
	r.putCreated(e, p, a)
	return nil
}

func nfsRemove(r *request, e *rpc.Encoder) error {
	name := r.d.String(maxPathLen)
	if err := r.done(); err != nil {
		return err
	}
	if err := r.x.remove(r.ctx, r.path, name, r.who); err != nil {
		return err
	}
	da, err := r.x.stat(r.ctx, r.path)
	r.x.putWcc(e, r.id, da, err == nil)
	return nil
}

func nfsRmdir(r *request, e *rpc.Encoder) error {
	name := r.d.String(maxPathLen)
	if err := r.done(); err != nil {
		return err
	}
	if err := r.x.rmdir(r.ctx, r.path, name, r.who); err != nil {
		return err
	}
	da, err := r.x.stat(r.ctx, r.path)
	r.x.putWcc(e, r.id, da, err == nil)
	return nil
}

func nfsRename(r *request, e *rpc.Encoder) error {
	fromName := r.d.String(maxPathLen)
	toFH, toName := decodeDirop(r.d)
	if err := r.done(); err != nil {
		return err
	}
	toID, toDir, err := r.resolve(toFH)
	if err != nil {
		return err
	}
	if err := r.x.rename(r.ctx, r.path, fromName, toDir, toName, r.who); err != nil {
		return err
	}
	fa, ferr := r.x.stat(r.ctx, r.path)
	r.x.putWcc(e, r.id, fa, ferr == nil)
	ta, terr := r.x.stat(r.ctx, toDir)
	r.x.putWcc(e, toID, ta, terr == nil)
	return nil
}

// entry sizes for READDIR accounting (XDR bytes per entry without name).
const (
	entryBase     = 4 + 8 + 4 + 8 // value_follows, fileid, name length, cookie
	entryPlusBase = entryBase + 4 + 84 + 4 + 4 + handleLen
)

func nfsReaddir(r *request, e *rpc.Encoder) error { return readdir(r, e, false) }

func nfsReaddirplus(r *request, e *rpc.Encoder) error { return readdir(r, e, true) }

// readdir serves READDIR and READDIRPLUS. Cookies are positions in the
// sorted listing: 1 is ".", 2 is "..", n+3 the n-th entry.
func readdir(r *request, e *rpc.Encoder, plus bool) error {
	cookie := r.d.Uint64()
	r.d.Fixed(8) // cookie verifier: not used, listings are sorted
	count := r.d.Uint32()
	if plus {
		count = r.d.Uint32() // maxcount bounds the reply
	}
	if err := r.done(); err != nil {
		return err
	}
	ents, da, err := r.x.readdir(r.ctx, r.path, r.who)
	if err != nil {
		return err
	}
	r.x.putPostOp(e, r.id, da, true)
	e.Uint64(0) // cookie verifier
	budget := int(min(count, maxIO)) - len(e.B) - 16
	parent, _ := splitPath(r.path)
	all := make([]entry, 0, len(ents)+2)
	if r.path == "" {
		all = append(all, entry{name: ".", id: r.id, a: da}, entry{name: "..", id: r.id, a: da})
	} else {
		pa, _ := r.x.stat(r.ctx, parent)
		all = append(all, entry{name: ".", id: r.id, a: da}, entry{name: "..", id: r.x.handles.id(parent), a: pa})
	}
	all = append(all, ents...)
	eof := true
	for i := int(min(cookie, uint64(len(all)))); i < len(all); i++ {
		en := all[i]
		size := entryBase + (len(en.name)+3)&^3
		if plus {
			size += entryPlusBase - entryBase
		}
		if budget < size {
			eof = false
			break
		}
		budget -= size
		e.Bool(true)
		e.Uint64(en.id)
		e.String(en.name)
		e.Uint64(uint64(i + 1))
		if plus {
			r.x.putPostOp(e, en.id, en.a, true)
			e.Bool(true)
			e.Opaque(encodeHandle(r.x.id, en.id))
		}
	}
	if !eof && cookie < uint64(len(all)) && len(e.B) <= 8+88+8 {
		return statusErr(StatusInval, errors.New("READDIR reply too small for one entry"))
	}
	e.Bool(false)
	e.Bool(eof)
	return nil
}

func nfsFsstat(r *request, e *rpc.Encoder) error {
	if err := r.done(); err != nil {
		return err
	}
	a, err := r.x.stat(r.ctx, r.path)
	r.x.putPostOp(e, r.id, a, err == nil)
	const big = 1 << 50
	e.Uint64(big) // tbytes
	e.Uint64(big) // fbytes
	e.Uint64(big) // abytes
	e.Uint64(big) // tfiles
	e.Uint64(big) // ffiles
	e.Uint64(big) // afiles
	e.Uint32(0)   // invarsec
	return nil
}

// FSINFO properties.
const (
	fsfSymlink     = 0x02
	fsfHomogeneous = 0x08
	fsfCanSetTime  = 0x10
)

func nfsFsinfo(r *request, e *rpc.Encoder) error {
	if err := r.done(); err != nil {
		return err
	}
	a, err := r.x.stat(r.ctx, r.path)
	r.x.putPostOp(e, r.id, a, err == nil)
	e.Uint32(maxIO) // rtmax
	e.Uint32(maxIO) // rtpref
	e.Uint32(4096)  // rtmult
	e.Uint32(maxIO) // wtmax
	e.Uint32(maxIO) // wtpref
	e.Uint32(4096)  // wtmult
	e.Uint32(65536) // dtpref
	e.Uint64(maxFileSize)
	e.Uint32(0) // time_delta: 1 ns
	e.Uint32(1)
	e.Uint32(fsfSymlink | fsfHomogeneous | fsfCanSetTime)
	return nil
}

func nfsPathconf(r *request, e *rpc.Encoder) error {
	if err := r.done(); err != nil {
		return err
	}
	a, err := r.x.stat(r.ctx, r.path)
	r.x.putPostOp(e, r.id, a, err == nil)
	e.Uint32(1)       // linkmax
	e.Uint32(maxName) // name_max
	e.Bool(true)      // no_trunc
	e.Bool(true)      // chown_restricted
	e.Bool(false)     // case_insensitive
	e.Bool(true)      // case_preserving
	return nil
}

func nfsCommit(r *request, e *rpc.Encoder) error {
	r.d.Uint64()
	r.d.Uint32()
	if err := r.done(); err != nil {
		return err
	}
	if err := r.x.commit(r.id); err != nil {
		return err
	}
	a, err := r.x.stat(r.ctx, r.path)
	r.x.putWcc(e, r.id, a, err == nil)
	e.Uint64(r.x.srv.verf)
	return nil
}
