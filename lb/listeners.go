package lb

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// syncServiceListenersLocked makes the service-port listeners follow
// table: new ports open, removed ones close, and a port whose bind address
// (HAPROXY_{n}_BIND_ADDR) or TLS (HAPROXY_{n}_SSL_CERT) changed is opened
// again. Established connections are never touched. p.mu is held.
func (p *Proxy) syncServiceListenersLocked(table *Table) []Problem {
	f := &p.feat
	if f.svcKeys == nil {
		f.svcKeys = map[int]svcKey{}
	}
	problems := p.ensureHTTPSLocked(table)
	for port, s := range table.ByPort {
		host := p.cfg.BindHost
		if s.BindAddr != "" {
			host = s.BindAddr
		}
		key := svcKey{host, s.SSLCert != ""}
		if ln, ok := p.svcLns[port]; ok {
			if f.svcKeys[port] == key {
				continue
			}
			ln.Close()
			delete(p.svcLns, port)
			delete(f.svcKeys, port)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			problems = append(problems, Problem{AppID: s.AppID, PortIndex: s.PortIndex,
				Message: fmt.Sprintf("the lb cannot listen on service port %d at %s (%v); this port is not served until it is free: choose another service port or bind address", port, addr, err)})
			continue
		}
		p.svcLns[port] = ln
		f.svcKeys[port] = key
		fe := &frontend{kind: "service", port: port}
		fe.init()
		p.wg.Add(1)
		if s.SSLCert != "" {
			go func() { defer p.wg.Done(); p.acceptTLSService(ln, fe) }()
		} else {
			go func() { defer p.wg.Done(); p.acceptLoop(ln, fe) }()
		}
	}
	for port, ln := range p.svcLns {
		if _, ok := table.ByPort[port]; !ok {
			ln.Close()
			delete(p.svcLns, port)
			delete(f.svcKeys, port)
		}
	}
	return problems
}

// svcKey is what a service port's listener was opened for: a bind host,
// with or without TLS.
type svcKey struct {
	host string
	tls  bool
}

// acceptTLSService accepts on a service port with HAPROXY_{n}_SSL_CERT:
// TLS is terminated here (marathon-lb's "bind :port ssl crt FILE"), then
// the connection is proxied as TCP or HTTP (HTTP/2 through ALPN).
func (p *Proxy) acceptTLSService(ln net.Listener, fe *frontend) {
	byPort := func(rt *runtime, _ *http.Request) *route { return rt.byPort[fe.port] }
	h := p.streamHandler(nil, fe.port, false, byPort)
	p.acceptEach(ln, fe, func(tc *net.TCPConn) { p.serveTLSService(tc, fe, h) })
}

func (p *Proxy) serveTLSService(c *net.TCPConn, fe *frontend, h http.Handler) {
	if !p.trackClient(c) {
		c.Close()
		return
	}
	defer p.untrackClient(c)
	r := p.rt.Load().byPort[fe.port]
	if r == nil || r.svc.SSLCert == "" {
		c.Close()
		return
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			// The certificate of the live table: a new file is used
			// from the next handshake on.
			if r := p.rt.Load().byPort[fe.port]; r != nil && r.svc.SSLCert != "" {
				if crt := p.cachedCert(r.svc.SSLCert); crt != nil {
					return crt, nil
				}
			}
			return nil, errors.New("no certificate for this service port")
		}}
	if r.svc.Mode == ModeHTTP {
		cfg.NextProtos = []string{"h2", "http/1.1"}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 15 * time.Second, IdleTimeout: p.cfg.ClientIdleTimeout, TLSConfig: cfg}
		serveOne(srv, tls.Server(c, cfg))
		return
	}
	p.serveTLSTCP(tls.Server(c, cfg), c, r)
}

// serveTLSTCP proxies a TLS-terminated TCP connection to a backend.
func (p *Proxy) serveTLSTCP(tc *tls.Conn, raw *net.TCPConn, r *route) {
	defer tc.Close()
	r.conns.Add(1)
	r.active.Add(1)
	defer r.active.Add(-1)
	if !allowed(r.svc, raw.RemoteAddr()) {
		return
	}
	raw.SetDeadline(p.now().Add(15 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	raw.SetDeadline(time.Time{})
	b, bc := p.dialBackend(r, clientIP(raw.RemoteAddr()), nil)
	if bc == nil {
		r.errors.Add(1)
		return
	}
	defer b.release(bc)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(bc, tc)
		bc.CloseWrite()
	}()
	io.Copy(tc, bc)
	tc.CloseWrite()
	wg.Wait()
}
