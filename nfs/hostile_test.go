package nfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// TestHostileClients sends garbage, absurd fragment lengths, truncated
// records and a slowloris trickle, and checks that each bad connection is
// dropped while a well-behaved client keeps working.
func TestHostileClients(t *testing.T) {
	ts := startServer(t, nil, func(c *Config, _ *Share) { c.IdleTimeout = 500 * time.Millisecond })
	// A well-behaved client keeps working (busy, so the idle timeout does
	// not apply to it) while the others misbehave.
	good := dial(t, ts.Port, nfsclient.Unix(0, 0))
	root := mount(t, good)
	stop := make(chan struct{})
	pinger := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				pinger <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := good.Getattr(root); err != nil {
				pinger <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-pinger; err != nil {
			t.Errorf("good client failed during the attacks: %v", err)
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", ts.Port)
	frag := func(n uint32, last bool) []byte {
		if last {
			n |= 1 << 31
		}
		return binary.BigEndian.AppendUint32(nil, n)
	}
	call := rpc.EncodeCall(1, 100003, 3, 1, rpc.Cred{}, nil)
	cases := []struct {
		name  string
		send  []byte
		trick func(c net.Conn)
		// wantClose: the server must drop the connection.
		wantClose bool
	}{
		{name: "garbage", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantClose: true},
		{name: "huge fragment", send: frag(0x7fffffff, true), wantClose: true},
		{name: "many fragments adding up", send: func() []byte {
			var b []byte
			for range 40 {
				b = append(b, frag(64<<10, false)...)
				b = append(b, make([]byte, 64<<10)...)
			}
			return b
		}(), wantClose: true},
		{name: "truncated record", send: append(frag(1000, true), make([]byte, 10)...), wantClose: true},
		{name: "reply instead of call", send: append(frag(8, true), 0, 0, 0, 1, 0, 0, 0, 1), wantClose: true},
		{name: "short call header", send: append(frag(8, true), 0, 0, 0, 1, 0, 0, 0, 0), wantClose: true},
		{name: "auth body too long", send: func() []byte {
			b := []byte{0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa3, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0x10, 0}
			return append(frag(uint32(len(b)), true), b...)
		}()},
		{name: "garbage args", send: func() []byte {
			m := rpc.EncodeCall(5, 100003, 3, 7, rpc.Cred{}, []byte{0, 0, 0, 16, 1, 2})
			return m
		}()},
		{name: "slowloris", trick: func(c net.Conn) {
			for _, b := range call[:10] {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}, wantClose: true},
		{name: "rpc version 3", send: func() []byte {
			m := append([]byte(nil), call...)
			binary.BigEndian.PutUint32(m[12:], 3)
			return m
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.trick != nil {
				tc.trick(c)
			} else {
				c.Write(tc.send)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			n, err := io.ReadAtLeast(c, buf, 4)
			switch {
			case tc.wantClose && err == nil:
				t.Errorf("server answered %x instead of closing", buf[:n])
			case tc.wantClose:
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("server kept the connection open")
				}
			case err != nil:
				t.Errorf("no reply: %v", err)
			}
			// A new client is served too.
			fresh := dial(t, ts.Port, nfsclient.Unix(0, 0))
			if _, err := fresh.Getattr(mount(t, fresh)); err != nil {
				t.Fatalf("new client after %s: %v", tc.name, err)
			}
		})
	}
}
