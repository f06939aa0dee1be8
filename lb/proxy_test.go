package lb

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/weftnet/weft/sched/api"
)

func TestVHostRouting(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "site", nil)
	b := startHTTPBackend(t, "api", nil)
	src.set([]api.App{
		app("/site", freePort(t), map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "Biserver.example.com,www.example.com"}),
		app("/api", freePort(t), map[string]string{"HAPROXY_0_VHOST": "biserver.example.com", "HAPROXY_0_PATH": "/api"}),
	}, []api.Task{task("/site", 1, a.port), task("/api", 1, b.port)})
	p := startProxy(t, testConfig(src))
	url := "http://" + p.Addr("http")
	c := client()
	for _, tc := range []struct{ host, path, want string }{
		{"biserver.example.com", "/", "site /"},
		{"BISERVER.example.com:80", "/index.html", "site /index.html"},
		{"www.example.com", "/api/x", "site /api/x"},
		{"biserver.example.com", "/api/users", "api /api/users"},
	} {
		resp, body := get(t, c, url+tc.path, tc.host, nil)
		if resp.StatusCode != 200 || body != tc.want {
			t.Errorf("Host %s %s: got %d %q, want %q", tc.host, tc.path, resp.StatusCode, body, tc.want)
		}
	}
	resp, _ := get(t, c, url+"/", "unknown.example.com", nil)
	if resp.StatusCode != 503 {
		t.Errorf("unknown vhost: got %d, want 503", resp.StatusCode)
	}
}

func TestServicePortTCP(t *testing.T) {
	src := newFakeSource()
	echo := startTCPEcho(t, "hello ")
	sp := freePort(t)
	src.set([]api.App{app("/echo", sp, nil)}, []api.Task{task("/echo", 1, echo)})
	startProxy(t, testConfig(src))
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("world"))
	c.(*net.TCPConn).CloseWrite() // half-close: the reply must still arrive
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("got %q, %v; want %q", got, err, "hello world")
	}
}

func TestHTTPModeServicePortAndAppID(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	sp := freePort(t)
	src.set([]api.App{func() api.App {
		x := app("/web", sp, nil)
		x.HealthChecks = []api.HealthCheck{{Protocol: "MESOS_HTTP", Path: "/"}}
		return x
	}()}, []api.Task{func() api.Task {
		tk := task("/web", 1, a.port)
		tk.HealthCheckResults = []api.HealthCheckResult{{Alive: true}}
		return tk
	}()})
	p := startProxy(t, testConfig(src))
	c := client()
	resp, body := get(t, c, "http://127.0.0.1:"+strconv.Itoa(sp)+"/x", "", nil)
	if resp.StatusCode != 200 || body != "a /x" || resp.Header.Get("X-Echo-X-Forwarded-Port") != strconv.Itoa(sp) {
		t.Errorf("service port in http mode: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = get(t, c, "http://"+p.Addr("appid")+"/y", "", map[string]string{"X-Marathon-App-Id": "/web"})
	if resp.StatusCode != 200 || body != "a /y" {
		t.Errorf("app-id routing: %d %q", resp.StatusCode, body)
	}
	resp, _ = get(t, c, "http://"+p.Addr("appid")+"/y", "", map[string]string{"X-Marathon-App-Id": "/nope"})
	if resp.StatusCode != 503 {
		t.Errorf("unknown app id: %d, want 503", resp.StatusCode)
	}
}

func TestXForwardedHeaders(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test"})}, []api.Task{task("/a", 1, a.port)})
	p := startProxy(t, testConfig(src))
	_, port, _ := net.SplitHostPort(p.Addr("http"))
	resp, _ := get(t, client(), "http://"+p.Addr("http")+"/", "a.test", map[string]string{"X-Forwarded-Proto": "https", "Connection": "keep-alive, X-Foo"})
	h := resp.Header
	if got := h.Get("X-Echo-X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := h.Values("X-Echo-X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
		t.Errorf("X-Forwarded-Proto = %q (a client's value must be replaced)", got)
	}
	if got := h.Get("X-Echo-X-Forwarded-Port"); got != port {
		t.Errorf("X-Forwarded-Port = %q, want %s", got, port)
	}
	if got := h.Get("X-Echo-Host"); got != "" {
		// Host travels as r.Host, not a header; check the backend saw it.
		t.Logf("host header echoed: %s", got)
	}
}

func TestStickySessions(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	b := startHTTPBackend(t, "b", nil)
	src.set([]api.App{app("/s", freePort(t), map[string]string{"HAPROXY_0_VHOST": "s.test", "HAPROXY_0_STICKY": "true"})},
		[]api.Task{task("/s", 1, a.port), task("/s", 2, b.port)})
	p := startProxy(t, testConfig(src))
	url := "http://" + p.Addr("http") + "/"
	c := client()
	resp, first := get(t, c, url, "s.test", nil)
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == StickyCookie {
			cookie = ck
		}
	}
	if cookie == nil || resp.Header.Get("Cache-Control") != "private" {
		t.Fatalf("no %s cookie (nocache) in %v", StickyCookie, resp.Header)
	}
	for i := 0; i < 10; i++ {
		resp, body := get(t, c, url, "s.test", map[string]string{"Cookie": "other=1; " + StickyCookie + "=" + cookie.Value})
		if body != first {
			t.Fatalf("request %d went to %q, the session is on %q", i, body, first)
		}
		if got := resp.Header.Get("X-Echo-Cookie"); got != "other=1" {
			t.Errorf("backend saw Cookie %q; the sticky cookie must be stripped", got)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("a valid cookie must not be set again")
		}
	}
	// Without the cookie, round robin reaches both.
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		_, body := get(t, c, url, "s.test", nil)
		seen[body] = true
	}
	if len(seen) != 2 {
		t.Errorf("without a cookie both backends should serve, saw %v", seen)
	}
}

func TestEjectDeadBackend(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "alive", nil)
	dead := freePort(t) // nothing listens there
	echo := startTCPEcho(t, "")
	sp := freePort(t)
	src.set([]api.App{
		app("/h", freePort(t), map[string]string{"HAPROXY_0_VHOST": "h.test"}),
		app("/t", sp, nil),
	}, []api.Task{task("/h", 1, a.port), task("/h", 2, dead), task("/t", 1, echo), task("/t", 2, dead)})
	p := startProxy(t, testConfig(src))
	c := client()
	for i := 0; i < 20; i++ {
		resp, body := get(t, c, "http://"+p.Addr("http")+"/", "h.test", nil)
		if resp.StatusCode != 200 || body != "alive /" {
			t.Fatalf("request %d: %d %q; a dead backend must be skipped", i, resp.StatusCode, body)
		}
	}
	for i := 0; i < 10; i++ {
		cc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sp))
		if err != nil {
			t.Fatal(err)
		}
		cc.Write([]byte("ping"))
		buf := make([]byte, 4)
		cc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(cc, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("tcp connection %d: %q %v", i, buf, err)
		}
		cc.Close()
	}
	resp, stats := get(t, c, "http://"+p.Addr("admin")+"/haproxy?stats;csv", "", nil)
	if row := statsRow(t, stats, "t_"+strconv.Itoa(sp), "127_0_0_1_"+strconv.Itoa(dead)); resp.StatusCode != 200 || row == nil || row["status"] != "DOWN" {
		t.Errorf("stats do not show the dead backend ejected:\n%s", stats)
	}
}

func TestAuth(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	src.set([]api.App{
		app("/bc", freePort(t), map[string]string{"HAPROXY_0_VHOST": "bc.test", "HAPROXY_0_AUTH": "My Realm:alice:" + string(hash)}),
		app("/sha", freePort(t), map[string]string{"HAPROXY_0_VHOST": "sha.test", "HAPROXY_0_AUTH": "r:bob:$6$abc$Qciy6P8ZI4.BUgLFaLq4ucJ/kaRX8v1UyAM81WBAsuW.zwYw31yCKomfTgHAlZwPGi/aFdo83BhJQPQYtp74M0"}),
	}, []api.Task{task("/bc", 1, a.port), task("/sha", 1, a.port)})
	p := startProxy(t, testConfig(src))
	url := "http://" + p.Addr("http") + "/"
	c := client()
	do := func(host, user, pass string) *http.Response {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := do("bc.test", "", ""); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != `Basic realm="My Realm"` {
		t.Errorf("no credentials: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r := do("bc.test", "alice", "wrong"); r.StatusCode != 401 {
		t.Errorf("wrong password: %d", r.StatusCode)
	}
	if r := do("bc.test", "mallory", "s3cret"); r.StatusCode != 401 {
		t.Errorf("wrong user: %d", r.StatusCode)
	}
	if r := do("bc.test", "alice", "s3cret"); r.StatusCode != 200 {
		t.Errorf("bcrypt credentials: %d", r.StatusCode)
	}
	if r := do("sha.test", "bob", "s3cret"); r.StatusCode != 200 {
		t.Errorf("sha-crypt credentials: %d", r.StatusCode)
	}
}

func TestShaCrypt(t *testing.T) {
	// Vectors from `openssl passwd -5/-6`.
	for _, v := range []struct{ enc, pass string }{
		{"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"},
		{"$6$abc$Qciy6P8ZI4.BUgLFaLq4ucJ/kaRX8v1UyAM81WBAsuW.zwYw31yCKomfTgHAlZwPGi/aFdo83BhJQPQYtp74M0", "s3cret"},
		{"$5$rounds=10000$x$0vtOxG9XMA.omtdTyONgDmP6z8n4pFHW746W9tyXz6A", "pw"},
		{"plain-password", "plain-password"},
	} {
		if !verifyPassword(v.enc, v.pass) {
			t.Errorf("%s does not verify %q", v.enc, v.pass)
		}
		if verifyPassword(v.enc, v.pass+"x") {
			t.Errorf("%s verifies a wrong password", v.enc)
		}
	}
}

func TestRedirectHSTSAndAllowList(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	echo := startTCPEcho(t, "x")
	denied := freePort(t)
	src.set([]api.App{
		app("/r", freePort(t), map[string]string{"HAPROXY_0_VHOST": "r.test", "HAPROXY_0_REDIRECT_TO_HTTPS": "true"}),
		app("/h", freePort(t), map[string]string{"HAPROXY_0_VHOST": "h.test", "HAPROXY_0_USE_HSTS": "true"}),
		app("/deny", freePort(t), map[string]string{"HAPROXY_0_VHOST": "deny.test", "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8"}),
		app("/allow", freePort(t), map[string]string{"HAPROXY_0_VHOST": "allow.test", "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 127.0.0.0/8"}),
		app("/tcpdeny", denied, map[string]string{"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8"}),
	}, []api.Task{task("/r", 1, a.port), task("/h", 1, a.port), task("/deny", 1, a.port), task("/allow", 1, a.port), task("/tcpdeny", 1, echo)})
	p := startProxy(t, testConfig(src))
	url := "http://" + p.Addr("http")
	c := client()
	resp, _ := get(t, c, url+"/some/path?q=1", "r.test", nil)
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://r.test/some/path?q=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(t, c, url+"/", "h.test", nil)
	if resp.Header.Get("Strict-Transport-Security") != "max-age=15768000" {
		t.Errorf("HSTS header: %q", resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, _ := get(t, c, url+"/", "deny.test", nil); resp.StatusCode != 403 {
		t.Errorf("allow-list without 127.0.0.1: %d, want 403", resp.StatusCode)
	}
	if resp, _ := get(t, c, url+"/", "allow.test", nil); resp.StatusCode != 200 {
		t.Errorf("allow-list with 127.0.0.0/8: %d, want 200", resp.StatusCode)
	}
	cc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(denied))
	if err != nil {
		t.Fatal(err)
	}
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := cc.Read(make([]byte, 1)); n != 0 {
		t.Errorf("a denied TCP client reached the backend")
	}
	cc.Close()
}

func TestWebSocketUpgrade(t *testing.T) {
	src := newFakeSource()
	ws := startHTTPBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo upper-cased lines.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	})
	src.set([]api.App{app("/ws", freePort(t), map[string]string{"HAPROXY_0_VHOST": "ws.test"})}, []api.Task{task("/ws", 1, ws.port)})
	p := startProxy(t, testConfig(src))
	c, err := net.Dial("tcp", p.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"hello\n", "world\n"} {
		c.Write([]byte(msg))
		line, err := br.ReadString('\n')
		if err != nil || line != strings.ToUpper(msg) {
			t.Fatalf("after upgrade: %q %v", line, err)
		}
	}
}

func TestBodiesChunkedAndLarge(t *testing.T) {
	src := newFakeSource()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	be := startHTTPBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(big)
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Write(body) // no Content-Length for large bodies: chunked
		case "/head":
			w.Header().Set("Content-Length", "5")
		}
	})
	src.set([]api.App{app("/b", freePort(t), map[string]string{"HAPROXY_0_VHOST": "b.test"})}, []api.Task{task("/b", 1, be.port)})
	p := startProxy(t, testConfig(src))
	c := client()
	url := "http://" + p.Addr("http")
	for i := 0; i < 3; i++ { // keep-alive reuse across body kinds
		_, body := get(t, c, url+"/big", "b.test", nil)
		if body != string(big) {
			t.Fatalf("big body: got %d bytes", len(body))
		}
		req, _ := http.NewRequest("POST", url+"/echo", io.MultiReader(bytes.NewReader(big[:300000]))) // unknown length: chunked
		req.Host = "b.test"
		req.ContentLength = -1
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, big[:300000]) {
			t.Fatalf("chunked echo: got %d bytes", len(got))
		}
		req, _ = http.NewRequest("HEAD", url+"/head", nil)
		req.Host = "b.test"
		resp, err = c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		resp.Body.Close()
	}
}

func TestAdminEndpoints(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{
		app("/web", freePort(t), map[string]string{"HAPROXY_0_VHOST": "web.test"}),
		app("/bad", freePort(t), map[string]string{"HAPROXY_0_MODE": "udp"}),
	}, []api.Task{task("/web", 1, a.port)})
	var mu sync.Mutex
	reported := map[string][]string{}
	cfg := testConfig(src)
	cfg.Report = func(app string, ps []string) { mu.Lock(); reported[app] = ps; mu.Unlock() }
	p := startProxy(t, cfg)
	admin := "http://" + p.Addr("admin")
	c := client()
	get(t, c, "http://"+p.Addr("http")+"/", "web.test", nil)
	for path, want := range map[string]string{
		"/_haproxy_health_check": "OK",
		"/_haproxy_getconfig":    "service web_",
		"/_haproxy_getvhostmap":  "web.test\tweb_",
		"/_haproxy_getappmap":    "/web\tweb_",
		"/metrics":               "weft_lb_service_requests_total{service=\"web_",
		"/haproxy?stats":         "<table",
	} {
		resp, body := get(t, c, admin+path, "", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want %q in\n%s", path, resp.StatusCode, want, body)
		}
		if path == "/metrics" {
			// What `promtool check metrics` checks (it runs this linter).
			if probs, err := promlint.New(strings.NewReader(body)).Lint(); err != nil || len(probs) > 0 {
				t.Errorf("/metrics fails promtool's lint: %v %+v", err, probs)
			}
		}
	}
	_, cfgText := get(t, c, admin+"/_haproxy_getconfig", "", nil)
	if !strings.Contains(cfgText, "HAPROXY_0_MODE: unknown mode") {
		t.Errorf("the config page must show problems:\n%s", cfgText)
	}
	eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if ps := reported["/bad"]; len(ps) != 1 || !strings.Contains(ps[0], "HAPROXY_0_MODE") {
			return fmt.Errorf("Report got %v for /bad", ps)
		}
		return nil
	})
}

func TestKeepsLastTableWhenMasterUnreachable(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test"})}, []api.Task{task("/a", 1, a.port)})
	cfg := testConfig(src)
	cfg.ResyncEvery = 100 * time.Millisecond
	p := startProxy(t, cfg)
	src.setFail(true)
	time.Sleep(300 * time.Millisecond) // let several watches fail
	resp, body := get(t, client(), "http://"+p.Addr("http")+"/", "a.test", nil)
	if resp.StatusCode != 200 || body != "a /" {
		t.Errorf("with the master down: %d %q", resp.StatusCode, body)
	}
	src.setFail(false)
	src.setEmpty(true)
	time.Sleep(300 * time.Millisecond) // several empty answers
	resp, body = get(t, client(), "http://"+p.Addr("http")+"/", "a.test", nil)
	if resp.StatusCode != 200 || body != "a /" {
		t.Errorf("after empty answers from a master shutting down: %d %q", resp.StatusCode, body)
	}
}

// TestReconfigurationUnderLoad adds and removes backends every 100 ms while
// a keep-alive client and a long-lived TCP stream run: no request may fail
// and the stream must survive.
func TestReconfigurationUnderLoad(t *testing.T) {
	src := newFakeSource()
	var backends []*httpBackend
	for i := 0; i < 4; i++ {
		backends = append(backends, startHTTPBackend(t, "b"+strconv.Itoa(i), nil))
	}
	echo := startTCPEcho(t, "")
	echo2 := startTCPEcho(t, "")
	httpPort, tcpPort := freePort(t), freePort(t)
	stable := task("/tcp", 1, echo)
	setBackends := func(mask int) {
		var tasks []api.Task
		for i, b := range backends {
			if mask&(1<<i) != 0 {
				tasks = append(tasks, task("/web", i, b.port))
			}
		}
		tasks = append(tasks, stable)
		if mask&1 == 0 {
			tasks = append(tasks, task("/tcp", 2, echo2))
		}
		src.set([]api.App{
			app("/web", httpPort, map[string]string{"HAPROXY_0_VHOST": "web.test"}),
			app("/tcp", tcpPort, nil),
		}, tasks)
	}
	setBackends(0b0011)
	p := startProxy(t, testConfig(src))

	stream, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests, failures atomic.Int64
	var firstErr atomic.Value
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+p.Addr("http")+"/", nil)
				req.Host = "web.test"
				resp, err := c.Do(req)
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	streamErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 16)
		for i := 0; ; i++ {
			select {
			case <-stop:
				streamErr <- nil
				return
			default:
			}
			msg := fmt.Sprintf("%015d\n", i)
			stream.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := stream.Write([]byte(msg)); err != nil {
				streamErr <- err
				return
			}
			if _, err := io.ReadFull(stream, buf); err != nil || string(buf) != msg {
				streamErr <- fmt.Errorf("stream read %q: %v", buf, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	masks := []int{0b0011, 0b0110, 0b1100, 0b1001, 0b0111, 0b1110, 0b1101, 0b1011}
	for i := 0; i < 30; i++ {
		setBackends(masks[i%len(masks)])
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := <-streamErr; err != nil {
		t.Errorf("the long-lived TCP stream broke: %v", err)
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during reconfiguration; first: %v", n, requests.Load(), firstErr.Load())
	}
	if requests.Load() < 100 {
		t.Errorf("only %d requests ran", requests.Load())
	}
	t.Logf("%d requests, %d table swaps, 0 failures", requests.Load(), p.swaps.Load())
}

func TestServicePortListenersFollowTable(t *testing.T) {
	src := newFakeSource()
	e1, e2 := startTCPEcho(t, "1"), startTCPEcho(t, "2")
	p1, p2 := freePort(t), freePort(t)
	src.set([]api.App{app("/one", p1, nil)}, []api.Task{task("/one", 1, e1)})
	startProxy(t, testConfig(src))
	held, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p1))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	b := make([]byte, 1)
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadFull(held, b)
	src.set([]api.App{app("/two", p2, nil)}, []api.Task{task("/two", 1, e2)})
	eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p2))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadFull(c, b); err != nil || b[0] != '2' {
			return fmt.Errorf("new port answered %q %v", b, err)
		}
		return nil
	})
	eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p1))
		if err == nil {
			c.Close()
			return fmt.Errorf("removed service port %d still accepts", p1)
		}
		return nil
	})
	// The connection established before the swap still works.
	held.Write([]byte("x"))
	if _, err := io.ReadFull(held, b); err != nil || b[0] != 'x' {
		t.Errorf("established connection cut by the swap: %q %v", b, err)
	}
}

// TestStalePooledConnection: a backend that closes idle keep-alive
// connections must not make requests fail; the proxy resends on a new one.
func TestStalePooledConnection(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackendWith(t, "a", nil, func(s *http.Server) { s.IdleTimeout = 30 * time.Millisecond })
	src.set([]api.App{app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test"})}, []api.Task{task("/a", 1, a.port)})
	p := startProxy(t, testConfig(src))
	c := client()
	for i := 0; i < 5; i++ {
		resp, body := get(t, c, "http://"+p.Addr("http")+"/", "a.test", nil)
		if resp.StatusCode != 200 || body != "a /" {
			t.Fatalf("request %d after the backend closed its idle connection: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(80 * time.Millisecond) // longer than the backend's idle timeout
		// A small POST is buffered whole, so it can be replayed too.
		req, _ := http.NewRequest("POST", "http://"+p.Addr("http")+"/post", strings.NewReader("payload"))
		req.Host = "a.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "a /post" || resp.Header.Get("X-Body-Len") != "7" {
			t.Fatalf("POST %d after the backend closed its idle connection: %d %q len %s", i, resp.StatusCode, got, resp.Header.Get("X-Body-Len"))
		}
		time.Sleep(80 * time.Millisecond)
	}
}

// TestServicePortTakenIsReported: a service port something else holds is
// reported against the app, and served once it is free.
func TestServicePortTakenIsReported(t *testing.T) {
	src := newFakeSource()
	echo := startTCPEcho(t, "e")
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := squatter.Addr().(*net.TCPAddr).Port
	src.set([]api.App{app("/e", sp, nil)}, []api.Task{task("/e", 1, echo)})
	var mu sync.Mutex
	var got []string
	cfg := testConfig(src)
	cfg.ResyncEvery = 100 * time.Millisecond
	cfg.Report = func(app string, ps []string) { mu.Lock(); got = ps; mu.Unlock() }
	startProxy(t, cfg)
	eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 || !strings.Contains(got[0], "cannot listen on service port "+strconv.Itoa(sp)) {
			return fmt.Errorf("reported %v", got)
		}
		return nil
	})
	squatter.Close()
	eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sp))
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'e' {
			return fmt.Errorf("got %q %v", b, err)
		}
		return nil
	})
	eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if got != nil {
			return fmt.Errorf("problem still reported: %v", got)
		}
		return nil
	})
}

// TestRemovedBackendDrains: a connection to a backend removed from the
// table keeps working, and is closed once DrainTimeout has passed.
func TestRemovedBackendDrains(t *testing.T) {
	src := newFakeSource()
	e1, e2 := startTCPEcho(t, ""), startTCPEcho(t, "")
	sp := freePort(t)
	src.set([]api.App{app("/e", sp, nil)}, []api.Task{task("/e", 1, e1)})
	cfg := testConfig(src)
	cfg.DrainTimeout = 500 * time.Millisecond
	startProxy(t, cfg)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping := func() error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("p")); err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err := io.ReadFull(c, b)
		return err
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	removedAt := time.Now()
	src.set([]api.App{app("/e", sp, nil)}, []api.Task{task("/e", 2, e2)})
	time.Sleep(100 * time.Millisecond)
	if err := ping(); err != nil {
		t.Fatalf("connection cut right after its backend was removed: %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		if err := ping(); err == nil {
			return fmt.Errorf("still open %s after removal", time.Since(removedAt).Round(time.Millisecond))
		}
		return nil
	})
	if d := time.Since(removedAt); d < 450*time.Millisecond {
		t.Errorf("closed after %s, before the drain timeout", d)
	}
}

func TestHTTP10AndExpectContinue(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test"})}, []api.Task{task("/a", 1, a.port)})
	p := startProxy(t, testConfig(src))
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", p.Addr("http"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /old HTTP/1.0\r\nHost: a.test\r\n\r\n")
		all, err := io.ReadAll(c) // HTTP/1.0: the proxy closes after the response
		c.Close()
		if err != nil || !bytes.HasSuffix(all, []byte("a /old")) {
			t.Fatalf("HTTP/1.0 request %d: %q %v", i, all, err)
		}
	}
	c, err := net.Dial("tcp", p.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue before the body, got %q", line)
	}
	br.ReadString('\n')
	c.Write([]byte("hello"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "a /up" || resp.Header.Get("X-Body-Len") != "5" {
		t.Errorf("after 100-continue: %d %q body-len %q", resp.StatusCode, body, resp.Header.Get("X-Body-Len"))
	}
}

// TestAmbiguousFramingRejected: a request with both Content-Length and
// chunked Transfer-Encoding (or an unknown coding) gets 400, never reaching
// the backend where it could smuggle a second request.
func TestAmbiguousFramingRejected(t *testing.T) {
	src := newFakeSource()
	var hits atomic.Int64
	a := startHTTPBackend(t, "a", func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	src.set([]api.App{app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test"})}, []api.Task{task("/a", 1, a.port)})
	p := startProxy(t, testConfig(src))
	for _, head := range []string{
		"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
	} {
		c, err := net.Dial("tcp", p.Addr("http"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(head))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != 400 {
			t.Errorf("%q: %v %v, want 400", head, resp, err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("%d ambiguous requests reached the backend", hits.Load())
	}
}

// TestProblemsReportedOnce: resyncs do not repeat a problem; fixing the
// label clears it with one nil report.
func TestProblemsReportedOnce(t *testing.T) {
	src := newFakeSource()
	bad := []api.App{app("/bad", freePort(t), map[string]string{"HAPROXY_0_BALANCE": "random"})}
	src.set(bad, nil)
	var mu sync.Mutex
	var calls []int
	cfg := testConfig(src)
	cfg.ResyncEvery = 50 * time.Millisecond
	cfg.Report = func(app string, ps []string) { mu.Lock(); calls = append(calls, len(ps)); mu.Unlock() }
	startProxy(t, cfg)
	time.Sleep(300 * time.Millisecond) // several resyncs
	src.set([]api.App{app("/bad", freePort(t), nil)}, nil)
	eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) != 2 || calls[0] != 1 || calls[1] != 0 {
			return fmt.Errorf("reports %v, want [1 0]", calls)
		}
		return nil
	})
}

// TestSlowReportDoesNotDelayRouting: a Report callback stuck on an
// unreachable master must not hold routing changes back.
func TestSlowReportDoesNotDelayRouting(t *testing.T) {
	src := newFakeSource()
	a, b := startHTTPBackend(t, "a", nil), startHTTPBackend(t, "b", nil)
	vh := map[string]string{"HAPROXY_0_VHOST": "v.test"}
	src.set([]api.App{app("/v", freePort(t), vh), app("/bad", freePort(t), map[string]string{"HAPROXY_0_MODE": "x"})}, []api.Task{task("/v", 1, a.port)})
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	cfg := testConfig(src)
	cfg.Report = func(string, []string) { <-stuck }
	p := startProxy(t, cfg)
	src.set([]api.App{app("/v", freePort(t), vh), app("/bad2", freePort(t), map[string]string{"HAPROXY_0_MODE": "y"})}, []api.Task{task("/v", 2, b.port)})
	eventually(t, 5*time.Second, func() error {
		if _, body := get(t, client(), "http://"+p.Addr("http")+"/", "v.test", nil); body != "b /" {
			return fmt.Errorf("still %q", body)
		}
		return nil
	})
}

// TestBackendRestartWithFullPool: every pooled connection dies when a
// backend restarts; requests still succeed on fresh connections.
func TestBackendRestartWithFullPool(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test"})}, []api.Task{task("/a", 1, a.port)})
	p := startProxy(t, testConfig(src))
	url := "http://" + p.Addr("http") + "/"
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ { // four concurrent requests leave four pooled connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
			for j := 0; j < 20; j++ {
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "a.test"
				if resp, err := c.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	a.srv.Close() // closes every connection
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(a.port))
	if err != nil {
		t.Skipf("cannot listen on the backend's port again: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "restarted") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := client()
	for i := 0; i < 6; i++ {
		resp, body := get(t, c, url, "a.test", nil)
		if resp.StatusCode != 200 || body != "restarted" {
			t.Fatalf("request %d after the backend restarted: %d %q", i, resp.StatusCode, body)
		}
	}
}

func TestAdminClients(t *testing.T) {
	src := newFakeSource()
	src.set(nil, nil)
	for _, tc := range []struct {
		name  string
		allow func(netip.Addr) bool
		want  int
	}{
		{"no filter", nil, http.StatusOK},
		{"loopback allowed", func(a netip.Addr) bool { return a.IsLoopback() }, http.StatusOK},
		{"loopback refused", func(a netip.Addr) bool { return !a.IsLoopback() }, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(src)
			cfg.AdminClients = tc.allow
			p := startProxy(t, cfg)
			resp, err := http.Get("http://" + p.Addr("admin") + "/_haproxy_getconfig")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
