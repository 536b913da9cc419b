// Package nfsclient is a small NFSv3/MOUNT/portmapper client over TCP, for
// Sluice's tests and benchmark driver. Calls may be issued concurrently on
// one connection; replies are matched by XID.
package nfsclient

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// Program numbers.
const (
	ProgPortmap = 100000
	ProgNFS     = 100003
	ProgMount   = 100005
)

// Client is one TCP connection to an RPC server.
type Client struct {
	c    net.Conn
	Cred rpc.Cred
	xid  atomic.Uint32
	wmu  sync.Mutex
	mu   sync.Mutex
	wait map[uint32]chan []byte
	err  error
	done chan struct{}
}

// Dial connects to addr ("host:port") with an AUTH_UNIX credential.
func Dial(addr string, cred rpc.Cred) (*Client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("nfsclient: %w", err)
	}
	cl := &Client{c: c, Cred: cred, wait: map[uint32]chan []byte{}, done: make(chan struct{})}
	cl.xid.Store(uint32(time.Now().UnixNano()))
	go cl.readLoop()
	return cl, nil
}

// Unix returns an AUTH_UNIX credential.
func Unix(uid, gid uint32) rpc.Cred {
	return rpc.Cred{Flavor: rpc.AuthUnix, Machine: "sluice-test", UID: uid, GID: gid}
}

func (cl *Client) readLoop() {
	defer close(cl.done)
	br := bufio.NewReaderSize(cl.c, 256<<10)
	for {
		rec, err := rpc.ReadRecord(br, 4<<20, nil)
		if err != nil {
			cl.mu.Lock()
			cl.err = err
			for _, ch := range cl.wait {
				close(ch)
			}
			cl.wait = map[uint32]chan []byte{}
			cl.mu.Unlock()
			return
		}
		if len(rec) < 4 {
			continue
		}
		xid := uint32(rec[0])<<24 | uint32(rec[1])<<16 | uint32(rec[2])<<8 | uint32(rec[3])
		cl.mu.Lock()
		ch := cl.wait[xid]
		delete(cl.wait, xid)
		cl.mu.Unlock()
		if ch != nil {
			ch <- rec
		}
	}
}

// Close closes the connection.
func (cl *Client) Close() error {
	err := cl.c.Close()
	<-cl.done
	return err
}

// Call sends one call and returns the result body of a successful reply.
func (cl *Client) Call(prog, vers, proc uint32, args []byte) ([]byte, error) {
	xid := cl.xid.Add(1)
	ch := make(chan []byte, 1)
	cl.mu.Lock()
	if cl.err != nil {
		cl.mu.Unlock()
		return nil, ErrClosed
	}
	cl.wait[xid] = ch
	cl.mu.Unlock()
	msg := rpc.EncodeCall(xid, prog, vers, proc, cl.Cred, args)
	cl.wmu.Lock()
	_ = cl.c.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := cl.c.Write(msg)
	cl.wmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("nfsclient: %w", err)
	}
	select {
	case rec, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		_, body, err := rpc.ParseReply(rec)
		return body, err
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("nfsclient: call %d/%d timed out", prog, proc)
	}
}
