package lb

import (
	"io"
	"net"
	"net/netip"
	"sync"
)

// allowed reports whether the client address passes the service's
// HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL.
func allowed(s *Service, addr net.Addr) bool {
	if len(s.Allow) == 0 {
		return true
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func clientIP(addr net.Addr) net.IP {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP
	}
	return nil
}

// dialBackend connects to a backend of r, ejecting backends that refuse and
// trying others (up to 3 attempts). It returns nil when none answered.
func (p *Proxy) dialBackend(r *route, client net.IP, first *backend) (*backend, *net.TCPConn) {
	var tried []*backend
	for attempt := 0; attempt < 3; attempt++ {
		b := first
		first = nil
		if b == nil || b.ejected(p.now().UnixNano()) {
			b = r.pick(client, p.now().UnixNano(), tried)
		}
		if b == nil {
			return nil, nil
		}
		tried = append(tried, b)
		c, err := net.DialTimeout("tcp", b.addr, p.cfg.ConnectTimeout)
		if err != nil {
			b.failures.Add(1)
			b.ejectedUntil.Store(p.now().Add(p.cfg.EjectFor).UnixNano())
			p.log.Warn("backend refused a connection; ejected", "service", r.svc.Name, "backend", b.addr, "for", p.cfg.EjectFor, "err", err)
			continue
		}
		b.ejectedUntil.Store(0)
		b.conns.Add(1)
		b.active.Add(1)
		tc := c.(*net.TCPConn)
		if !b.track(tc, "conn") {
			b.active.Add(-1)
			tc.Close()
			continue
		}
		return b, tc
	}
	return nil, nil
}

// serveTCP proxies one TCP connection: both sides stay *net.TCPConn so
// io.Copy splices, and each direction half-closes at EOF.
func (p *Proxy) serveTCP(c *net.TCPConn, r *route) {
	defer c.Close()
	r.conns.Add(1)
	r.active.Add(1)
	defer r.active.Add(-1)
	if !allowed(r.svc, c.RemoteAddr()) {
		return
	}
	b, bc := p.dialBackend(r, clientIP(c.RemoteAddr()), nil)
	if bc == nil {
		r.errors.Add(1)
		return
	}
	defer func() {
		b.untrack(bc)
		b.active.Add(-1)
		bc.Close()
	}()
	splice(c, bc)
}

// splice copies both ways until both directions are done.
func splice(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(b, a)
		b.CloseWrite()
	}()
	io.Copy(a, b)
	a.CloseWrite()
	wg.Wait()
}
