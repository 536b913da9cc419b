package nfs

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
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
	send := func(reply []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		if _, err := c.Write(reply); err != nil {
			c.Close()
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
				send(rpc.RPCMismatchReply(call.XID))
				continue
			case errors.Is(err, rpc.ErrBadCred):
				s.bufs.Put(bp)
				send(rpc.AuthErrorReply(call.XID, rpc.AuthBadCred))
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
			reply := s.dispatch(ctx, client, call)
			*bp = rec[:0] // the call's arguments are not used after dispatch
			s.bufs.Put(bp)
			if reply != nil {
				send(reply)
				if cap(reply) >= maxRecord {
					reply = reply[:0]
					s.bufs.Put(&reply)
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

// dispatch answers one call and returns the framed reply.
func (s *Server) dispatch(ctx context.Context, client netip.Addr, call rpc.Call) []byte {
	switch call.Prog {
	case progPortmap:
		if call.Vers != versPortmap {
			return rpc.MismatchReply(call.XID, versPortmap, versPortmap)
		}
		return s.portmapCall(call)
	case progMount:
		if call.Vers != versMount {
			return rpc.MismatchReply(call.XID, versMount, versMount)
		}
		if call.Cred.Flavor != rpc.AuthNull && call.Cred.Flavor != rpc.AuthUnix {
			return rpc.AuthErrorReply(call.XID, rpc.AuthTooWeak)
		}
		return s.mountCall(client, call)
	case progNFS:
		if call.Vers != versNFS {
			return rpc.MismatchReply(call.XID, versNFS, versNFS)
		}
		if call.Cred.Flavor != rpc.AuthNull && call.Cred.Flavor != rpc.AuthUnix {
			return rpc.AuthErrorReply(call.XID, rpc.AuthTooWeak)
		}
		s.uploads.calls.Add(1)
		return s.nfsCall(ctx, client, call)
	}
	return rpc.AcceptedReply(call.XID, rpc.ProgUnavail, nil)
}
