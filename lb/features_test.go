package lb

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// TestAuthMD5AndDESThroughProxy: hashes from `openssl passwd -1` and DES
// crypt(3) authenticate through the real proxy.
func TestAuthMD5AndDESThroughProxy(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{
		app("/md5", freePort(t), map[string]string{"HAPROXY_0_VHOST": "md5.test", "HAPROXY_0_AUTH": "r:alice:$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/"}),
		app("/des", freePort(t), map[string]string{"HAPROXY_0_VHOST": "des.test", "HAPROXY_0_AUTH": "r:bob:abhWCwoTZY2c6"}),
	}, []api.Task{task("/md5", 1, a.port), task("/des", 1, a.port)})
	p := startProxy(t, testConfig(src))
	c := client()
	do := func(host, user, pass string) int {
		req, _ := http.NewRequest("GET", "http://"+p.Addr("http")+"/", nil)
		req.Host = host
		req.SetBasicAuth(user, pass)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		host, user, pass string
		want             int
	}{
		{"md5.test", "alice", "s3cret", 200},
		{"md5.test", "alice", "s3cret!", 401},
		{"des.test", "bob", "s3cret", 200},
		{"des.test", "bob", "secret", 401},
	} {
		if got := do(tc.host, tc.user, tc.pass); got != tc.want {
			t.Errorf("%s %s:%s: got %d, want %d", tc.host, tc.user, tc.pass, got, tc.want)
		}
	}
}

// TestBindAddr: HAPROXY_{n}_BIND_ADDR listens on that address only, and
// a changed address moves the listener.
func TestBindAddr(t *testing.T) {
	if c, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		c.Close()
	}
	src := newFakeSource()
	echo := startTCPEcho(t, "hi ")
	sp := freePort(t)
	src.set([]api.App{app("/bound", sp, map[string]string{"HAPROXY_0_BIND_ADDR": "127.0.0.2"})}, []api.Task{task("/bound", 1, echo)})
	p := startProxy(t, testConfig(src)) // BindHost 127.0.0.1
	dial := func(host string) error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(sp)), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi " {
			return fmt.Errorf("read %q, %v", b, err)
		}
		return nil
	}
	if err := dial("127.0.0.2"); err != nil {
		t.Fatalf("service port on its BIND_ADDR: %v", err)
	}
	if dial("127.0.0.1") == nil {
		t.Errorf("service port also answers on the proxy's BindHost")
	}
	if !strings.Contains(p.Table().ByPort[sp].BindAddr, "127.0.0.2") {
		t.Errorf("table: %+v", p.Table().ByPort[sp])
	}
	// Dropping the label moves it back to BindHost.
	src.set([]api.App{app("/bound", sp, nil)}, []api.Task{task("/bound", 1, echo)})
	eventually(t, 3*time.Second, func() error { return dial("127.0.0.1") })
	if dial("127.0.0.2") == nil {
		t.Errorf("the old bind address still answers")
	}
}

// TestSSLCert: HAPROXY_{n}_SSL_CERT makes the service port speak TLS (HTTP
// with HTTP/2, and TCP) and serves the vhost on the :443 frontend by SNI,
// with no --lb-certs given. A certificate that cannot be read skips the
// port with a problem.
func TestSSLCert(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	echo := startTCPEcho(t, "tls-echo ")
	cert := writeCert(t, "tls.test")
	httpSP, tcpSP, badSP := freePort(t), freePort(t), freePort(t)
	src.set([]api.App{
		app("/web", httpSP, map[string]string{"HAPROXY_0_VHOST": "tls.test", "HAPROXY_0_SSL_CERT": cert}),
		app("/raw", tcpSP, map[string]string{"HAPROXY_0_SSL_CERT": cert}),
		app("/bad", badSP, map[string]string{"HAPROXY_0_MODE": "http", "HAPROXY_0_SSL_CERT": "/nonexistent/cert.pem"}),
	}, []api.Task{task("/web", 1, a.port), task("/raw", 1, echo), task("/bad", 1, a.port)})
	cfg := testConfig(src)
	cfg.HTTPSAddr = "127.0.0.1:0"
	var mu sync.Mutex
	reported := map[string][]string{}
	cfg.Report = func(app string, ps []string) { mu.Lock(); reported[app] = ps; mu.Unlock() }
	p := startProxy(t, cfg)

	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "tls.test", InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, addr := range []string{"127.0.0.1:" + strconv.Itoa(httpSP), p.Addr("https")} {
		resp, err := c.Get("https://" + addr + "/x")
		if err != nil {
			t.Fatalf("https://%s: %v", addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "a /x" || resp.ProtoMajor != 2 {
			t.Errorf("https://%s: got %s %q, want HTTP/2 \"a /x\"", addr, resp.Proto, body)
		}
		if got := resp.Header.Get("X-Echo-X-Forwarded-Proto"); got != "https" {
			t.Errorf("https://%s: X-Forwarded-Proto %q", addr, got)
		}
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != "tls.test" {
			t.Errorf("https://%s: not served with the app's certificate", addr)
		}
	}
	if got := c.Transport.(*http.Transport); got == nil {
		t.Fatal("no transport")
	}
	// Plain HTTP on a TLS service port does not reach the backend.
	if resp, err := client().Get("http://127.0.0.1:" + strconv.Itoa(httpSP) + "/"); err == nil && resp.StatusCode == 200 {
		t.Errorf("plain HTTP served on a TLS service port")
	}

	tc, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tcpSP), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to the tcp service port: %v", err)
	}
	tc.SetDeadline(time.Now().Add(3 * time.Second))
	tc.Write([]byte("ping"))
	tc.CloseWrite()
	got, _ := io.ReadAll(tc)
	tc.Close()
	if string(got) != "tls-echo ping" {
		t.Errorf("TLS-terminated TCP: got %q", got)
	}

	if p.Table().ByPort[badSP] != nil {
		t.Errorf("a port with an unreadable certificate is served")
	}
	eventually(t, 3*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(reported["/bad"]) == 0 || !strings.Contains(reported["/bad"][0], "HAPROXY_0_SSL_CERT") {
			return fmt.Errorf("reported %v", reported["/bad"])
		}
		return nil
	})
}

// TestProxyPassAndRootRedirect: HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH
// strips the prefix and sets Host; HAPROXY_{n}_HTTP_BACKEND_REDIR sends
// "/" elsewhere. Both on the lean HTTP/1.1 path and over h2c.
func TestProxyPassAndRootRedirect(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
		fmt.Fprintf(w, "a %s", r.URL.RequestURI())
	})
	sp := freePort(t)
	src.set([]api.App{
		app("/api", sp, map[string]string{"HAPROXY_0_VHOST": "site.test,www.site.test", "HAPROXY_0_PATH": "/api",
			"HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/api"}),
		app("/home", freePort(t), map[string]string{"HAPROXY_0_VHOST": "site.test", "HAPROXY_0_HTTP_BACKEND_REDIR": "/app/"}),
	}, []api.Task{task("/api", 1, a.port), task("/home", 1, a.port)})
	p := startProxy(t, testConfig(src))
	for _, cl := range []struct {
		name string
		c    *http.Client
	}{{"http/1.1", client()}, {"h2c", h2cClient()}} {
		for _, tc := range []struct{ url, host, want, wantHost string }{
			{"http://" + p.Addr("http") + "/api/users?x=1", "site.test", "a /users?x=1", "site.test"},
			{"http://" + p.Addr("http") + "/api", "WWW.site.test:80", "a /", "www.site.test"},
			{"http://" + p.Addr("http") + "/other", "site.test", "a /other", "site.test"},
			{"http://127.0.0.1:" + strconv.Itoa(sp) + "/api/v2/x", "elsewhere", "a /v2/x", "site.test"},
		} {
			resp, body := get(t, cl.c, tc.url, tc.host, nil)
			if resp.StatusCode != 200 || body != tc.want || resp.Header.Get("X-Host") != tc.wantHost {
				t.Errorf("%s %s (Host %s): got %d %q Host %q, want %q Host %q", cl.name, tc.url, tc.host, resp.StatusCode, body,
					resp.Header.Get("X-Host"), tc.want, tc.wantHost)
			}
		}
		resp, _ := get(t, cl.c, "http://"+p.Addr("http")+"/", "site.test", nil)
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "/app/" {
			t.Errorf("%s root redirect: %d %q", cl.name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// h2cClient speaks HTTP/2 with prior knowledge over plain TCP.
func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestH2CPriorKnowledge: HTTP/2 without TLS on the vhost, app-id and HTTP
// service-port frontends, next to HTTP/1.1 on the same ports.
func TestH2CPriorKnowledge(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	sp := freePort(t)
	src.set([]api.App{app("/web", sp, map[string]string{"HAPROXY_0_VHOST": "h2.test", "HAPROXY_0_STICKY": "true"})},
		[]api.Task{task("/web", 1, a.port)})
	p := startProxy(t, testConfig(src))
	c := h2cClient()
	for _, tc := range []struct{ url, host string }{
		{"http://" + p.Addr("http") + "/x", "h2.test"},
		{"http://127.0.0.1:" + strconv.Itoa(sp) + "/x", ""},
		{"http://" + p.Addr("appid") + "/x", ""},
	} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		req.Header.Set("X-Marathon-App-Id", "/web")
		for i := 0; i < 3; i++ { // several streams on one connection
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("h2c %s: %v", tc.url, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(body) != "a /x" {
				t.Errorf("h2c %s: got %s %d %q", tc.url, resp.Proto, resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Echo-X-Forwarded-Proto"); got != "http" {
				t.Errorf("h2c %s: X-Forwarded-Proto %q", tc.url, got)
			}
			if got := resp.Header.Get("X-Echo-X-Forwarded-For"); got != "127.0.0.1" {
				t.Errorf("h2c %s: X-Forwarded-For %q", tc.url, got)
			}
			if i == 0 && !strings.HasPrefix(resp.Header.Get("Set-Cookie"), StickyCookie+"=") {
				t.Errorf("h2c %s: no sticky cookie", tc.url)
			}
		}
	}
	// HTTP/1.1 still works on the same frontend.
	resp, body := get(t, client(), "http://"+p.Addr("http")+"/y", "h2.test", nil)
	if resp.StatusCode != 200 || body != "a /y" || resp.ProtoMajor != 1 {
		t.Errorf("HTTP/1.1 next to h2c: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	// The deprecated "Upgrade: h2c" handshake is answered in HTTP/1.1.
	up, err := net.Dial("tcp", p.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	up.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(up, "GET /u HTTP/1.1\r\nHost: h2.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
	uresp, err := http.ReadResponse(bufio.NewReader(up), nil)
	if err != nil {
		t.Fatal(err)
	}
	ubody, _ := io.ReadAll(uresp.Body)
	if uresp.StatusCode != 200 || uresp.ProtoMajor != 1 || string(ubody) != "a /u" {
		t.Errorf("Upgrade: h2c: got %s %d %q", uresp.Proto, uresp.StatusCode, ubody)
	}
	// A preface later on a connection is a bad request, not HTTP/2.
	conn, err := net.Dial("tcp", p.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: h2.test\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	all, _ := io.ReadAll(conn)
	if !strings.Contains(string(all), "200 OK") || !strings.Contains(string(all), "400 Bad Request") {
		t.Errorf("preface after a request: %q", all)
	}
}

// TestBlueGreenDeployGroup: two apps of one HAPROXY_DEPLOYMENT_GROUP are
// one service on the group's port; the old colour's task drains: it keeps
// its connection, takes no new one, and shows as MAINT in the stats.
func TestBlueGreenDeployGroup(t *testing.T) {
	src := newFakeSource()
	blue := startTCPEcho(t, "blue ")
	green := startTCPEcho(t, "green ")
	sp, alt := freePort(t), freePort(t)
	blueApp := app("/web-blue", sp, map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_0_PORT": strconv.Itoa(sp),
		"HAPROXY_DEPLOYMENT_ALT_PORT": strconv.Itoa(alt), "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-11-01T10:00:00.000000"})
	blueApp.Instances = 1
	src.set([]api.App{blueApp}, []api.Task{task("/web-blue", 1, blue)})
	p := startProxy(t, testConfig(src))

	dial := func() (net.Conn, string) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(sp), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprint(c, "x")
		var got []byte
		b := make([]byte, 16)
		for !strings.HasSuffix(string(got), "x") {
			n, err := c.Read(b)
			got = append(got, b[:n]...)
			if err != nil {
				break
			}
		}
		return c, string(got)
	}
	old, got := dial()
	defer old.Close()
	if got != "blue x" {
		t.Fatalf("before the deploy: %q", got)
	}

	greenApp := app("/web-green", alt, map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "web", "HAPROXY_0_PORT": strconv.Itoa(sp),
		"HAPROXY_DEPLOYMENT_ALT_PORT": strconv.Itoa(alt), "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-11-01T11:00:00.000000",
		"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "1", "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "1"})
	greenApp.Instances = 1
	src.set([]api.App{blueApp, greenApp}, []api.Task{task("/web-blue", 1, blue), task("/web-green", 1, green)})
	eventually(t, 3*time.Second, func() error {
		s := p.Table().ByPort[sp]
		if s == nil || s.AppID != "/web" || len(s.Backends) != 2 {
			return fmt.Errorf("service %+v", s)
		}
		return nil
	})
	if p.Table().ByPort[alt] != nil {
		t.Errorf("the new colour's own service port is served separately")
	}
	for i := 0; i < 4; i++ {
		c, got := dial()
		c.Close()
		if got != "green x" {
			t.Errorf("new connection %d went to %q, want the green task", i, got)
		}
	}
	fmt.Fprint(old, "y")
	b := make([]byte, 1)
	if _, err := io.ReadFull(old, b); err != nil || b[0] != 'y' {
		t.Errorf("the draining task's connection was cut: %v", err)
	}
	stats := func() string {
		resp, err := http.Get("http://" + p.Addr("admin") + "/haproxy?stats;csv")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	px := fmt.Sprintf("web_%d", sp)
	blueName, greenName := fmt.Sprintf("127_0_0_1_%d", blue), fmt.Sprintf("127_0_0_1_%d", green)
	s := stats()
	if b, g := statsRow(t, s, px, blueName), statsRow(t, s, px, greenName); b == nil || b["status"] != "MAINT" || b["scur"] != "1" ||
		g == nil || g["status"] != "UP" {
		t.Errorf("stats do not show the old task MAINT with its connection (%s) and the new one UP:\n%s", blueName, s)
	}
	old.Close()
	eventually(t, 3*time.Second, func() error {
		s := stats()
		if b := statsRow(t, s, px, blueName); b == nil || b["status"] != "MAINT" || b["scur"] != "0" || b["qcur"] != "0" {
			return fmt.Errorf("draining task still busy:\n%s", s)
		}
		return nil
	})
}

// TestHTTPSOpensForAppCert: with no certificates at start, the HTTPS
// frontend is not listening until an app brings one.
func TestHTTPSOpensForAppCert(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{app("/web", freePort(t), map[string]string{"HAPROXY_0_VHOST": "late.test"})}, []api.Task{task("/web", 1, a.port)})
	cfg := testConfig(src)
	cfg.HTTPSAddr = "127.0.0.1:0"
	p := startProxy(t, cfg)
	if addr := p.Addr("https"); addr != "" {
		t.Fatalf("HTTPS frontend listening on %s with no certificate", addr)
	}
	src.set([]api.App{app("/web", freePort(t), map[string]string{"HAPROXY_0_VHOST": "late.test", "HAPROXY_0_SSL_CERT": writeCert(t, "late.test")})},
		[]api.Task{task("/web", 1, a.port)})
	eventually(t, 3*time.Second, func() error {
		if p.Addr("https") == "" {
			return fmt.Errorf("not listening yet")
		}
		return nil
	})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "late.test", InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	resp, err := c.Get("https://" + p.Addr("https") + "/z")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "a /z" {
		t.Errorf("got %q", body)
	}
}
