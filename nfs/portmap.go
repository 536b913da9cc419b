package nfs

import (
	"fmt"
	"net"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// Portmapper version 2 procedures (RFC 1833 section 3.2).
const (
	pmapNull    = 0
	pmapSet     = 1
	pmapUnset   = 2
	pmapGetport = 3
	pmapDump    = 4
)

const (
	ipprotoTCP = 6
	ipprotoUDP = 17
)

// pmapMapping is the portmapper's mapping structure.
type pmapMapping struct {
	Prog, Vers, Prot, Port uint32
}

// decodeMapping decodes GETPORT, SET and UNSET arguments.
func decodeMapping(b []byte) (pmapMapping, error) {
	d := rpc.NewDecoder(b)
	m := pmapMapping{Prog: d.Uint32(), Vers: d.Uint32(), Prot: d.Uint32(), Port: d.Uint32()}
	if err := d.Err(); err != nil {
		return m, fmt.Errorf("portmap mapping: %w", err)
	}
	return m, nil
}

// mappings returns what the portmapper reports: itself, and NFS v3 and
// MOUNT v3 over TCP on the server's port.
func (s *Server) mappings() []pmapMapping {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pmapMapping
	if s.pmapTCP != nil {
		out = append(out, pmapMapping{progPortmap, versPortmap, ipprotoTCP, uint32(s.pmapTCP.Addr().(*net.TCPAddr).Port)})
	}
	if s.pmapUDP != nil {
		out = append(out, pmapMapping{progPortmap, versPortmap, ipprotoUDP, uint32(s.pmapUDP.LocalAddr().(*net.UDPAddr).Port)})
	}
	if s.port != 0 {
		out = append(out,
			pmapMapping{progNFS, versNFS, ipprotoTCP, uint32(s.port)},
			pmapMapping{progMount, versMount, ipprotoTCP, uint32(s.port)})
	}
	return out
}

// portmapCall answers a portmapper call. SET and UNSET are refused: the
// mappings are fixed by the server.
func (s *Server) portmapCall(call rpc.Call) []byte {
	var e rpc.Encoder
	switch call.Proc {
	case pmapNull:
	case pmapSet, pmapUnset:
		if _, err := decodeMapping(call.Args); err != nil {
			return rpc.AcceptedReply(call.XID, rpc.GarbageArgs, nil)
		}
		e.Bool(false)
	case pmapGetport:
		q, err := decodeMapping(call.Args)
		if err != nil {
			return rpc.AcceptedReply(call.XID, rpc.GarbageArgs, nil)
		}
		port := uint32(0)
		for _, m := range s.mappings() {
			if m.Prog == q.Prog && m.Vers == q.Vers && m.Prot == q.Prot {
				port = m.Port
			}
		}
		e.Uint32(port)
	case pmapDump:
		for _, m := range s.mappings() {
			e.Bool(true)
			e.Uint32(m.Prog)
			e.Uint32(m.Vers)
			e.Uint32(m.Prot)
			e.Uint32(m.Port)
		}
		e.Bool(false)
	default:
		return rpc.AcceptedReply(call.XID, rpc.ProcUnavail, nil)
	}
	return rpc.AcceptedReply(call.XID, rpc.Success, e.B)
}

// startPortmap binds the portmapper's TCP and UDP sockets and serves them.
func (s *Server) startPortmap() error {
	tl, err := net.Listen("tcp", s.cfg.PortmapAddr)
	if err != nil {
		return fmt.Errorf("nfs: portmapper: %w", err)
	}
	// UDP on the same port as TCP (best effort: TCP alone serves libnfs).
	ul, uerr := net.ListenPacket("udp", net.JoinHostPort(hostOf(s.cfg.PortmapAddr), fmt.Sprint(tl.Addr().(*net.TCPAddr).Port)))
	if uerr != nil {
		s.log.Warn("portmapper: no UDP", "err", uerr)
	}
	s.mu.Lock()
	s.pmapTCP = tl
	if uerr == nil {
		s.pmapUDP = ul
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.servePortmapTCP(tl)
	}()
	if uerr == nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.servePortmapUDP(ul)
		}()
	}
	s.log.Info("portmapper listening", "addr", tl.Addr().String())
	return nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// servePortmapTCP accepts portmapper connections; they are served like NFS
// connections (the dispatcher answers only the portmapper there too).
func (s *Server) servePortmapTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// servePortmapUDP answers portmapper datagrams (one call per datagram, no
// record marking).
func (s *Server) servePortmapUDP(pc net.PacketConn) {
	buf := make([]byte, 9000)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		call, err := rpc.ParseCall(buf[:n])
		if err != nil || call.Prog != progPortmap {
			continue
		}
		var reply []byte
		if call.Vers != versPortmap {
			reply = rpc.MismatchReply(call.XID, versPortmap, versPortmap)
		} else {
			reply = s.portmapCall(call)
		}
		_ = pc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = pc.WriteTo(reply[4:], from)
	}
}
