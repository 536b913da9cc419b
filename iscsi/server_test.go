package iscsi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

func TestReadWrite(t *testing.T) {
	ts := startServer(t, serverOpts{})
	tests := []struct {
		name string
		opts iscsitest.Options
		size int
	}{
		{"immediate", iscsitest.Options{}, 4096},
		{"unsolicited and R2T", iscsitest.Options{FirstBurstLength: 8192}, 1 << 20},
		{"R2T only", iscsitest.Options{InitialR2T: true, NoImmediateData: true, MaxBurstLength: 65536}, 512 << 10},
		{"small segments", iscsitest.Options{MaxRecvDataSegmentLength: 512}, 64 << 10},
		{"digests", iscsitest.Options{HeaderDigest: true, DataDigest: true}, 300 << 10},
		{"max transfer", iscsitest.Options{}, 1 << 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.login(t, tt.opts)
			defer c.Logout(tctx(t))
			data := make([]byte, tt.size)
			for j := range data {
				data[j] = byte(j*7 + i)
			}
			lba := uint32(i * 16384)
			blocks := uint16(tt.size / 512)
			r, err := c.Command(tctx(t), 0, write10(lba, blocks), data, 0)
			if err != nil || r.Status != 0 {
				t.Fatalf("WRITE10: %v %+v", err, r)
			}
			r, err = c.Command(tctx(t), 0, read10(lba, blocks), nil, tt.size)
			if err != nil || r.Status != 0 {
				t.Fatalf("READ10: %v %+v", err, r)
			}
			if !bytes.Equal(r.Data, data) {
				t.Fatal("read back different data")
			}
		})
	}
}

func TestResiduals(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.login(t, iscsitest.Options{})
	defer c.Logout(tctx(t))
	tests := []struct {
		name      string
		cdb       []byte
		out       []byte
		inLen     int
		overflow  bool
		underflow bool
		residual  int
	}{
		{"read exact", read10(0, 1), nil, 512, false, false, 0},
		{"read short buffer", read10(0, 2), nil, 512, true, false, 512},
		{"read long buffer", read10(0, 1), nil, 10000, false, true, 10000 - 512},
		{"inquiry", []byte{0x12, 0, 0, 0, 255, 0}, nil, 255, false, true, -1},
		{"write long buffer", write10(0, 1), make([]byte, 1024), 0, false, true, 512},
		{"write short buffer", write10(0, 2), make([]byte, 512), 0, true, false, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := c.Command(tctx(t), 0, tt.cdb, tt.out, tt.inLen)
			if err != nil {
				t.Fatal(err)
			}
			if r.Overflow != tt.overflow || r.Underflow != tt.underflow || (tt.residual >= 0 && r.Residual != tt.residual) {
				t.Fatalf("got O=%v U=%v residual %d, want O=%v U=%v residual %d (status %#x)",
					r.Overflow, r.Underflow, r.Residual, tt.overflow, tt.underflow, tt.residual, r.Status)
			}
		})
	}
}

func TestReportLUNsAndUnknownLUN(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.login(t, iscsitest.Options{})
	defer c.Logout(tctx(t))
	r, err := c.Command(tctx(t), 0, []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256)
	if err != nil || r.Status != 0 {
		t.Fatalf("REPORT LUNS: %v %+v", err, r)
	}
	if len(r.Data) != 16 || r.Data[3] != 8 {
		t.Fatalf("REPORT LUNS data % x", r.Data)
	}
	r, err = c.Command(tctx(t), 7, []byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != scsi.StatusCheckCondition || len(r.Sense) < 14 || r.Sense[12] != 0x25 {
		t.Fatalf("TEST UNIT READY on LUN 7: status %#x sense % x", r.Status, r.Sense)
	}
}

func TestQueueDepthWindow(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: Config{QueueDepth: 4}})
	c := ts.login(t, iscsitest.Options{})
	defer c.Logout(tctx(t))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := bytes.Repeat([]byte{byte(i)}, 4096)
			r, err := c.Command(tctx(t), 0, write10(uint32(i*8), 8), buf, 0)
			if err == nil && r.Status != 0 {
				err = fmt.Errorf("status %#x", r.Status)
			}
			if err == nil {
				r, err = c.Command(tctx(t), 0, read10(uint32(i*8), 8), nil, 4096)
				if err == nil && !bytes.Equal(r.Data, buf) {
					err = errors.New("data mismatch")
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCHAP(t *testing.T) {
	chap := &CHAPConfig{User: "alice", Secret: "alice-secret-123", MutualUser: "target", MutualSecret: "target-secret-456"}
	logBuf := &syncWriter{w: &bytes.Buffer{}}
	ts := startServer(t, serverOpts{
		cfg:    Config{Logger: slog.New(slog.NewTextHandler(logBuf, nil))},
		target: Target{CHAP: chap},
	})
	tests := []struct {
		name     string
		opts     iscsitest.Options
		authFail bool
		otherErr bool
	}{
		{"md5", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", CHAPAlgorithms: "5"}, false, false},
		{"sha256", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", CHAPAlgorithms: "7"}, false, false},
		{"sha1", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", CHAPAlgorithms: "6"}, false, false},
		{"sha3-256 preferred", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", CHAPAlgorithms: "8,7,5"}, false, false},
		{"mutual", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", MutualUser: "target", MutualSecret: "target-secret-456"}, false, false},
		{"mutual wrong target secret", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", MutualUser: "target", MutualSecret: "nope-nope-nope"}, false, true},
		{"wrong secret", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "wrong-secret-000"}, true, false},
		{"wrong user", iscsitest.Options{CHAPUser: "mallory", CHAPSecret: "alice-secret-123"}, true, false},
		{"no CHAP offered", iscsitest.Options{}, true, false},
		{"unknown algorithm", iscsitest.Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123", CHAPAlgorithms: "99"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ts.dialLogin(tt.opts)
			var le *iscsitest.LoginError
			switch {
			case tt.authFail:
				if !errors.As(err, &le) || !le.IsAuthFailure() {
					t.Fatalf("login: %v, want authentication failure", err)
				}
			case tt.otherErr:
				if err == nil {
					c.Close()
					t.Fatal("login succeeded")
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Command(tctx(t), 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err != nil {
					t.Fatal(err)
				}
				if err := c.Logout(tctx(t)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	for _, ev := range ts.loginEvents() {
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), "secret-") {
			t.Fatalf("login event leaks a secret: %s", b)
		}
	}
	if s := logBuf.String(); strings.Contains(s, "secret-") || !strings.Contains(s, "wrong CHAP response") {
		t.Fatalf("log leaks a secret or lacks the failure reason:\n%s", s)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func TestSecretNeverPrints(t *testing.T) {
	c := CHAPConfig{User: "u", Secret: "hunter2hunter2", MutualSecret: "swordfish123"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "cfg", c, "s", c.Secret)
	j, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v %#v %s %q %x", c, c, c.Secret, c.Secret, c.Secret), string(j), buf.String()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "swordfish") {
			t.Fatalf("secret printed: %s", s)
		}
	}
	if c.Secret.Reveal() != "hunter2hunter2" {
		t.Fatal("Reveal")
	}
}

func TestDiscoveryAndACL(t *testing.T) {
	ts := startServer(t, serverOpts{target: Target{AllowedInitiators: []string{"iqn.2026-11.io.sluicegw:allowed"}}})
	other := "iqn.2026-11.io.sluicegw:other-target"
	if err := ts.srv.AddTarget(Target{Name: other, LUNs: map[uint64]scsi.LogicalUnit{0: ts.disk}}); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.AddTarget(Target{Name: other}); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("AddTarget twice: %v", err)
	}
	tests := []struct {
		initiator string
		want      []string
	}{
		{"iqn.2026-11.io.sluicegw:allowed", []string{other, testTarget}},
		{"iqn.2026-11.io.sluicegw:stranger", []string{other}},
	}
	for _, tt := range tests {
		c := ts.login(t, iscsitest.Options{Discovery: true, InitiatorName: tt.initiator})
		kv, err := c.SendTargets(tctx(t), "All")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range kv {
			switch p[0] {
			case "TargetName":
				names = append(names, p[1])
			case "TargetAddress":
				if p[1] != ts.addr+",1" {
					t.Fatalf("TargetAddress %q", p[1])
				}
			}
		}
		if fmt.Sprint(names) != fmt.Sprint(tt.want) {
			t.Fatalf("%s sees %v, want %v", tt.initiator, names, tt.want)
		}
		if err := c.Logout(tctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ts.dialLogin(iscsitest.Options{InitiatorName: "iqn.2026-11.io.sluicegw:stranger"})
	var le *iscsitest.LoginError
	if !errors.As(err, &le) || le.Class != 2 || le.Detail != 2 {
		t.Fatalf("login of a stranger: %v, want 0x0202", err)
	}
	_, err = ts.dialLogin(iscsitest.Options{TargetName: "iqn.2026-11.io.sluicegw:nope"})
	if !errors.As(err, &le) || le.Class != 2 || le.Detail != 3 {
		t.Fatalf("login to unknown target: %v, want 0x0203", err)
	}
	if err := ts.srv.RemoveTarget(other); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.RemoveTarget(other); !errors.Is(err, ErrNoSuchTarget) {
		t.Fatalf("RemoveTarget twice: %v", err)
	}
}

func TestNopAndTMF(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.login(t, iscsitest.Options{})
	defer c.Logout(tctx(t))
	if err := c.Nop(tctx(t), []byte("ping data")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		fn   byte
		lun  uint64
		ref  uint32
		want byte
	}{
		{tmfAbortTask, 0, 0x12345, tmfNoTask},
		{tmfAbortTaskSet, 0, 0, tmfComplete},
		{tmfLUNReset, 0, 0, tmfComplete},
		{tmfLUNReset, 9, 0, tmfNoLUN},
		{tmfTargetWarmReset, 0, 0, tmfComplete},
		{tmfTaskReassign, 0, 0, tmfNoReassign},
		{42, 0, 0, tmfFunctionReject},
	}
	for _, tt := range tests {
		got, err := c.TaskMgmt(tctx(t), tt.fn, tt.lun, tt.ref)
		if err != nil || got != tt.want {
			t.Fatalf("TMF %d: %d %v, want %d", tt.fn, got, err, tt.want)
		}
	}
}

func TestReinstatement(t *testing.T) {
	ts := startServer(t, serverOpts{})
	a := ts.login(t, iscsitest.Options{})
	defer a.Close()
	b := ts.login(t, iscsitest.Options{})
	defer b.Logout(tctx(t))
	if _, err := a.Command(tctx(t), 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err == nil {
		t.Fatal("old session still works after reinstatement")
	}
	if _, err := b.Command(tctx(t), 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.srv.Sessions()); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
}

func TestConcurrentSessions(t *testing.T) {
	ts := startServer(t, serverOpts{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ts.dialLogin(iscsitest.Options{ISID: [6]byte{0x80, 0, 0, 0, 1, byte(i)}})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Logout(tctx(t))
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range 50 {
				lba := uint32(rng.IntN(1000)) + uint32(i*2000)
				buf := make([]byte, 4096)
				for j := range buf {
					buf[j] = byte(rng.Uint32())
				}
				if r, err := c.Command(tctx(t), 0, write10(lba, 8), buf, 0); err != nil || r.Status != 0 {
					t.Error(err, r)
					return
				}
				r, err := c.Command(tctx(t), 0, read10(lba, 8), nil, 4096)
				if err != nil || !bytes.Equal(r.Data, buf) {
					t.Error("mismatch", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestKeepAlivePing(t *testing.T) {
	ts := startServer(t, serverOpts{cfg: Config{NopInterval: 200 * time.Millisecond}})
	c := ts.login(t, iscsitest.Options{})
	defer c.Logout(tctx(t))
	// The client answers pings; the session must survive several
	// intervals of silence.
	time.Sleep(1500 * time.Millisecond)
	if _, err := c.Command(tctx(t), 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err != nil {
		t.Fatal(err)
	}
	// A peer that never answers gets a NOP-In ping and is then dropped.
	raw := rawLogin(t, ts.addr)
	defer raw.nc.Close()
	_ = raw.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := iscsitest.ReadPDU(raw.nc, false, false)
	if err != nil || p.Opcode() != iscsitest.OpNopIn || p.U32(16) != 0xffffffff || p.U32(20) == 0xffffffff {
		t.Fatalf("want a target NOP-In ping, got %v %v", p, err)
	}
	expectClosed(t, raw.nc, 5*time.Second)
}

func TestShutdownWaitsAndAsksLogout(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.login(t, iscsitest.Options{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.AsyncEvents()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ev := c.AsyncEvents(); len(ev) == 0 || ev[0] != 1 {
		t.Fatalf("async events %v, want a logout request", ev)
	}
	if err := c.Logout(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := ts.dialLogin(iscsitest.Options{}); err == nil {
		t.Fatal("login after shutdown")
	}
}

func TestSendTargetsContinuation(t *testing.T) {
	ts := startServer(t, serverOpts{})
	want := map[string]bool{testTarget: true}
	for i := range 40 {
		name := fmt.Sprintf("iqn.2026-11.io.sluicegw:a-rather-long-target-name-for-continuation-%03d", i)
		if err := ts.srv.AddTarget(Target{Name: name}); err != nil {
			t.Fatal(err)
		}
		want[name] = true
	}
	c := ts.login(t, iscsitest.Options{Discovery: true, MaxRecvDataSegmentLength: 512})
	defer c.Logout(tctx(t))
	kv, err := c.SendTargets(tctx(t), "All")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range kv {
		if p[0] == "TargetName" {
			got[p[1]] = true
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got targets %v, want %v", got, want)
	}
}

// slowLU answers every command after a delay, to keep commands in flight.
type slowLU struct{ delay time.Duration }

func (u slowLU) Execute(ctx context.Context, cmd *scsi.Command) (int, error) {
	select {
	case <-time.After(u.delay):
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
func (slowLU) Reset(scsi.ResetKind, scsi.Nexus) {}
func (slowLU) NexusLost(scsi.Nexus)             {}

func TestShutdownWaitsForCommandsInFlight(t *testing.T) {
	ts := startServer(t, serverOpts{target: Target{LUNs: map[uint64]scsi.LogicalUnit{0: slowLU{delay: 700 * time.Millisecond}}}})
	c := ts.login(t, iscsitest.Options{})
	defer c.Close()
	type result struct {
		r   *iscsitest.Response
		err error
	}
	res := make(chan result, 1)
	go func() {
		r, err := c.Command(tctx(t), 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
		res <- result{r, err}
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	// The client never logs out: the server waits for the command, then
	// ends the session after its grace period.
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-res
	if got.err != nil || got.r.Status != 0 {
		t.Fatalf("command in flight during shutdown: %v %+v", got.err, got.r)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the command finished", d)
	}
}

func TestAbortTaskWaitingForData(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.login(t, iscsitest.Options{InitialR2T: true, NoImmediateData: true})
	defer c.Logout(tctx(t))
	// A WRITE whose data never comes: the target sends an R2T and waits.
	p := &iscsitest.PDU{}
	p.BHS[0] = 0x41 // immediate, so it needs no CmdSN bookkeeping here
	p.BHS[1] = 0xa1
	p.SetU32(16, 0xabcd)
	p.SetU32(20, 4096)
	copy(p.BHS[32:], write10(0, 8))
	if err := c.SendRaw(p.Encode(false, false)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	got, err := c.TaskMgmt(tctx(t), iscsitest.TMFAbortTask, 0, 0xabcd)
	if err != nil || got != iscsitest.TMFComplete {
		t.Fatalf("ABORT TASK: %d %v", got, err)
	}
	if n := ts.srv.Sessions()[0].InFlight; n != 0 {
		t.Fatalf("%d tasks in flight after the abort", n)
	}
	if r, err := c.Command(tctx(t), 0, read10(0, 8), nil, 4096); err != nil || r.Status != 0 {
		t.Fatalf("session unusable after abort: %v %+v", err, r)
	}
}
