package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// The [lb] story through the real binary: `weft up` serves apps labelled
// HAPROXY_GROUP=external on its vhost listener and their service ports, as
// marathon-lb would, and the tests talk to it only over loopback HTTP/TCP.

// lbNode is one `weft up` whose lb the test talks to.
type lbNode struct {
	c                     *api.Client
	httpAddr, adminAddr   string
	pidDir, sickDir       string
	http1, http1KeepAlive *http.Client
}

func startLBNode(t *testing.T) *lbNode {
	t.Helper()
	dir := t.TempDir()
	apiPort := freePort(t)
	args := upArgs(t, filepath.Join(dir, "data"), apiPort)
	n := &lbNode{
		c:       api.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort)),
		pidDir:  filepath.Join(dir, "pids"),
		sickDir: filepath.Join(dir, "sick"),
		// A new connection per request, so that the lb balances requests
		// rather than connections.
		http1:          &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		http1KeepAlive: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
	}
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--ports":
			// upArgs' range starts at the API port itself when that is in
			// 20000-39999 (20000+p%20000 == p), and a task binding $PORT0
			// then fails; give the tasks a range of their own.
			args[i+1] = freePortRange(t, 50)
		case "--lb-http-addr":
			n.httpAddr = args[i+1]
		case "--lb-admin-addr":
			n.adminAddr = args[i+1]
		}
	}
	mkdirs(t, n.pidDir, n.sickDir)
	startWeft(t, "up", args...)
	t.Cleanup(func() {
		n.http1.CloseIdleConnections()
		n.http1KeepAlive.CloseIdleConnections()
	})
	return n
}

// lbApp is the test httpd with an HTTP health check on port 0, a second
// port (the line server, tcp mode) when tcpServicePort is not 0, and the
// given labels.
func (n *lbNode) lbApp(t *testing.T, id string, instances int, tcpServicePort int, labels map[string]string, hc map[string]any, extra map[string]any) []byte {
	args := []string{httpd(t), "-pids", n.pidDir, "-sick", n.sickDir, "-headers"}
	// Explicit service ports: one allocated from 10000 up could already be
	// held by another weft on this machine.
	ports := []map[string]any{{"port": freeServicePort(t), "name": "http"}}
	if tcpServicePort != 0 {
		args = append(args, "-lines")
		ports = append(ports, map[string]any{"port": tcpServicePort, "name": "lines"})
	}
	check := map[string]any{
		"protocol": "HTTP", "path": "/health", "portIndex": 0,
		"gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 1,
		"maxConsecutiveFailures": 3, "delaySeconds": 0,
	}
	for k, v := range hc {
		check[k] = v
	}
	e := map[string]any{"args": args, "portDefinitions": ports, "labels": labels, "healthChecks": []map[string]any{check}}
	for k, v := range extra {
		e[k] = v
	}
	if a, ok := extra["args"].([]string); ok {
		e["args"] = append(args, a...)
	}
	return httpdApp(t, id, instances, n.pidDir, n.sickDir, e)
}

// deploy PUTs the app and waits until its instances are all healthy with
// no deployment left.
func (n *lbNode) deploy(t *testing.T, ctx context.Context, id string, def []byte, instances int) *api.AppInfo {
	t.Helper()
	if _, err := n.c.PutApp(ctx, id, def, false); err != nil {
		t.Fatalf("PUT %s: %v", id, err)
	}
	eventually(t, 60*time.Second, fmt.Sprintf("%d healthy tasks of %s", instances, id), func() error {
		return wantHealthy(ctx, n.c, id, instances, "")
	})
	app, err := n.c.App(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// get sends one request for host through the lb's vhost listener (or addr
// when not empty) and returns the status, the task id that answered (the
// first word of the httpd's body) and the body.
func (n *lbNode) get(cl *http.Client, addr, host, path string, cookies ...*http.Cookie) (*http.Response, string, string, error) {
	if addr == "" {
		addr = n.httpAddr
	}
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return nil, "", "", err
	}
	req.Host = host
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, "", "", err
	}
	body := string(b)
	task, _, _ := strings.Cut(strings.TrimSpace(body), " ")
	task, _, _ = strings.Cut(task, "\n")
	return resp, task, body, nil
}

// getconfig is the lb's /_haproxy_getconfig, for failure messages.
func (n *lbNode) getconfig() string {
	resp, err := n.http1.Get("http://" + n.adminAddr + "/_haproxy_getconfig")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func taskSet(ts []api.Task) map[string]bool {
	m := map[string]bool{}
	for _, tk := range ts {
		m[tk.ID] = true
	}
	return m
}

var (
	servicePortsMu    sync.Mutex
	servicePortsGiven = map[int]bool{}
)

// freeServicePort picks a service port in Marathon's 10000–20000 that is
// free on loopback, away from the low end the master allocates from, so
// that tests on this machine do not collide.
func freeServicePort(t *testing.T) int {
	t.Helper()
	servicePortsMu.Lock()
	defer servicePortsMu.Unlock()
	for i := 0; i < 100; i++ {
		p := 15000 + rand.Intn(5000)
		if servicePortsGiven[p] {
			continue
		}
		servicePortsGiven[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port in 15000-19999")
	return 0
}

// lineConn is a TCP connection to a line-server service port.
type lineConn struct {
	c  net.Conn
	br *bufio.Reader
	n  int
}

func dialLines(addr string) (*lineConn, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	return &lineConn{c: c, br: bufio.NewReader(c)}, nil
}

// exchange sends one line and returns the task id that echoed it.
func (l *lineConn) exchange() (string, error) {
	l.n++
	msg := fmt.Sprintf("line-%d", l.n)
	l.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(l.c, "%s\n", msg); err != nil {
		return "", fmt.Errorf("write %s: %w", msg, err)
	}
	s, err := l.br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read the answer to %s: %w", msg, err)
	}
	task, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	if rest != msg {
		return "", fmt.Errorf("sent %q, got %q", msg, s)
	}
	return task, nil
}

// A vhost reaches healthy tasks round robin with X-Forwarded-* set, an
// unknown Host gets the lb's 503, the allocated service port serves the
// same app (http mode, its health check is HTTP) and a tcp-mode service
// port carries raw TCP to a task.
func TestLBVhostAndServicePorts(t *testing.T) {
	n := startLBNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitLeader(t, ctx, n.c)
	// An app of another group, which this lb (--lb-group external, the
	// default) must not serve; deployed first, so that once the lb serves
	// biserver below its table has seen this one too.
	const internal = "/pentaho/internal"
	idef := n.lbApp(t, internal, 1, 0, map[string]string{
		"HAPROXY_GROUP": "internal", "HAPROXY_0_VHOST": "internal.example.com",
	}, nil, nil)
	iapp := n.deploy(t, ctx, internal, idef, 1)

	const id = "/pentaho/biserver"
	tcpPort := freeServicePort(t)
	def := n.lbApp(t, id, 2, tcpPort, map[string]string{
		"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "biserver.example.com",
	}, nil, nil)
	app := n.deploy(t, ctx, id, def, 2)
	tasks := taskSet(app.Tasks)

	// The vhost answers 200 from a task.
	eventually(t, 5*time.Second, "vhost biserver.example.com answers from a task", func() error {
		resp, task, body, err := n.get(n.http1, "", "biserver.example.com", "/")
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !tasks[task] {
			return fmt.Errorf("status %d, body %q; want 200 from one of %v", resp.StatusCode, body, tasks)
		}
		return nil
	})
	// Round robin: both tasks get an even share of 20 requests.
	hits := map[string]int{}
	for i := 0; i < 20; i++ {
		resp, task, body, err := n.get(n.http1, "", "BiServer.Example.com", "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.StatusCode != 200 || !tasks[task] {
			t.Fatalf("request %d: status %d, body %q", i, resp.StatusCode, body)
		}
		hits[task]++
	}
	for tk := range tasks {
		if hits[tk] < 8 {
			t.Fatalf("round robin over 2 tasks: hits %v, want about 10 each", hits)
		}
	}

	// Forwarding headers.
	_, lbPort, _ := net.SplitHostPort(n.httpAddr)
	resp, _, body, err := n.get(n.http1, "", "biserver.example.com", "/headers")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/headers: %v %v", resp, err)
	}
	for _, want := range []string{"X-Forwarded-For: 127.0.0.1\n", "X-Forwarded-Proto: http\n", "X-Forwarded-Port: " + lbPort + "\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("the task saw no %q; its request headers:\n%s", strings.TrimSpace(want), body)
		}
	}

	// A Host with a port matches too (as marathon-lb's field(1,:)).
	resp, task, body, err := n.get(n.http1, "", "biserver.example.com:"+lbPort, "/")
	if err != nil || resp.StatusCode != 200 || !tasks[task] {
		t.Fatalf("Host with a port: %v %q %v; want 200 from a task", resp, body, err)
	}

	// An unknown Host: marathon-lb's HAProxy has no backend for it, 503;
	// so has the vhost of an app of a group this lb does not serve, and
	// that app's service port is not open.
	for _, host := range []string{"nosuch.example.com", "internal.example.com"} {
		resp, _, body, err = n.get(n.http1, "", host, "/")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 503 {
			t.Fatalf("Host %s: status %d, body %q; want 503", host, resp.StatusCode, body)
		}
	}
	iaddr := fmt.Sprintf("127.0.0.1:%d", iapp.PortDefinitions[0].Port)
	if c, err := net.DialTimeout("tcp", iaddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the service port %s of %s (HAPROXY_GROUP=internal) is open on an lb of group external", iaddr, internal)
	}

	// Port 0's service port (http mode: its health check is HTTP) serves
	// the app on 127.0.0.1 whatever the Host.
	sp := app.PortDefinitions[0].Port
	if got := app.PortDefinitions[1].Port; got != tcpPort {
		t.Fatalf("requested service port %d became %d", tcpPort, got)
	}
	spAddr := fmt.Sprintf("127.0.0.1:%d", sp)
	eventually(t, 5*time.Second, "service port "+spAddr+" answers", func() error {
		resp, task, body, err := n.get(n.http1, spAddr, "anything", "/")
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !tasks[task] {
			return fmt.Errorf("status %d, body %q; the lb's table:\n%s", resp.StatusCode, body, n.getconfig())
		}
		return nil
	})
	// A service port asked as 0 is allocated from 10000–20000, as Marathon
	// does (an app with no HAPROXY_GROUP, so that this lb does not bind it).
	if _, err := n.c.PutApp(ctx, "/pentaho/unserved", []byte(`{"id":"/pentaho/unserved","cmd":"sleep 600","instances":0,"portDefinitions":[{"port":0}]}`), false); err != nil {
		t.Fatal(err)
	}
	un, err := n.c.App(ctx, "/pentaho/unserved")
	if err != nil {
		t.Fatal(err)
	}
	if len(un.PortDefinitions) != 1 || un.PortDefinitions[0].Port < 10000 || un.PortDefinitions[0].Port > 20000 {
		t.Fatalf("service port asked as 0: portDefinitions %+v, want one port in 10000-20000", un.PortDefinitions)
	}

	// The tcp-mode service port: raw lines reach a task, and two
	// connections reach the two tasks.
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", tcpPort)
	seen := map[string]bool{}
	eventually(t, 5*time.Second, "raw TCP through "+tcpAddr+" reaches both tasks", func() error {
		l, err := dialLines(tcpAddr)
		if err != nil {
			return fmt.Errorf("%v; the lb's table:\n%s", err, n.getconfig())
		}
		defer l.c.Close()
		var first string
		for i := 0; i < 3; i++ {
			task, err := l.exchange()
			if err != nil {
				return err
			}
			if !tasks[task] {
				return fmt.Errorf("answer from %q, not a task of %s", task, id)
			}
			if first == "" {
				first = task
			} else if task != first {
				return fmt.Errorf("one TCP connection answered by %s then %s", first, task)
			}
		}
		seen[first] = true
		if len(seen) < 2 {
			return fmt.Errorf("connections reached only %v so far", seen)
		}
		return nil
	})
}

// HAPROXY_0_STICKY: the lb sets the mesosphere_server_id cookie and
// requests carrying it always reach the same task.
func TestLBStickySessions(t *testing.T) {
	n := startLBNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitLeader(t, ctx, n.c)
	const id = "/shop/cart"
	def := n.lbApp(t, id, 3, 0, map[string]string{
		"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "cart.example.com", "HAPROXY_0_STICKY": "true",
	}, nil, nil)
	app := n.deploy(t, ctx, id, def, 3)
	tasks := taskSet(app.Tasks)

	// Each task, first reached without a cookie, hands out its own cookie.
	cookies := map[string]*http.Cookie{}
	eventually(t, 10*time.Second, "a sticky cookie from every task", func() error {
		resp, task, body, err := n.get(n.http1, "", "cart.example.com", "/")
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !tasks[task] {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, body)
		}
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "mesosphere_server_id" {
				ck = c
			}
		}
		if ck == nil || ck.Value == "" {
			return fmt.Errorf("no mesosphere_server_id cookie in %q", resp.Header.Values("Set-Cookie"))
		}
		if prev, ok := cookies[task]; ok && prev.Value != ck.Value {
			return fmt.Errorf("task %s handed out cookies %q and %q", task, prev.Value, ck.Value)
		}
		cookies[task] = ck
		if len(cookies) < len(tasks) {
			return fmt.Errorf("cookies from %d of %d tasks", len(cookies), len(tasks))
		}
		return nil
	})
	values := map[string]bool{}
	for _, ck := range cookies {
		values[ck.Value] = true
	}
	if len(values) != len(tasks) {
		t.Fatalf("cookies %v do not tell the tasks apart", cookies)
	}
	// With its cookie, every request (each on a new connection) reaches
	// the same task; the lb does not pass its cookie on to the task.
	for task, ck := range cookies {
		for i := 0; i < 10; i++ {
			resp, got, body, err := n.get(n.http1, "", "cart.example.com", "/headers", ck)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || got != task {
				t.Fatalf("request %d with cookie %s=%s: status %d from %q, want task %s", i, ck.Name, ck.Value, resp.StatusCode, got, task)
			}
			if strings.Contains(body, "mesosphere_server_id") {
				t.Fatalf("the lb passed its cookie on to the task (cookie indirect strips it):\n%s", body)
			}
		}
	}
	// Without a cookie requests still spread.
	spread := map[string]int{}
	for i := 0; i < 9; i++ {
		_, task, _, err := n.get(n.http1, "", "cart.example.com", "/")
		if err != nil {
			t.Fatal(err)
		}
		spread[task]++
	}
	if len(spread) < 2 {
		t.Fatalf("requests without a cookie all reached one task: %v", spread)
	}

	// The cookie's task goes away (scale to 2 kills the youngest): its
	// cookie no longer pins, the request is served by a live task, which
	// hands out its own cookie (HAProxy's redispatch, as marathon-lb runs it).
	if _, err := n.c.PutApp(ctx, id, []byte(`{"instances":2}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "scaled to 2", func() error { return wantHealthy(ctx, n.c, id, 2, "") })
	a, err := n.c.App(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	live := taskSet(a.Tasks)
	var gone string
	for tk := range tasks {
		if !live[tk] {
			gone = tk
		}
	}
	eventually(t, 5*time.Second, "the cookie of the gone task "+gone+" lands on a live task", func() error {
		resp, task, body, err := n.get(n.http1, "", "cart.example.com", "/", cookies[gone])
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !live[task] {
			return fmt.Errorf("status %d from %q (%q); want 200 from one of %v", resp.StatusCode, task, body, live)
		}
		for _, c := range resp.Cookies() {
			if c.Name == "mesosphere_server_id" && c.Value == cookies[task].Value {
				return nil
			}
		}
		return fmt.Errorf("answer from %s without its cookie %s (Set-Cookie %q)", task, cookies[task].Value, resp.Header.Values("Set-Cookie"))
	})
}

// A task whose health check fails stops getting traffic as soon as the
// master reports it unhealthy — while its process still runs and answers
// — and clients never see an error, before and after Marathon replaces it.
func TestLBEjectsUnhealthyBackend(t *testing.T) {
	n := startLBNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitLeader(t, ctx, n.c)
	const id = "/pentaho/etl"
	// 6 failures at 1 s: the sick task stays RUNNING (unhealthy) for about
	// 5 s before Marathon kills it, long enough to see the lb leave it out.
	def := n.lbApp(t, id, 3, 0, map[string]string{
		"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "etl.example.com",
	}, map[string]any{"maxConsecutiveFailures": 6}, nil)
	app := n.deploy(t, ctx, id, def, 3)
	tasks := taskSet(app.Tasks)
	eventually(t, 5*time.Second, "vhost etl.example.com answers", func() error {
		resp, task, _, err := n.get(n.http1, "", "etl.example.com", "/")
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !tasks[task] {
			return fmt.Errorf("status %d from %q", resp.StatusCode, task)
		}
		return nil
	})

	// A client sends requests back to back on one keep-alive connection.
	type result struct {
		at     time.Time
		status int
		task   string
		err    error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, task, _, err := n.get(n.http1KeepAlive, "", "etl.example.com", "/")
			r := result{at: time.Now(), task: task, err: err}
			if resp != nil {
				r.status = resp.StatusCode
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	victim := app.Tasks[0]
	if err := os.WriteFile(filepath.Join(n.sickDir, victim.ID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sickAt := time.Now()
	// The moment the master's state says the victim is not alive.
	var unhealthyAt time.Time
	eventually(t, 15*time.Second, "victim reported unhealthy", func() error {
		a, err := n.c.App(ctx, id)
		if err != nil {
			return err
		}
		for _, tk := range a.Tasks {
			if tk.ID == victim.ID {
				if ok, known := tk.Healthy(); known && !ok {
					unhealthyAt = time.Now()
					return nil
				}
				return fmt.Errorf("victim %s still healthy (%s)", tk.ID, tk.State)
			}
		}
		return fmt.Errorf("victim %s gone before it was reported unhealthy", victim.ID)
	})
	// The issue promises a routing change live ≤ 500 ms after the task
	// event; allow 1 s on a busy 2-core machine.
	ejectBy := unhealthyAt.Add(time.Second)
	t.Logf("victim %s marked sick; master reported it unhealthy after %v", victim.ID, unhealthyAt.Sub(sickAt).Round(10*time.Millisecond))

	// After the window the victim's process still runs and answers when
	// asked directly: the lb left it out because of its health.
	time.Sleep(time.Until(ejectBy)) // a fixed window, not a wait for a condition
	direct := fmt.Sprintf("127.0.0.1:%d", victim.Ports[0])
	resp, task, _, err := n.get(n.http1, direct, "etl.example.com", "/")
	stillServing := err == nil && resp.StatusCode == 200 && task == victim.ID

	// Then Marathon kills and replaces it; traffic goes to the newcomer.
	var replacement string
	eventually(t, 30*time.Second, "victim replaced and the replacement serving through the lb", func() error {
		a, err := n.c.App(ctx, id)
		if err != nil {
			return err
		}
		if err := wantHealthy(ctx, n.c, id, 3, ""); err != nil {
			return err
		}
		for _, tk := range a.Tasks {
			if tk.ID == victim.ID {
				return fmt.Errorf("victim still listed (%s)", tk.State)
			}
			if !tasks[tk.ID] {
				replacement = tk.ID
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.task == replacement {
				return nil
			}
		}
		return fmt.Errorf("no request reached the replacement %s yet", replacement)
	})
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	before, after, bad := 0, 0, 0
	var last time.Time
	for _, r := range results {
		if r.err != nil || r.status != 200 {
			bad++
			if bad <= 5 {
				t.Errorf("request at +%v: status %d, err %v", r.at.Sub(sickAt).Round(time.Millisecond), r.status, r.err)
			}
			continue
		}
		if r.task != victim.ID {
			continue
		}
		if r.at.After(ejectBy) {
			after++
			if after <= 5 {
				t.Errorf("request at +%v reached the unhealthy task %s, %v after the master reported it unhealthy",
					r.at.Sub(sickAt).Round(time.Millisecond), victim.ID, r.at.Sub(unhealthyAt).Round(time.Millisecond))
			}
		} else {
			before++
			last = r.at
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d requests failed", bad, len(results))
	}
	if after > 0 {
		t.Errorf("%d requests reached the unhealthy task more than 1 s after the master reported it unhealthy", after)
	}
	if !stillServing {
		t.Logf("note: the victim no longer answered directly at the end of the window (%v, %v); the ejection check above still holds", resp, err)
	}
	t.Logf("%d requests; %d reached the victim before it was ejected (the last %v after the master reported it unhealthy), 0 after; replacement %s",
		len(results), before, last.Sub(unhealthyAt).Round(time.Millisecond), replacement)
}

// Reconfiguration under load: a keep-alive client at 20 requests/s on the
// vhost and one long-lived TCP connection on the service port exchanging a
// line every 100 ms, while the app scales 2→4→1→3 and restarts (every task
// replaced). No request fails, every answer is 2xx, and the long-lived
// connection survives, kept on its (finally draining) backend. The tasks
// drain on SIGTERM as apps behind marathon-lb do (-linger, and the
// connection's task lives until the connection closes).
func TestLBReconfigureUnderLoadNoDrop(t *testing.T) {
	n := startLBNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitLeader(t, ctx, n.c)
	const id = "/pentaho/reports"
	tcpPort := freeServicePort(t)
	def := n.lbApp(t, id, 2, tcpPort, map[string]string{
		"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "reports.example.com",
	}, nil, map[string]any{"args": []string{"-linger", "2s"}, "taskKillGracePeriodSeconds": 30})
	app := n.deploy(t, ctx, id, def, 2)
	original := taskSet(app.Tasks)

	// The long-lived connection sits on the task that scaling keeps
	// (YOUNGEST_FIRST kills the most recently staged first), so that only
	// the restart takes its backend away.
	sort.Slice(app.Tasks, func(i, j int) bool {
		a, b := app.Tasks[i], app.Tasks[j]
		if a.StagedAt != b.StagedAt {
			return a.StagedAt < b.StagedAt
		}
		return a.ID < b.ID
	})
	keep := app.Tasks[0].ID
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", tcpPort)
	var lc *lineConn
	eventually(t, 10*time.Second, "a TCP connection through "+tcpAddr+" to task "+keep, func() error {
		l, err := dialLines(tcpAddr)
		if err != nil {
			return err
		}
		task, err := l.exchange()
		if err != nil || task != keep {
			l.c.Close()
			return fmt.Errorf("connection reached %q (%v)", task, err)
		}
		lc = l
		return nil
	})
	defer lc.c.Close()
	eventually(t, 5*time.Second, "vhost reports.example.com answers", func() error {
		resp, _, _, err := n.get(n.http1, "", "reports.example.com", "/")
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})

	type failure struct {
		at  time.Duration
		msg string
	}
	var mu sync.Mutex
	var httpFails, tcpFails []failure
	httpOK, tcpOK := 0, 0
	servedBy := map[string]int{}
	var lastTasks []string
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // 20 requests/s on one keep-alive connection
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			resp, task, body, err := n.get(n.http1KeepAlive, "", "reports.example.com", "/")
			mu.Lock()
			switch {
			case err != nil:
				httpFails = append(httpFails, failure{time.Since(start), err.Error()})
			case resp.StatusCode < 200 || resp.StatusCode > 299:
				httpFails = append(httpFails, failure{time.Since(start), fmt.Sprintf("status %d: %q", resp.StatusCode, body)})
			default:
				httpOK++
				servedBy[task]++
				lastTasks = append(lastTasks, task)
				if len(lastTasks) > 10 {
					lastTasks = lastTasks[1:]
				}
			}
			mu.Unlock()
		}
	}()
	go func() { // a line every 100 ms on the long-lived connection
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			task, err := lc.exchange()
			mu.Lock()
			if err == nil && task != keep {
				err = fmt.Errorf("the connection's answers moved from task %s to %s", keep, task)
			}
			if err != nil {
				tcpFails = append(tcpFails, failure{time.Since(start), err.Error()})
				mu.Unlock()
				return // a broken connection stays broken
			}
			tcpOK++
			mu.Unlock()
		}
	}()
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()

	done := func(instances int) func() error {
		return func() error { return wantHealthy(ctx, n.c, id, instances, "") }
	}
	// settled: every one of cur has answered and the last answers all come
	// from cur (the lb uses the new backends and no longer the old).
	settled := func(cur map[string]bool) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			for tk := range cur {
				if servedBy[tk] == 0 {
					return fmt.Errorf("task %s got no request yet", tk)
				}
			}
			if len(lastTasks) < 10 {
				return fmt.Errorf("only %d recent answers", len(lastTasks))
			}
			for _, tk := range lastTasks {
				if !cur[tk] {
					return fmt.Errorf("recent answers %v include a task not in %v", lastTasks, cur)
				}
			}
			return nil
		}
	}
	for _, k := range []int{4, 1, 3} {
		if _, err := n.c.PutApp(ctx, id, []byte(fmt.Sprintf(`{"instances":%d}`, k)), false); err != nil {
			t.Fatalf("scale to %d: %v", k, err)
		}
		eventually(t, 30*time.Second, fmt.Sprintf("scaled to %d", k), done(k))
		a, err := n.c.App(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("vhost traffic on exactly the %d tasks", k), settled(taskSet(a.Tasks)))
		t.Logf("+%v scaled to %d", time.Since(start).Round(100*time.Millisecond), k)
	}
	a, err := n.c.App(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !taskSet(a.Tasks)[keep] {
		t.Fatalf("scaling killed task %s, which YOUNGEST_FIRST keeps; tasks now %v", keep, taskSet(a.Tasks))
	}
	beforeRestart := taskSet(a.Tasks)

	// Restart: every task is replaced. The connection's task drains: it
	// keeps running while the connection is open.
	if _, err := n.c.Do(ctx, "POST", "/v2/apps"+id+"/restart", nil, nil); err != nil {
		t.Fatalf("restart: %v", err)
	}
	var fresh map[string]bool
	eventually(t, 60*time.Second, "3 new healthy tasks after the restart", func() error {
		a, err := n.c.App(ctx, id)
		if err != nil {
			return err
		}
		fresh = map[string]bool{}
		for _, tk := range a.Tasks {
			if ok, known := tk.Healthy(); tk.State == api.TaskRunning && ok && known && !beforeRestart[tk.ID] {
				fresh[tk.ID] = true
			}
		}
		if len(fresh) != 3 {
			return fmt.Errorf("%d new healthy tasks", len(fresh))
		}
		return nil
	})
	t.Logf("+%v restarted: new tasks %v", time.Since(start).Round(100*time.Millisecond), fresh)
	// Traffic moves to the new tasks.
	eventually(t, 10*time.Second, "vhost traffic on the new tasks only", settled(fresh))
	halt()
	// One last exchange: the connection is still there.
	if len(tcpFails) == 0 {
		if task, err := lc.exchange(); err != nil || task != keep {
			tcpFails = append(tcpFails, failure{time.Since(start), fmt.Sprintf("last exchange: task %q, %v", task, err)})
		} else {
			tcpOK++
		}
	}
	lc.c.Close()
	elapsed := time.Since(start)

	for i, f := range httpFails {
		if i == 5 {
			break
		}
		t.Errorf("HTTP request at +%v failed: %s", f.at.Round(time.Millisecond), f.msg)
	}
	for _, f := range tcpFails {
		t.Errorf("long-lived TCP connection at +%v: %s", f.at.Round(time.Millisecond), f.msg)
	}
	if len(httpFails) > 0 {
		t.Errorf("%d of %d HTTP requests failed", len(httpFails), len(httpFails)+httpOK)
	}
	// The clients really ran: at least half their nominal rate.
	if min := int(elapsed / (100 * time.Millisecond)); httpOK < min || tcpOK < min/2 {
		t.Errorf("over %v only %d HTTP requests and %d line exchanges succeeded", elapsed.Round(time.Millisecond), httpOK, tcpOK)
	}
	tasksServed := []string{}
	for tk := range servedBy {
		tasksServed = append(tasksServed, tk)
	}
	sort.Strings(tasksServed)
	if len(servedBy) < len(original)+3 {
		t.Errorf("HTTP answers came from only %d tasks (%v); scaling and the restart should have spread them", len(servedBy), servedBy)
	}
	t.Logf("%v under load: %d HTTP requests OK, %d line exchanges OK on one connection, answers from %d tasks",
		elapsed.Round(100*time.Millisecond), httpOK, tcpOK, len(servedBy))

	// With its connection closed the drained task exits and the restart
	// deployment finishes.
	eventually(t, 30*time.Second, "restart deployment done", done(3))
}
