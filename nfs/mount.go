package nfs

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// MOUNT v3 procedures (RFC 1813 section 5.2).
const (
	mountNull    = 0
	mountMnt     = 1
	mountDump    = 2
	mountUmnt    = 3
	mountUmntall = 4
	mountExport  = 5
)

// maxPathLen is MNTPATHLEN.
const maxPathLen = 1024

// decodeDirpath decodes the dirpath argument of MNT and UMNT.
func decodeDirpath(b []byte) (string, error) {
	d := rpc.NewDecoder(b)
	p := d.String(maxPathLen)
	if err := d.Err(); err != nil {
		return "", fmt.Errorf("mount dirpath: %w", err)
	}
	return p, nil
}

// allowed reports whether client may use the share.
func (x *share) allowed(client netip.Addr) bool {
	for _, p := range x.cfg.AllowedClients {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// mountEvent reports a MNT request to Config.OnMount.
func (s *Server) mountEvent(share string, client netip.Addr, allowed bool) {
	if s.cfg.OnMount != nil {
		s.cfg.OnMount(MountEvent{Share: share, Client: client, Allowed: allowed, Time: time.Now().UTC()})
	}
}

// mountCall answers a MOUNT v3 call.
func (s *Server) mountCall(client netip.Addr, call rpc.Call) []byte {
	var e rpc.Encoder
	switch call.Proc {
	case mountNull:
	case mountMnt:
		p, err := decodeDirpath(call.Args)
		if err != nil {
			return rpc.AcceptedReply(call.XID, rpc.GarbageArgs, nil)
		}
		x := s.lookupExport(p)
		switch {
		case x == nil:
			e.Uint32(uint32(mnt3ErrNoEnt))
		case !x.allowed(client):
			s.log.Info("mount refused", "client", client, "share", x.cfg.Name)
			e.Uint32(uint32(mnt3ErrAccess))
			s.mountEvent(x.cfg.Name, client, false)
		default:
			e.Uint32(uint32(mnt3OK))
			e.Opaque(encodeHandle(x.id, rootID))
			e.Uint32(2) // auth flavours, in order of preference
			e.Uint32(rpc.AuthUnix)
			e.Uint32(rpc.AuthNull)
			s.mu.Lock()
			s.mounts[mountKey{x.cfg.Name, client}] = time.Now()
			s.mu.Unlock()
			s.mountEvent(x.cfg.Name, client, true)
		}
	case mountDump:
		for _, m := range s.Sessions() {
			e.Bool(true)
			e.String(m.Client.String())
			e.String("/" + m.Share)
		}
		e.Bool(false)
	case mountUmnt:
		p, err := decodeDirpath(call.Args)
		if err != nil {
			return rpc.AcceptedReply(call.XID, rpc.GarbageArgs, nil)
		}
		if x := s.lookupExport(p); x != nil {
			s.mu.Lock()
			delete(s.mounts, mountKey{x.cfg.Name, client})
			s.mu.Unlock()
		}
	case mountUmntall:
		s.mu.Lock()
		for k := range s.mounts {
			if k.client == client {
				delete(s.mounts, k)
			}
		}
		s.mu.Unlock()
	case mountExport:
		s.mu.Lock()
		names := make([]string, 0, len(s.shares))
		groups := map[string][]netip.Prefix{}
		for n, x := range s.shares {
			names = append(names, n)
			groups[n] = x.cfg.AllowedClients
		}
		s.mu.Unlock()
		sort.Strings(names)
		for _, n := range names {
			e.Bool(true)
			e.String("/" + n)
			for _, g := range groups[n] {
				e.Bool(true)
				e.String(g.String())
			}
			e.Bool(false)
		}
		e.Bool(false)
	default:
		return rpc.AcceptedReply(call.XID, rpc.ProcUnavail, nil)
	}
	return rpc.AcceptedReply(call.XID, rpc.Success, e.B)
}
