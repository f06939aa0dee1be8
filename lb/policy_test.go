package lb

import (
	"encoding/base64"
	"net"
	"net/netip"
	"testing"
)

func TestRoutePolicy(t *testing.T) {
	basic := func(user, pass string) []byte {
		return []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	from := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	b1 := newBackend("10.0.0.1:8080", "b1", "aaaaaaaaaa")
	b2 := newBackend("10.0.0.2:8080", "b2", "bbbbbbbbbb")
	full := &Service{
		VHosts:          []string{"app.example.com"},
		Allow:           []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		RedirectToHTTPS: true,
		Auth:            &Auth{Realm: "r", User: "u", Pass: "secret"},
		Redir:           "/home",
		Sticky:          true,
		HSTS:            true,
	}
	open := &Service{VHosts: []string{"app.example.com"}}
	okClient := from("10.1.2.3")
	cases := []struct {
		name   string
		svc    *Service
		q      requestFacts
		want   verdict
		sticky *backend
	}{
		{"open route: forwarded", open, requestFacts{remote: okClient, plain: true, host: []byte("app.example.com"), path: []byte("/")}, forward, nil},
		{"client outside the allowed networks: 403 before anything else", full, requestFacts{remote: from("192.168.1.1"), plain: true}, forbid, nil},
		{"client address unknown, networks restricted: 403", full, requestFacts{}, forbid, nil},
		{"IPv4-mapped client inside the networks is allowed", &Service{Allow: full.Allow}, requestFacts{remote: from("::ffff:10.1.0.9")}, forward, nil},
		{"plain HTTP with redirect to HTTPS: 301, before auth", full, requestFacts{remote: okClient, plain: true}, toHTTPS, nil},
		{"over TLS: no HTTPS redirect; no credentials: 401", full, requestFacts{remote: okClient}, askAuth, nil},
		{"wrong password: 401", full, requestFacts{remote: okClient, auth: basic("u", "nope")}, askAuth, nil},
		{"wrong user: 401", full, requestFacts{remote: okClient, auth: basic("x", "secret")}, askAuth, nil},
		{"root of the vhost: redirected", full, requestFacts{remote: okClient, auth: basic("u", "secret"), host: []byte("app.example.com"), path: []byte("/?a=1")}, rootRedirect, nil},
		{"root of another host: not redirected", full, requestFacts{remote: okClient, auth: basic("u", "secret"), host: []byte("other"), path: []byte("/")}, forward, nil},
		{"not the root: forwarded", full, requestFacts{remote: okClient, auth: basic("u", "secret"), host: []byte("app.example.com"), path: []byte("/x")}, forward, nil},
		{"sticky cookie naming a backend: forwarded to it", full, requestFacts{remote: okClient, auth: basic("u", "secret"), path: []byte("/x"), cookie: []byte("bbbbbbbbbb")}, forward, b2},
		{"sticky cookie naming no backend: forwarded anywhere", full, requestFacts{remote: okClient, auth: basic("u", "secret"), path: []byte("/x"), cookie: []byte("gone")}, forward, nil},
		{"cookie on a route that is not sticky is ignored", open, requestFacts{remote: okClient, path: []byte("/x"), cookie: []byte("bbbbbbbbbb")}, forward, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &route{svc: c.svc, byCookie: map[string]*backend{b1.serverID: b1, b2.serverID: b2}}
			v, b := r.decide(&c.q)
			if v != c.want || b != c.sticky {
				t.Fatalf("decide = %v, %v; want %v, %v", v, b, c.want, c.sticky)
			}
		})
	}
}

func TestRouteAnswerHeaders(t *testing.T) {
	b1 := newBackend("10.0.0.1:8080", "b1", "aaaaaaaaaa")
	cases := []struct {
		name   string
		svc    *Service
		cookie string
		want   responseHeaders
	}{
		{"plain route adds nothing", &Service{}, "", responseHeaders{}},
		{"sticky, no cookie yet: the cookie naming the backend", &Service{Sticky: true}, "",
			responseHeaders{setCookie: "mesosphere_server_id=aaaaaaaaaa; path=/"}},
		{"sticky, cookie of another backend: replaced", &Service{Sticky: true}, "bbbbbbbbbb",
			responseHeaders{setCookie: "mesosphere_server_id=aaaaaaaaaa; path=/"}},
		{"sticky, the client holds this backend's cookie: nothing", &Service{Sticky: true}, "aaaaaaaaaa", responseHeaders{}},
		{"HSTS: marathon-lb's max-age", &Service{HSTS: true}, "", responseHeaders{hsts: "max-age=15768000"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cookie []byte
			if c.cookie != "" {
				cookie = []byte(c.cookie)
			}
			r := &route{svc: c.svc}
			if got := r.answerHeaders(cookie, b1); got != c.want {
				t.Fatalf("answerHeaders = %+v, want %+v", got, c.want)
			}
		})
	}
}
