// Package iscsitest is a small iSCSI initiator for tests: it logs in to a
// target (optionally with one-way or mutual CHAP), runs SCSI commands with
// immediate, unsolicited and solicited (R2T) data, discovers targets with
// SendTargets, sends task management functions and logs out. Commands may
// be issued from several goroutines at once; the CmdSN window is honoured.
//
// It is meant for Sluice's own tests (iSCSI disks, tapes, changers), not
// for production use.
package iscsitest

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Options configure a login.
type Options struct {
	// InitiatorName defaults to "iqn.2026-11.io.sluicegw:iscsitest".
	InitiatorName string
	// TargetName is the target to log in to; empty (with Discovery) makes
	// a discovery session.
	TargetName string
	// Discovery asks for a discovery session.
	Discovery bool
	// ISID is the initiator session ID (default 0x80 0 0 0 0 1).
	ISID [6]byte
	// CHAPUser and CHAPSecret, when set, authenticate with CHAP.
	CHAPUser, CHAPSecret string
	// MutualUser and MutualSecret, when set, make the initiator
	// authenticate the target too (mutual CHAP).
	MutualUser, MutualSecret string
	// CHAPAlgorithms is the CHAP_A list offered (default "7,5").
	CHAPAlgorithms string
	// HeaderDigest and DataDigest ask for CRC32C digests.
	HeaderDigest, DataDigest bool
	// InitialR2T and ImmediateData are the values proposed (defaults: No
	// and Yes, as most initiators do: set NoImmediateData / InitialR2T to
	// change them).
	InitialR2T      bool
	NoImmediateData bool
	// MaxRecvDataSegmentLength declared by the initiator (default 262144).
	MaxRecvDataSegmentLength int
	// MaxBurstLength and FirstBurstLength proposed (defaults 1 MiB and
	// 256 KiB).
	MaxBurstLength, FirstBurstLength int
	// ExtraKeys are sent in the operational stage as they are
	// (key, value, key, value...).
	ExtraKeys []string
}

// LoginError is a login refused by the target.
type LoginError struct {
	Class, Detail byte
}

// Error implements error.
func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsitest: login failed with status 0x%02x%02x", e.Class, e.Detail)
}

// IsAuthFailure reports an authentication failure (0x0201).
func (e *LoginError) IsAuthFailure() bool { return e.Class == 2 && e.Detail == 1 }

// Response is the outcome of a SCSI command.
type Response struct {
	Status    byte
	Sense     []byte
	Data      []byte
	Residual  int
	Overflow  bool
	Underflow bool
}

// Params are the negotiated values the client uses.
type Params struct {
	TargetMaxRecv    int
	MaxBurstLength   int
	FirstBurstLength int
	InitialR2T       bool
	ImmediateData    bool
	HeaderDigest     bool
	DataDigest       bool
	TSIH             uint16
	Keys             map[string]string
}

// Client is one connection to a target.
type Client struct {
	conn net.Conn

	wmu sync.Mutex // serialises writes

	mu       sync.Mutex
	cond     sync.Cond
	cmdSN    uint32
	expCmd   uint32
	maxCmd   uint32
	expStat  uint32
	itt      uint32
	pending  map[uint32]*call
	params   Params
	loggedIn bool
	err      error
	async    []byte
	done     chan struct{}
	isid     [6]byte
	// ticket and serving keep numbered PDUs on the wire in CmdSN order.
	ticket, serving uint64
}

type call struct {
	dataOut []byte
	dataIn  []byte
	lun     [8]byte
	got     int
	resp    *PDU
	ch      chan struct{}
}

// Dial connects to a target portal.
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("iscsitest: dial: %w", err)
	}
	c := &Client{conn: nc, pending: make(map[uint32]*call), done: make(chan struct{}), itt: 0x10}
	c.cond.L = &c.mu
	return c, nil
}

// Conn returns the underlying connection (for tests that misbehave on
// purpose).
func (c *Client) Conn() net.Conn { return c.conn }

// Params returns the negotiated parameters.
func (c *Client) Params() Params { return c.params }

// Close closes the connection without logging out.
func (c *Client) Close() error {
	err := c.conn.Close()
	if c.loggedIn {
		<-c.done
	}
	return err
}

func (c *Client) write(p *PDU) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(p.Encode(c.params.HeaderDigest, c.params.DataDigest))
	return err
}

func chapHash(alg int) (func() hash.Hash, bool) {
	switch alg {
	case 5:
		return md5.New, true
	case 6:
		return sha1.New, true
	case 7:
		return sha256.New, true
	case 8:
		return func() hash.Hash { return sha3.New256() }, true
	}
	return nil, false
}

func chapResponse(alg int, id byte, secret string, challenge []byte) []byte {
	hf, _ := chapHash(alg)
	h := hf()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

func decodeBinary(v string) ([]byte, error) {
	if len(v) > 2 && (v[:2] == "0x" || v[:2] == "0X") {
		return hex.DecodeString(v[2:])
	}
	return nil, fmt.Errorf("iscsitest: unsupported binary value %q", v)
}

// Login runs the login phase. The context bounds the whole login.
func (c *Client) Login(ctx context.Context, o Options) error {
	if o.InitiatorName == "" {
		o.InitiatorName = "iqn.2026-11.io.sluicegw:iscsitest"
	}
	if o.ISID == ([6]byte{}) {
		o.ISID = [6]byte{0x80, 0, 0, 0, 0, 1}
	}
	if o.CHAPAlgorithms == "" {
		o.CHAPAlgorithms = "7,5"
	}
	if o.MaxRecvDataSegmentLength == 0 {
		o.MaxRecvDataSegmentLength = 262144
	}
	if o.MaxBurstLength == 0 {
		o.MaxBurstLength = 1 << 20
	}
	if o.FirstBurstLength == 0 {
		o.FirstBurstLength = 256 << 10
	}
	c.isid = o.ISID
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
		defer c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c.cmdSN = 1
	c.params = Params{TargetMaxRecv: 8192, MaxBurstLength: 262144, FirstBurstLength: 65536,
		InitialR2T: true, ImmediateData: true, Keys: map[string]string{}}
	first := []string{"InitiatorName", o.InitiatorName}
	if o.Discovery {
		first = append(first, "SessionType", "Discovery")
	} else {
		first = append(first, "SessionType", "Normal", "TargetName", o.TargetName)
	}
	var tsih uint16
	exchange := func(transit bool, csg, nsg int, kv []string) (*PDU, error) {
		p := &PDU{}
		p.BHS[0] = 0x40 | OpLoginReq
		p.BHS[1] = byte(csg)<<2 | byte(nsg)
		if transit {
			p.BHS[1] |= 0x80
		}
		copy(p.BHS[8:14], o.ISID[:])
		binary.BigEndian.PutUint16(p.BHS[14:], tsih)
		p.SetU32(16, 1)
		p.SetU32(24, c.cmdSN)
		p.SetU32(28, c.expStat)
		p.Data = EncodeText(kv...)
		if err := c.write(p); err != nil {
			return nil, fmt.Errorf("iscsitest: login write: %w", err)
		}
		r, err := ReadPDU(c.conn, false, false)
		if err != nil {
			return nil, fmt.Errorf("iscsitest: login read: %w", err)
		}
		if r.Opcode() != OpLoginResp {
			return nil, fmt.Errorf("iscsitest: unexpected opcode %#x during login", r.Opcode())
		}
		c.expStat = r.U32(24) + 1
		if r.BHS[36] != 0 {
			return nil, &LoginError{r.BHS[36], r.BHS[37]}
		}
		for _, kv := range ParseText(r.Data) {
			c.params.Keys[kv[0]] = kv[1]
		}
		tsih = binary.BigEndian.Uint16(r.BHS[14:])
		return r, nil
	}
	stage := 0
	if o.CHAPUser != "" {
		r, err := exchange(false, 0, 1, append(first, "AuthMethod", "CHAP,None"))
		if err != nil {
			return err
		}
		if m := keyOf(r, "AuthMethod"); m != "CHAP" {
			return fmt.Errorf("iscsitest: target chose AuthMethod %q", m)
		}
		r, err = exchange(false, 0, 1, []string{"CHAP_A", o.CHAPAlgorithms})
		if err != nil {
			return err
		}
		alg, _ := strconv.Atoi(keyOf(r, "CHAP_A"))
		if _, ok := chapHash(alg); !ok {
			return fmt.Errorf("iscsitest: target chose CHAP_A %q", keyOf(r, "CHAP_A"))
		}
		id, _ := strconv.Atoi(keyOf(r, "CHAP_I"))
		ch, err := decodeBinary(keyOf(r, "CHAP_C"))
		if err != nil {
			return err
		}
		kv := []string{"CHAP_N", o.CHAPUser, "CHAP_R", "0x" + hex.EncodeToString(chapResponse(alg, byte(id), o.CHAPSecret, ch))}
		var myID byte
		var myCh []byte
		if o.MutualSecret != "" {
			myCh = make([]byte, 32)
			_, _ = rand.Read(myCh)
			myID = myCh[0]
			kv = append(kv, "CHAP_I", strconv.Itoa(int(myID)), "CHAP_C", "0x"+hex.EncodeToString(myCh))
		}
		r, err = exchange(true, 0, 1, kv)
		if err != nil {
			return err
		}
		if o.MutualSecret != "" {
			got, err := decodeBinary(keyOf(r, "CHAP_R"))
			if err != nil {
				return fmt.Errorf("iscsitest: mutual CHAP: %w", err)
			}
			want := chapResponse(alg, myID, o.MutualSecret, myCh)
			if keyOf(r, "CHAP_N") != o.MutualUser || subtle.ConstantTimeCompare(got, want) != 1 {
				return errors.New("iscsitest: mutual CHAP: target failed to authenticate")
			}
		}
		if r.BHS[1]&0x80 == 0 {
			return errors.New("iscsitest: target did not finish the security stage")
		}
		stage = 1
		first = nil
	}
	if stage == 0 {
		// No authentication: go straight to the operational stage.
		first = append(first, "AuthMethod", "None")
		if _, err := exchange(true, 0, 1, first); err != nil {
			return err
		}
		first = nil
	}
	op := append(first,
		"HeaderDigest", digestOffer(o.HeaderDigest),
		"DataDigest", digestOffer(o.DataDigest),
		"MaxRecvDataSegmentLength", strconv.Itoa(o.MaxRecvDataSegmentLength),
		"DefaultTime2Wait", "2",
		"DefaultTime2Retain", "0",
		"ErrorRecoveryLevel", "0",
	)
	if !o.Discovery {
		op = append(op,
			"InitialR2T", yesNo(o.InitialR2T),
			"ImmediateData", yesNo(!o.NoImmediateData),
			"MaxBurstLength", strconv.Itoa(o.MaxBurstLength),
			"FirstBurstLength", strconv.Itoa(o.FirstBurstLength),
			"MaxOutstandingR2T", "1",
			"MaxConnections", "1",
			"DataPDUInOrder", "Yes",
			"DataSequenceInOrder", "Yes",
		)
	}
	op = append(op, o.ExtraKeys...)
	var r *PDU
	for i := 0; ; i++ {
		var err error
		r, err = exchange(true, 1, 3, op)
		if err != nil {
			return err
		}
		if r.BHS[1]&0x80 != 0 && r.BHS[1]&3 == 3 {
			break
		}
		if i > 4 {
			return errors.New("iscsitest: target never let the login finish")
		}
		op = nil
	}
	k := c.params.Keys
	c.params.HeaderDigest = k["HeaderDigest"] == "CRC32C"
	c.params.DataDigest = k["DataDigest"] == "CRC32C"
	if v, err := strconv.Atoi(k["MaxRecvDataSegmentLength"]); err == nil {
		c.params.TargetMaxRecv = v
	}
	if v, err := strconv.Atoi(k["MaxBurstLength"]); err == nil {
		c.params.MaxBurstLength = v
	}
	if v, err := strconv.Atoi(k["FirstBurstLength"]); err == nil {
		c.params.FirstBurstLength = v
	}
	if v, ok := k["InitialR2T"]; ok {
		c.params.InitialR2T = v == "Yes"
	}
	if v, ok := k["ImmediateData"]; ok {
		c.params.ImmediateData = v == "Yes"
	}
	c.params.TSIH = tsih
	c.expCmd = r.U32(28)
	c.maxCmd = r.U32(32)
	c.cmdSN = c.expCmd
	c.loggedIn = true
	go c.readLoop()
	return nil
}

func keyOf(p *PDU, k string) string {
	for _, kv := range ParseText(p.Data) {
		if kv[0] == k {
			return kv[1]
		}
	}
	return ""
}

func digestOffer(on bool) string {
	if on {
		return "CRC32C,None"
	}
	return "None"
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// serialLT is a < b in serial arithmetic.
func serialLT(a, b uint32) bool { return int32(a-b) < 0 }

// readLoop receives PDUs in full feature phase and completes calls.
func (c *Client) readLoop() {
	defer close(c.done)
	for {
		p, err := ReadPDU(c.conn, c.params.HeaderDigest, c.params.DataDigest)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		if op := p.Opcode(); op != OpDataIn || p.BHS[1]&0x01 != 0 {
			if op != OpR2T && op != OpDataIn || p.BHS[1]&0x01 != 0 {
				if s := p.U32(24); !serialLT(s, c.expStat) {
					c.expStat = s + 1
				}
			}
		}
		if op := p.Opcode(); op != OpLoginResp {
			exp, maxSN := p.U32(28), p.U32(32)
			if !serialLT(maxSN, exp-1) {
				if serialLT(c.expCmd, exp) {
					c.expCmd = exp
				}
				if serialLT(c.maxCmd, maxSN) {
					c.maxCmd = maxSN
				}
				c.cond.Broadcast()
			}
		}
		itt := p.U32(16)
		cl := c.pending[itt]
		c.mu.Unlock()
		switch p.Opcode() {
		case OpDataIn:
			if cl == nil {
				continue
			}
			off := int(p.U32(40))
			if off+len(p.Data) <= len(cl.dataIn) {
				copy(cl.dataIn[off:], p.Data)
				cl.got = max(cl.got, off+len(p.Data))
			}
			if p.BHS[1]&0x01 != 0 {
				c.complete(itt, p)
			}
		case OpR2T:
			if cl == nil {
				continue
			}
			if err := c.sendData(cl, itt, p.U32(20), int(p.U32(40)), int(p.U32(44))); err != nil {
				c.fail(err)
				return
			}
		case OpNopIn:
			if itt == reserved && p.U32(20) != reserved {
				// Target ping: answer it.
				q := &PDU{}
				q.BHS[0] = 0x40 | OpNopOut
				q.BHS[1] = 0x80
				copy(q.BHS[8:16], p.BHS[8:16])
				q.SetU32(16, reserved)
				q.SetU32(20, p.U32(20))
				c.mu.Lock()
				q.SetU32(24, c.cmdSN)
				q.SetU32(28, c.expStat)
				c.mu.Unlock()
				if err := c.write(q); err != nil {
					c.fail(err)
					return
				}
				continue
			}
			c.complete(itt, p)
		case OpAsync:
			c.mu.Lock()
			c.async = append(c.async, p.BHS[36])
			c.mu.Unlock()
		case OpReject:
			if len(p.Data) >= 48 {
				ritt := binary.BigEndian.Uint32(p.Data[16:])
				c.complete(ritt, p)
			}
		default:
			c.complete(itt, p)
		}
	}
}

// AsyncEvents returns the Async Message events received so far.
func (c *Client) AsyncEvents() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.async...)
}

func (c *Client) complete(itt uint32, p *PDU) {
	c.mu.Lock()
	cl := c.pending[itt]
	delete(c.pending, itt)
	c.mu.Unlock()
	if cl != nil {
		cl.resp = p
		close(cl.ch)
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	for itt, cl := range c.pending {
		delete(c.pending, itt)
		close(cl.ch)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// sendData sends Data-Out PDUs for [off, off+n) of the call's data.
func (c *Client) sendData(cl *call, itt, ttt uint32, off, n int) error {
	if off+n > len(cl.dataOut) || n < 0 {
		return fmt.Errorf("iscsitest: R2T beyond the data (%d+%d > %d)", off, n, len(cl.dataOut))
	}
	seg := c.params.TargetMaxRecv
	var dsn uint32
	for end := off + n; off < end; {
		l := min(seg, end-off)
		p := &PDU{}
		p.BHS[0] = OpDataOut
		if off+l == end {
			p.BHS[1] = 0x80
		}
		copy(p.BHS[8:16], cl.lun[:])
		p.SetU32(16, itt)
		p.SetU32(20, ttt)
		c.mu.Lock()
		p.SetU32(28, c.expStat)
		c.mu.Unlock()
		p.SetU32(36, dsn)
		p.SetU32(40, uint32(off))
		p.Data = cl.dataOut[off : off+l]
		if err := c.write(p); err != nil {
			return err
		}
		dsn++
		off += l
	}
	return nil
}

// issue numbers a command PDU (waiting for room in the target's CmdSN
// window unless immediate), registers its call and sends it, keeping PDUs
// on the wire in CmdSN order.
func (c *Client) issue(ctx context.Context, p *PDU, cl *call, immediate bool) (uint32, error) {
	c.mu.Lock()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	for !immediate && serialLT(c.maxCmd, c.cmdSN) && c.err == nil && ctx.Err() == nil {
		c.cond.Wait()
	}
	if c.err != nil || ctx.Err() != nil {
		err := c.err
		if err == nil {
			err = ctx.Err()
		}
		c.mu.Unlock()
		return 0, err
	}
	c.itt++
	if c.itt == reserved {
		c.itt = 1
	}
	itt := c.itt
	p.SetU32(16, itt)
	p.SetU32(24, c.cmdSN)
	p.SetU32(28, c.expStat)
	if immediate {
		p.BHS[0] |= 0x40
	} else {
		c.cmdSN++
	}
	if cl != nil {
		cl.ch = make(chan struct{})
		c.pending[itt] = cl
	}
	turn := c.ticket
	c.ticket++
	for c.serving != turn {
		c.cond.Wait()
	}
	c.mu.Unlock()
	err := c.write(p)
	c.mu.Lock()
	c.serving++
	c.cond.Broadcast()
	c.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("iscsitest: write: %w", err)
	}
	return itt, nil
}

func (c *Client) wait(ctx context.Context, cl *call) (*PDU, error) {
	select {
	case <-cl.ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if cl.resp == nil {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("iscsitest: connection failed: %w", err)
	}
	if cl.resp.Opcode() == OpReject {
		return nil, fmt.Errorf("iscsitest: target rejected the PDU (reason %#x)", cl.resp.BHS[2])
	}
	return cl.resp, nil
}

// Command runs one SCSI command on lun: dataOut is sent to the target
// (immediate, unsolicited and R2T-solicited data as negotiated) and up to
// dataInLen bytes are read back.
func (c *Client) Command(ctx context.Context, lun uint64, cdb []byte, dataOut []byte, dataInLen int) (*Response, error) {
	cl := &call{dataOut: dataOut, lun: EncodeLUN(lun)}
	if dataInLen > 0 {
		cl.dataIn = make([]byte, dataInLen)
	}
	p := &PDU{}
	p.BHS[0] = OpSCSICmd
	p.BHS[1] = 0x01 // simple task
	copy(p.BHS[8:16], cl.lun[:])
	edtl := dataInLen
	if len(dataOut) > 0 {
		p.BHS[1] |= 0x20
		edtl = len(dataOut)
	}
	if dataInLen > 0 {
		p.BHS[1] |= 0x40
	}
	p.SetU32(20, uint32(edtl))
	if len(cdb) > 16 {
		ext := cdb[16:]
		ahs := make([]byte, (4+len(ext)+3)&^3)
		binary.BigEndian.PutUint16(ahs, uint16(len(ext)+1))
		ahs[2] = 1
		copy(ahs[4:], ext)
		p.AHS = ahs
		cdb = cdb[:16]
	}
	copy(p.BHS[32:48], cdb)
	var imm, unsol int
	if len(dataOut) > 0 {
		if c.params.ImmediateData {
			imm = min(len(dataOut), c.params.FirstBurstLength, c.params.TargetMaxRecv)
			p.Data = dataOut[:imm]
		}
		if !c.params.InitialR2T {
			unsol = min(len(dataOut), c.params.FirstBurstLength) - imm
		}
	}
	if unsol <= 0 {
		p.BHS[1] |= 0x80
	}
	itt, err := c.issue(ctx, p, cl, false)
	if err != nil {
		return nil, err
	}
	if unsol > 0 {
		if err := c.sendData(cl, itt, reserved, imm, unsol); err != nil {
			return nil, fmt.Errorf("iscsitest: write: %w", err)
		}
	}
	r, err := c.wait(ctx, cl)
	if err != nil {
		return nil, err
	}
	resp := &Response{}
	switch r.Opcode() {
	case OpDataIn:
		resp.Status = r.BHS[3]
	case OpSCSIResp:
		resp.Status = r.BHS[3]
		if len(r.Data) >= 2 {
			n := int(binary.BigEndian.Uint16(r.Data))
			resp.Sense = r.Data[2:min(len(r.Data), 2+n)]
		}
	default:
		return nil, fmt.Errorf("iscsitest: unexpected response opcode %#x", r.Opcode())
	}
	resp.Overflow = r.BHS[1]&0x04 != 0
	resp.Underflow = r.BHS[1]&0x02 != 0
	resp.Residual = int(r.U32(44))
	if cl.dataIn != nil {
		resp.Data = cl.dataIn[:cl.got]
	}
	return resp, nil
}

// SendTargets asks for the targets (and their portals) the initiator may
// see: "All" in a discovery session. It returns the TargetName and
// TargetAddress pairs in order.
func (c *Client) SendTargets(ctx context.Context, what string) ([][2]string, error) {
	var all []byte
	ttt := uint32(reserved)
	for {
		p := &PDU{}
		p.BHS[0] = OpTextReq
		p.BHS[1] = 0x80
		p.SetU32(20, ttt)
		if ttt == reserved {
			p.Data = EncodeText("SendTargets", what)
		}
		cl := &call{}
		if _, err := c.issue(ctx, p, cl, true); err != nil {
			return nil, err
		}
		r, err := c.wait(ctx, cl)
		if err != nil {
			return nil, err
		}
		// A long answer comes in pieces that may split a pair.
		all = append(all, r.Data...)
		if r.BHS[1]&0x80 != 0 {
			return ParseText(all), nil
		}
		ttt = r.U32(20)
	}
}

// Nop sends a NOP-Out ping with data and checks the echo.
func (c *Client) Nop(ctx context.Context, data []byte) error {
	p := &PDU{}
	p.BHS[0] = OpNopOut
	p.BHS[1] = 0x80
	p.SetU32(20, reserved)
	p.Data = data
	cl := &call{}
	if _, err := c.issue(ctx, p, cl, true); err != nil {
		return err
	}
	r, err := c.wait(ctx, cl)
	if err != nil {
		return err
	}
	if r.Opcode() != OpNopIn || string(r.Data) != string(data) {
		return fmt.Errorf("iscsitest: bad NOP-In (opcode %#x, %d bytes)", r.Opcode(), len(r.Data))
	}
	return nil
}

// Task management functions and responses (RFC 7143 sections 11.5, 11.6).
const (
	TMFAbortTask       = 1
	TMFAbortTaskSet    = 2
	TMFClearTaskSet    = 4
	TMFLUNReset        = 5
	TMFTargetWarmReset = 6
	TMFTargetColdReset = 7

	TMFComplete     = 0
	TMFNoTask       = 1
	TMFNoLUN        = 2
	TMFNotSupported = 5
)

// TaskMgmt sends a task management function (TMFAbortTask...) and returns
// the response code (TMFComplete...). refTag is the task to abort for
// ABORT TASK.
func (c *Client) TaskMgmt(ctx context.Context, function byte, lun uint64, refTag uint32) (byte, error) {
	p := &PDU{}
	p.BHS[0] = OpTaskMgmt
	p.BHS[1] = 0x80 | function
	l := EncodeLUN(lun)
	copy(p.BHS[8:16], l[:])
	p.SetU32(20, refTag)
	cl := &call{}
	if _, err := c.issue(ctx, p, cl, true); err != nil {
		return 0, err
	}
	r, err := c.wait(ctx, cl)
	if err != nil {
		return 0, err
	}
	return r.BHS[2], nil
}

// Logout closes the session and the connection.
func (c *Client) Logout(ctx context.Context) error {
	p := &PDU{}
	p.BHS[0] = OpLogoutReq
	p.BHS[1] = 0x80 // close the session
	cl := &call{}
	if _, err := c.issue(ctx, p, cl, true); err != nil {
		return err
	}
	r, err := c.wait(ctx, cl)
	if err != nil {
		return err
	}
	if r.Opcode() != OpLogoutResp || r.BHS[2] != 0 {
		return fmt.Errorf("iscsitest: logout refused (opcode %#x response %d)", r.Opcode(), r.BHS[2])
	}
	return c.Close()
}

// SendRaw writes raw bytes on the connection (for hostile tests).
func (c *Client) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(b)
	return err
}
