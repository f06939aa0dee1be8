package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadCerts reads PEM files each holding a certificate chain and its key
// (what marathon-lb's --ssl-certs takes). Go picks the certificate by SNI;
// the certificates of apps' HAPROXY_{n}_SSL_CERT come first for their
// vhosts (see Proxy.getCertificate).
func loadCerts(files []string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	for _, f := range files {
		c, err := tls.LoadX509KeyPair(f, f)
		if err != nil {
			return nil, fmt.Errorf("lb: loading certificate %s: %w (it must hold the PEM certificate chain and its key)", f, err)
		}
		tc.Certificates = append(tc.Certificates, c)
	}
	return tc, nil
}

// features holds the state of the paths beside the lean HTTP/1.1 one: the
// stock net/http stack for TLS (the :443 frontend and TLS service ports)
// and HTTP/2 without TLS, the certificates of HAPROXY_{n}_SSL_CERT, and
// the service-port listeners' addresses.
type features struct {
	rpOnce sync.Once
	rp     *httputil.ReverseProxy

	certMu sync.Mutex
	certs  map[string]*certEntry // path → loaded certificate

	svcKeys map[int]svcKey // service port → what its listener was opened for

	// The :443 frontend when it opened for an app's certificate (no
	// Config.Certs): srv under Proxy.mu, addr read by Proxy.Addr.
	httpsSrv  *http.Server
	httpsAddr atomic.Pointer[string]
}

type certEntry struct {
	mod  time.Time
	size int64
	cert *tls.Certificate
}

// appCert returns the certificate of an HAPROXY_{n}_SSL_CERT file, read
// again when the file changed.
func (p *Proxy) appCert(path string) (*tls.Certificate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	f := &p.feat
	f.certMu.Lock()
	defer f.certMu.Unlock()
	if e := f.certs[path]; e != nil && e.mod.Equal(fi.ModTime()) && e.size == fi.Size() {
		return e.cert, nil
	}
	c, err := tls.LoadX509KeyPair(path, path)
	if err != nil {
		return nil, err
	}
	if f.certs == nil {
		f.certs = map[string]*certEntry{}
	}
	f.certs[path] = &certEntry{mod: fi.ModTime(), size: fi.Size(), cert: &c}
	return &c, nil
}

// cachedCert returns a certificate loaded by appCert, without I/O.
func (p *Proxy) cachedCert(path string) *tls.Certificate {
	f := &p.feat
	f.certMu.Lock()
	defer f.certMu.Unlock()
	if e := f.certs[path]; e != nil {
		return e.cert
	}
	return nil
}

// loadAppCerts loads the HAPROXY_{n}_SSL_CERT files of a new table. A
// service whose certificate cannot be loaded is not served: it is dropped
// from the table with a problem.
func (p *Proxy) loadAppCerts(t *Table) (*Table, []Problem) {
	var drop map[*Service]bool
	var problems []Problem
	for _, s := range t.Services {
		if s.SSLCert == "" {
			continue
		}
		if _, err := p.appCert(s.SSLCert); err != nil {
			if drop == nil {
				drop = map[*Service]bool{}
			}
			drop[s] = true
			problems = append(problems, Problem{AppID: s.AppID, PortIndex: s.PortIndex, Label: portLabel(s.PortIndex, "SSL_CERT"),
				Message: fmt.Sprintf("cannot load certificate %s (%v): the file must hold the PEM certificate chain and its key, readable on every lb node; this port is not served", s.SSLCert, err)})
		}
	}
	if drop == nil {
		return t, nil
	}
	return t.without(drop, problems), problems
}

// getCertificate serves the certificate of an app whose vhost is the SNI
// name; nil lets crypto/tls pick among Config.Certs.
func (p *Proxy) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		return nil, nil
	}
	for _, r := range p.rt.Load().vhosts[strings.ToLower(hello.ServerName)] {
		if r.svc.SSLCert != "" {
			if c := p.cachedCert(r.svc.SSLCert); c != nil {
				return c, nil
			}
		}
	}
	return nil, nil
}

// fwd is what the reverse proxy needs to know about a request it forwards.
type fwd struct {
	b    *backend
	r    *route
	port string // X-Forwarded-Port
}

type ctxKey struct{}

// reverseProxy is the stock ReverseProxy shared by the TLS and HTTP/2
// paths.
func (p *Proxy) reverseProxy() *httputil.ReverseProxy {
	f := &p.feat
	f.rpOnce.Do(func() {
		transport := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: p.cfg.ConnectTimeout}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}
		f.rp = &httputil.ReverseProxy{
			Transport: transport,
			Rewrite: func(pr *httputil.ProxyRequest) {
				fw := pr.In.Context().Value(ctxKey{}).(*fwd)
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = fw.b.addr
				pr.Out.Host = pr.In.Host
				pr.SetXForwarded()
				pr.Out.Header.Set("X-Forwarded-Port", fw.port)
				if cs := pr.Out.Cookies(); len(cs) > 0 && strings.Contains(pr.Out.Header.Get("Cookie"), StickyCookie+"=") {
					// insert indirect: the backend never sees the sticky cookie.
					pr.Out.Header.Del("Cookie")
					for _, c := range cs {
						if c.Name != StickyCookie {
							pr.Out.AddCookie(c)
						}
					}
				}
				if s := fw.r.svc; s.ProxyPath != "" {
					if rest, ok := proxyPassPath(pr.Out.URL.Path, s.ProxyPath); ok {
						pr.Out.URL.Path, pr.Out.URL.RawPath = rest, ""
					}
					if h := proxyPassHost(s, hostOnly(strings.ToLower(pr.In.Host))); h != "" {
						pr.Out.Host = h
					}
				}
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				b := r.Context().Value(ctxKey{}).(*fwd).b
				b.errors.Add(1)
				if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
					b.failures.Add(1)
					b.ejectedUntil.Store(p.now().Add(p.cfg.EjectFor).UnixNano())
				}
				w.WriteHeader(http.StatusBadGateway)
			},
		}
	})
	return f.rp
}

// routeFunc picks the route of a request on the net/http paths.
type routeFunc func(rt *runtime, req *http.Request) *route

// vhostRoute routes by SNI (the Host header when the client sent none).
func vhostRoute(rt *runtime, req *http.Request) *route {
	host := ""
	if req.TLS != nil {
		host = strings.ToLower(req.TLS.ServerName)
	}
	if host == "" {
		host = hostOnly(strings.ToLower(req.Host))
	}
	return matchVHost(rt, []byte(host), []byte(req.URL.Path))
}

// streamHandler serves requests of the net/http paths: it applies the
// route's access rules and session options, then forwards with the stock
// ReverseProxy.
// plainVHost marks the :80 vhost frontend, where HAPROXY_{n}_REDIRECT_TO_HTTPS
// applies.
func (p *Proxy) streamHandler(st *frontStats, port int, plainVHost bool, pick routeFunc) http.Handler {
	rp := p.reverseProxy()
	portStr := strconv.Itoa(port)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if st != nil {
			st.requests.Add(1)
		}
		r := pick(p.rt.Load(), req)
		if r == nil {
			if st != nil {
				st.errors.Add(1)
			}
			http.Error(w, "No server is available to handle this request.", http.StatusServiceUnavailable)
			return
		}
		r.requests.Add(1)
		ra, _ := net.ResolveTCPAddr("tcp", req.RemoteAddr)
		host := ""
		if r.svc.Redir != "" {
			host = hostOnly(strings.ToLower(req.Host))
		}
		q := requestFacts{plain: plainVHost && req.TLS == nil, host: []byte(host), path: []byte(req.URL.Path)}
		if ra != nil {
			q.remote = ra
		}
		if r.svc.Auth != nil {
			q.auth = []byte(req.Header.Get("Authorization"))
		}
		if r.svc.Sticky {
			if c, err := req.Cookie(StickyCookie); err == nil {
				q.cookie = []byte(c.Value)
			}
		}
		v, prefer := r.decide(&q)
		switch v {
		case forbid:
			http.Error(w, "Request forbidden by administrative rules.", http.StatusForbidden)
			return
		case toHTTPS:
			http.Redirect(w, req, "https://"+hostOnly(req.Host)+req.URL.RequestURI(), http.StatusMovedPermanently)
			return
		case askAuth:
			w.Header().Set("WWW-Authenticate", `Basic realm="`+r.svc.Auth.Realm+`"`)
			http.Error(w, "You need a valid user and password.", http.StatusUnauthorized)
			return
		case rootRedirect:
			http.Redirect(w, req, r.svc.Redir, http.StatusMovedPermanently)
			return
		}
		var ip net.IP
		if ra != nil {
			ip = ra.IP
		}
		nowN := p.now().UnixNano()
		b := prefer
		if b == nil || b.ejected(nowN) {
			b = r.pick(ip, nowN, nil)
		}
		if b == nil {
			r.errors.Add(1)
			http.Error(w, "No server is available to handle this request.", http.StatusServiceUnavailable)
			return
		}
		b.requests.Add(1)
		b.active.Add(1)
		defer b.active.Add(-1)
		if h := r.answerHeaders(q.cookie, b); h.setCookie != "" || h.hsts != "" {
			if h.setCookie != "" {
				w.Header().Add("Set-Cookie", h.setCookie)
				w.Header().Set("Cache-Control", "private")
			}
			if h.hsts != "" {
				w.Header().Set("Strict-Transport-Security", h.hsts)
			}
		}
		rp.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), ctxKey{}, &fwd{b: b, r: r, port: portStr})))
	})
}

// httpsServer is the TLS vhost frontend. It uses the stock net/http server
// and ReverseProxy: it speaks HTTP/2 through ALPN, and vhosts are routed by
// SNI (the Host header when the client sent no SNI).
func (p *Proxy) httpsServer() *http.Server { return p.httpsServerOn(p.statics[kindHTTPS]) }

func (p *Proxy) httpsServerOn(ln net.Listener) *http.Server {
	p.tlsCfg.GetCertificate = p.getCertificate
	h := p.streamHandler(p.fstats[kindHTTPS], portOf(ln.Addr()), false, vhostRoute)
	return &http.Server{Handler: h, ReadHeaderTimeout: 15 * time.Second, IdleTimeout: p.cfg.ClientIdleTimeout, TLSConfig: p.tlsCfg}
}

// ensureHTTPSLocked opens the :443 frontend when it is configured but had
// no certificate at New, once a service of t has a vhost and
// HAPROXY_{n}_SSL_CERT. p.mu is held.
func (p *Proxy) ensureHTTPSLocked(t *Table) []Problem {
	f := &p.feat
	if p.cfg.HTTPSAddr == "" || p.tlsCfg == nil || p.statics[kindHTTPS] != nil || f.httpsSrv != nil {
		return nil
	}
	var need []*Service
	for _, s := range t.Services {
		if s.SSLCert != "" && len(s.VHosts) > 0 {
			need = append(need, s)
		}
	}
	if len(need) == 0 {
		return nil
	}
	ln, err := net.Listen("tcp", p.cfg.HTTPSAddr)
	if err != nil {
		var problems []Problem
		for _, s := range need {
			problems = append(problems, Problem{AppID: s.AppID, PortIndex: s.PortIndex, Label: portLabel(s.PortIndex, "SSL_CERT"),
				Message: fmt.Sprintf("the lb cannot open its HTTPS frontend on %s (%v); the vhosts are served over TLS on the service port only", p.cfg.HTTPSAddr, err)})
		}
		return problems
	}
	srv := p.httpsServerOn(ln)
	f.httpsSrv = srv
	addr := ln.Addr().String()
	f.httpsAddr.Store(&addr)
	p.wg.Add(1)
	go func() { defer p.wg.Done(); srv.Serve(tls.NewListener(ln, p.tlsCfg)) }()
	return nil
}

func (p *Proxy) lazyHTTPSAddr() string {
	if a := p.feat.httpsAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// closeLazyHTTPS stops a :443 frontend opened by ensureHTTPSLocked.
// p.mu is held.
func (p *Proxy) closeLazyHTTPS() {
	if p.feat.httpsSrv != nil {
		p.feat.httpsSrv.Close()
	}
}
