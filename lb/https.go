package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"
)

// loadCerts reads PEM files each holding a certificate chain and its key
// (what marathon-lb's --ssl-certs takes). Go picks the certificate by SNI.
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

type ctxKey struct{}

// httpsServer is the TLS vhost frontend. It uses the stock net/http server
// and ReverseProxy: it speaks HTTP/2 through ALPN, and vhosts are routed by
// SNI (the Host header when the client sent no SNI).
func (p *Proxy) httpsServer() *http.Server {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: p.cfg.ConnectTimeout}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	port := strconv.Itoa(portOf(p.statics[kindHTTPS].Addr()))
	rp := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			b := pr.In.Context().Value(ctxKey{}).(*backend)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = b.addr
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Port", port)
			if cs := pr.Out.Cookies(); len(cs) > 0 && strings.Contains(pr.Out.Header.Get("Cookie"), StickyCookie+"=") {
				// insert indirect: the backend never sees the sticky cookie.
				pr.Out.Header.Del("Cookie")
				for _, c := range cs {
					if c.Name != StickyCookie {
						pr.Out.AddCookie(c)
					}
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			b := r.Context().Value(ctxKey{}).(*backend)
			b.errors.Add(1)
			if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
				b.failures.Add(1)
				b.ejectedUntil.Store(p.now().Add(p.cfg.EjectFor).UnixNano())
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	st := p.fstats[kindHTTPS]
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		st.requests.Add(1)
		host := ""
		if req.TLS != nil {
			host = strings.ToLower(req.TLS.ServerName)
		}
		if host == "" {
			host = strings.ToLower(req.Host)
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
		}
		r := matchVHost(p.rt.Load(), []byte(host), []byte(req.URL.Path))
		if r == nil {
			st.errors.Add(1)
			http.Error(w, "No server is available to handle this request.", http.StatusServiceUnavailable)
			return
		}
		r.requests.Add(1)
		ra, _ := net.ResolveTCPAddr("tcp", req.RemoteAddr)
		if ra != nil && !allowed(r.svc, ra) {
			http.Error(w, "Request forbidden by administrative rules.", http.StatusForbidden)
			return
		}
		if r.svc.Auth != nil && !r.checkAuth([]byte(req.Header.Get("Authorization"))) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+r.svc.Auth.Realm+`"`)
			http.Error(w, "You need a valid user and password.", http.StatusUnauthorized)
			return
		}
		var ip net.IP
		if ra != nil {
			ip = ra.IP
		}
		var prefer *backend
		var cookie string
		if r.svc.Sticky {
			if c, err := req.Cookie(StickyCookie); err == nil {
				cookie = c.Value
				prefer = r.byCookie[cookie]
			}
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
		if r.svc.Sticky && cookie != b.serverID {
			w.Header().Add("Set-Cookie", StickyCookie+"="+b.serverID+"; path=/")
			w.Header().Set("Cache-Control", "private")
		}
		if r.svc.HSTS {
			w.Header().Set("Strict-Transport-Security", "max-age="+strconv.Itoa(HSTSMaxAge))
		}
		ctx := req.Context()
		rp.ServeHTTP(w, req.WithContext(contextWith(ctx, b)))
	})
	return &http.Server{Handler: h, ReadHeaderTimeout: 15 * time.Second, TLSConfig: p.tlsCfg}
}

func contextWith(ctx context.Context, b *backend) context.Context {
	return context.WithValue(ctx, ctxKey{}, b)
}
