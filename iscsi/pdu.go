package iscsi

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"time"
)

// bhsLen is the size of the Basic Header Segment.
const bhsLen = 48

// maxAHSLen is the largest Additional Header Segment the length field allows.
const maxAHSLen = 255 * 4

// Initiator opcodes (RFC 7143 section 11.1.1).
const (
	opNopOut     byte = 0x00
	opSCSICmd    byte = 0x01
	opTaskMgmt   byte = 0x02
	opLoginReq   byte = 0x03
	opTextReq    byte = 0x04
	opDataOut    byte = 0x05
	opLogoutReq  byte = 0x06
	opSNACK      byte = 0x10
	opNopIn      byte = 0x20
	opSCSIResp   byte = 0x21
	opTaskResp   byte = 0x22
	opLoginResp  byte = 0x23
	opTextResp   byte = 0x24
	opDataIn     byte = 0x25
	opLogoutResp byte = 0x26
	opR2T        byte = 0x31
	opAsync      byte = 0x32
	opReject     byte = 0x3f
)

// Reject reasons (RFC 7143 section 11.17.1).
const (
	rejectDataDigest     byte = 0x02
	rejectSNACK          byte = 0x03
	rejectProtocol       byte = 0x04
	rejectNotSupported   byte = 0x05
	rejectImmediate      byte = 0x06
	rejectTaskInProgress byte = 0x07
	rejectInvalidField   byte = 0x09
	rejectOutOfResources byte = 0x0a
	rejectWaitingLogout  byte = 0x0c
)

// reservedTag is the reserved task tag value 0xffffffff.
const reservedTag uint32 = 0xffffffff

// crc32c returns the CRC32C (Castagnoli) digest of the concatenated
// parts, as header and data digests use it (RFC 7143 section 13.1).
func crc32c(first []byte, rest ...[]byte) uint32 {
	tab := crc32.MakeTable(crc32.Castagnoli) // cached by the crc32 package
	crc := crc32.Checksum(first, tab)
	for _, r := range rest {
		crc = crc32.Update(crc, tab, r)
	}
	return crc
}

// bhs is a Basic Header Segment with accessors for the common fields.
type bhs [bhsLen]byte

func (h *bhs) opcode() byte    { return h[0] & 0x3f }
func (h *bhs) immediate() bool { return h[0]&0x40 != 0 }
func (h *bhs) final() bool     { return h[1]&0x80 != 0 }
func (h *bhs) ahsLen() int     { return int(h[4]) * 4 }
func (h *bhs) dataLen() int    { return int(h[5])<<16 | int(h[6])<<8 | int(h[7]) }
func (h *bhs) itt() uint32     { return h.u32(16) }

func (h *bhs) setDataLen(n int) {
	h[5] = byte(n >> 16)
	h[6] = byte(n >> 8)
	h[7] = byte(n)
}

func (h *bhs) u32(off int) uint32       { return binary.BigEndian.Uint32(h[off:]) }
func (h *bhs) setU32(off int, v uint32) { binary.BigEndian.PutUint32(h[off:], v) }
func (h *bhs) u16(off int) uint16       { return binary.BigEndian.Uint16(h[off:]) }
func (h *bhs) setU16(off int, v uint16) { binary.BigEndian.PutUint16(h[off:], v) }

// lun decodes the 8-byte LUN field at bytes 8..15 (SAM-5 peripheral and
// flat space addressing, single level). Other forms decode to noLUN.
func (h *bhs) lun() uint64 { return decodeLUN(h[8:16]) }

// setLUN encodes lun into bytes 8..15.
func (h *bhs) setLUN(lun uint64) { encodeLUN(h[8:16], lun) }

// noLUN is the LUN value that never names a logical unit.
const noLUN = ^uint64(0)

func decodeLUN(b []byte) uint64 {
	for _, x := range b[2:8] {
		if x != 0 {
			return noLUN
		}
	}
	switch b[0] >> 6 {
	case 0, 1:
		return uint64(b[0]&0x3f)<<8 | uint64(b[1])
	}
	return noLUN
}

func encodeLUN(b []byte, lun uint64) {
	clear(b[:8])
	if lun < 256 {
		b[1] = byte(lun)
		return
	}
	b[0] = 0x40 | byte(lun>>8)&0x3f
	b[1] = byte(lun)
}

// pad4 returns n rounded up to a multiple of 4.
func pad4(n int) int { return (n + 3) &^ 3 }

// pduReader reads PDUs from a connection in two steps: readHeader reads the
// BHS and AHS, then the caller reads the data segment into a buffer of its
// choice with readData (so write data lands straight in the command buffer)
// or drops it with discardData.
type pduReader struct {
	r            *bufio.Reader
	conn         net.Conn
	headerDigest bool
	dataDigest   bool
	// maxData is the largest data segment accepted (our declared
	// MaxRecvDataSegmentLength, or the login limit).
	maxData int
	// idle is the longest wait for the next PDU header (0: none); once a
	// header has started, the rest must arrive within ioTimeout.
	idle      time.Duration
	ioTimeout time.Duration
	// deadline, when set, bounds every read (the login phase).
	deadline time.Time

	hdr    bhs
	ahsBuf [maxAHSLen]byte
	ahs    []byte
	pad    [8]byte
}

func newPDUReader(conn net.Conn, maxData int) *pduReader {
	return &pduReader{r: bufio.NewReaderSize(conn, 64<<10), conn: conn, maxData: maxData}
}

// readHeader reads the next BHS, AHS and header digest.
func (p *pduReader) readHeader() error {
	if p.conn != nil {
		dl := p.deadline
		if p.idle > 0 && dl.IsZero() {
			dl = time.Now().Add(p.idle)
		}
		if err := p.conn.SetReadDeadline(dl); err != nil {
			return fmt.Errorf("iscsi: set read deadline: %w", err)
		}
	}
	if _, err := io.ReadFull(p.r, p.hdr[:1]); err != nil {
		return err
	}
	if p.conn != nil && p.ioTimeout > 0 && p.deadline.IsZero() {
		if err := p.conn.SetReadDeadline(time.Now().Add(p.ioTimeout)); err != nil {
			return fmt.Errorf("iscsi: set read deadline: %w", err)
		}
	}
	if _, err := io.ReadFull(p.r, p.hdr[1:]); err != nil {
		return fmt.Errorf("iscsi: short BHS: %w", noEOF(err))
	}
	n := p.hdr.ahsLen()
	p.ahs = p.ahsBuf[:n]
	if n > 0 {
		if _, err := io.ReadFull(p.r, p.ahs); err != nil {
			return fmt.Errorf("iscsi: short AHS: %w", noEOF(err))
		}
	}
	if p.headerDigest {
		if _, err := io.ReadFull(p.r, p.pad[:4]); err != nil {
			return fmt.Errorf("iscsi: short header digest: %w", noEOF(err))
		}
		crc := crc32c(p.hdr[:], p.ahs)
		if crc != binary.LittleEndian.Uint32(p.pad[:4]) {
			return fmt.Errorf("header: %w", errDigest)
		}
	}
	if d := p.hdr.dataLen(); d > p.maxData {
		return fmt.Errorf("%w: data segment %d > %d", errTooLarge, d, p.maxData)
	}
	return nil
}

// readData reads the data segment of the current PDU into dst, which must
// be exactly dataLen bytes long, and checks its digest. A digest mismatch
// is reported as errDigest after the whole segment was consumed, so the
// connection stays in sync.
func (p *pduReader) readData(dst []byte) error {
	if _, err := io.ReadFull(p.r, dst); err != nil {
		return fmt.Errorf("iscsi: short data segment: %w", noEOF(err))
	}
	return p.readTail(dst)
}

func (p *pduReader) readTail(data []byte) error {
	padN := pad4(len(data)) - len(data)
	tail := padN
	if p.dataDigest && len(data) > 0 {
		tail += 4
	}
	if tail == 0 {
		return nil
	}
	if _, err := io.ReadFull(p.r, p.pad[:tail]); err != nil {
		return fmt.Errorf("iscsi: short data padding: %w", noEOF(err))
	}
	if p.dataDigest && len(data) > 0 {
		crc := crc32c(data, p.pad[:padN])
		if crc != binary.LittleEndian.Uint32(p.pad[padN:tail]) {
			return fmt.Errorf("data: %w", errDigest)
		}
	}
	return nil
}

// discardData skips the current PDU's data segment (padding and digest
// included) without checking it.
func (p *pduReader) discardData() error {
	n := pad4(p.hdr.dataLen())
	if p.dataDigest && n > 0 {
		n += 4
	}
	if _, err := p.r.Discard(n); err != nil {
		return fmt.Errorf("iscsi: short data segment: %w", noEOF(err))
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// outPDU is one PDU to send: the header (with room for its digest), the
// data segment (not copied) and room for padding and data digest.
type outPDU struct {
	hdr  bhs
	hdig [4]byte
	data []byte
	tail [8]byte
	// flags say which sequence numbers the writer fills in.
	flags uint8
}

const (
	// pduStatSN: set StatSN at offset 24.
	pduStatSN uint8 = 1 << iota
	// pduAdvance: StatSN advances after this PDU.
	pduAdvance
	// pduWindow: set ExpCmdSN/MaxCmdSN at 28/32.
	pduWindow
)

// reset prepares the PDU for reuse.
func (o *outPDU) reset() {
	o.hdr = bhs{}
	o.data = nil
	o.flags = 0
}

// newPDUWriter returns a writer for conn.
func newPDUWriter(conn net.Conn, timeout time.Duration, window func() (exp, max uint32)) *pduWriter {
	w := &pduWriter{conn: conn, timeout: timeout, window: window}
	w.cond.L = &w.mu
	return w
}

// pduWriter serialises whole responses onto a connection, filling in
// StatSN and the CmdSN window under its lock so the numbers go out in
// order. Senders that find the connection busy queue their PDUs; the sender
// that is writing picks them up and sends them all with one vectored
// write (flat combining), so a burst of completions costs one syscall.
type pduWriter struct {
	mu           sync.Mutex
	cond         sync.Cond
	conn         net.Conn
	headerDigest bool
	dataDigest   bool
	timeout      time.Duration
	statSN       uint32
	window       func() (exp, max uint32)
	vec          [][]byte
	bufs         net.Buffers
	closed       bool
	err          error

	writing bool
	queue   [][]outPDU
	spare   [][]outPDU
	// next is the ticket of the next queued frame; done counts the frames
	// written (or failed).
	next, done uint64
}

// send writes pdus as one unit and returns once they are on the wire.
// Sequence numbers are filled in according to each PDU's flags.
func (w *pduWriter) send(pdus []outPDU) error {
	for i := range pdus {
		o := &pdus[i]
		o.hdr.setDataLen(len(o.data))
		if n := len(o.data); n > 0 {
			padN := pad4(n) - n
			clear(o.tail[:padN])
			if w.dataDigest {
				crc := crc32c(o.data, o.tail[:padN])
				binary.LittleEndian.PutUint32(o.tail[padN:], crc)
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return net.ErrClosed
	}
	ticket := w.next
	w.next++
	w.queue = append(w.queue, pdus)
	if w.writing {
		for w.done <= ticket {
			w.cond.Wait()
		}
		return w.err
	}
	w.writing = true
	for len(w.queue) > 0 && !w.closed {
		batch := w.queue
		w.queue = w.spare[:0]
		vec := w.build(batch)
		var err error
		if w.timeout > 0 {
			err = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		w.mu.Unlock()
		if err == nil {
			w.bufs = vec
			_, err = w.bufs.WriteTo(w.conn)
		}
		clear(vec)
		w.mu.Lock()
		w.vec = vec[:0]
		clear(batch)
		w.spare = batch[:0]
		w.done += uint64(len(batch))
		if err != nil {
			w.closed = true
			w.err = fmt.Errorf("iscsi: write: %w", err)
		}
		w.cond.Broadcast()
	}
	if w.closed {
		// Fail whatever is still queued.
		w.done += uint64(len(w.queue))
		clear(w.queue)
		w.queue = w.queue[:0]
		w.cond.Broadcast()
	}
	w.writing = false
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return net.ErrClosed
	}
	return nil
}

// build fills in the sequence numbers of a batch and returns its iovecs.
// Called with w.mu held.
func (w *pduWriter) build(batch [][]outPDU) [][]byte {
	var exp, maxSN uint32
	if w.window != nil {
		exp, maxSN = w.window()
	}
	vec := w.vec[:0]
	for _, pdus := range batch {
		for i := range pdus {
			o := &pdus[i]
			if o.flags&pduStatSN != 0 {
				o.hdr.setU32(24, w.statSN)
				if o.flags&pduAdvance != 0 {
					w.statSN++
				}
			}
			if o.flags&pduWindow != 0 {
				o.hdr.setU32(28, exp)
				o.hdr.setU32(32, maxSN)
			}
			if w.headerDigest {
				binary.LittleEndian.PutUint32(o.hdig[:], crc32c(o.hdr[:]))
				vec = append(vec, o.hdr[:], o.hdig[:])
			} else {
				vec = append(vec, o.hdr[:])
			}
			if n := len(o.data); n > 0 {
				t := pad4(n) - n
				if w.dataDigest {
					t += 4
				}
				vec = append(vec, o.data)
				if t > 0 {
					vec = append(vec, o.tail[:t])
				}
			}
		}
	}
	return vec
}

// setDigests switches digests on after login (under the lock, so no write
// is half done).
func (w *pduWriter) setDigests(header, data bool) {
	w.mu.Lock()
	w.headerDigest, w.dataDigest = header, data
	w.mu.Unlock()
}
