package nfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// RPC program numbers and versions served.
const (
	progPortmap = 100000
	progNFS     = 100003
	progMount   = 100005

	versPortmap = 2
	versNFS     = 3
	versMount   = 3
)

// maxRecord bounds one RPC record: the largest WRITE (maxIO bytes) plus
// its headers.
const maxRecord = maxIO + 64<<10

// maxInFlight bounds concurrently executing requests per connection.
const maxInFlight = 16

// serveConn reads records from one client connection and answers them,
// running up to maxInFlight requests at once. A framing error, an
// oversized record or a client idle for Config.IdleTimeout closes the
// connection; nothing a client sends can stop the server.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := addrOf(c.RemoteAddr())
	log := s.log.With("client", c.RemoteAddr().String())
	var wmu sync.Mutex
	send := func(rep reply) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		if _, err := c.Write(rep.b); err != nil {
			c.Close()
		}
		if rep.tail != nil {
			if err := sendTail(c, rep.tail); err != nil {
				log.Debug("closing connection: READ data not sent", "err", err)
				c.Close()
			}
		}
	}
	var inflight sync.WaitGroup
	defer inflight.Wait()
	slots := make(chan struct{}, maxInFlight)
	br := bufio.NewReaderSize(c, 128<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		bp := s.bufs.Get().(*[]byte)
		rec, err := rpc.ReadRecord(br, maxRecord, *bp)
		if err != nil {
			s.bufs.Put(bp)
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("closing connection", "err", err)
			}
			return
		}
		call, err := rpc.ParseCall(rec)
		if err != nil {
			switch {
			case errors.Is(err, rpc.ErrRPCVersion):
				s.bufs.Put(bp)
				send(reply{b: rpc.RPCMismatchReply(call.XID)})
				continue
			case errors.Is(err, rpc.ErrBadCred):
				s.bufs.Put(bp)
				send(reply{b: rpc.AuthErrorReply(call.XID, rpc.AuthBadCred)})
				continue
			}
			s.bufs.Put(bp)
			log.Debug("undecodable message, closing", "err", err)
			return
		}
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			defer func() {
				// A bug a request finds must not take the daemon down:
				// that request's connection is closed instead.
				if v := recover(); v != nil {
					log.Error("nfs request panicked; connection closed", "proc", call.Proc, "panic", v, "stack", string(debug.Stack()))
					c.Close()
				}
			}()
			rep := s.dispatch(ctx, client, call)
			*bp = rec[:0] // the call's arguments are not used after dispatch
			s.bufs.Put(bp)
			if rep.b != nil { // a reply with a tail always has its header
				send(rep)
				if cap(rep.b) >= maxRecord {
					b := rep.b[:0]
					s.bufs.Put(&b)
				}
			}
		}()
	}
}

// addrOf returns the IP address of a network address (unmapped from IPv6).
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// reply is a framed RPC reply, and the READ data to send after it (the
// record mark counts both).
type reply struct {
	b    []byte
	tail *fileTail
}

// sendTail sends a READ reply's data from its file (sendfile on TCP),
// zeros where the file ends before, and the XDR padding; it closes the
// file. An error leaves the record incomplete: the caller closes the
// connection.
func sendTail(w io.Writer, t *fileTail) error {
	defer t.f.Close()
	if _, err := t.f.Seek(t.off, io.SeekStart); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	// io.Copy hands a TCP connection the limited file: sendfile.
	sent, err := io.Copy(w, io.LimitReader(t.f, int64(t.n)))
	if err != nil {
		return err
	}
	var zeros [4096]byte
	for left := int64(t.padded()) - sent; left > 0; left -= min(left, int64(len(zeros))) {
		if _, err := w.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
			return err
		}
	}
	return nil
}

// dispatch answers one call and returns the framed reply.
func (s *Server) dispatch(ctx context.Context, client netip.Addr, call rpc.Call) reply {
	switch call.Prog {
	case progPortmap:
		if call.Vers != versPortmap {
			return reply{b: rpc.MismatchReply(call.XID, versPortmap, versPortmap)}
		}
		return reply{b: s.portmapCall(call)}
	case progMount:
		if call.Vers != versMount {
			return reply{b: rpc.MismatchReply(call.XID, versMount, versMount)}
		}
		if call.Cred.Flavor != rpc.AuthNull && call.Cred.Flavor != rpc.AuthUnix {
			return reply{b: rpc.AuthErrorReply(call.XID, rpc.AuthTooWeak)}
		}
		return reply{b: s.mountCall(client, call)}
	case progNFS:
		if call.Vers != versNFS {
			return reply{b: rpc.MismatchReply(call.XID, versNFS, versNFS)}
		}
		if call.Cred.Flavor != rpc.AuthNull && call.Cred.Flavor != rpc.AuthUnix {
			return reply{b: rpc.AuthErrorReply(call.XID, rpc.AuthTooWeak)}
		}
		s.uploads.calls.Add(1)
		return s.nfsCall(ctx, client, call)
	}
	return reply{b: rpc.AcceptedReply(call.XID, rpc.ProgUnavail, nil)}
}
