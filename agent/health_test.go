package agent

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestCheckStateApply(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	type step struct {
		at      int // seconds after the task started
		o       outcome
		changed bool
		alive   bool
		fails   int
	}
	cases := []struct {
		name  string
		grace time.Duration
		steps []step
	}{
		{"failures in grace are ignored until the first success", 10 * time.Second, []step{
			{1, unhealthy, false, false, 0},
			{5, unhealthy, false, false, 0},
			{6, healthy, true, true, 0},
			{7, healthy, false, true, 0},   // a run of successes posts nothing new
			{8, unhealthy, true, false, 1}, // after a first success grace no longer applies
		}},
		{"failures after grace count", 2 * time.Second, []step{
			{1, unhealthy, false, false, 0},
			{3, unhealthy, true, false, 1},
			{4, unhealthy, true, false, 2},
			{5, healthy, true, true, 0},
		}},
		{"no grace: first failure counts", 0, []step{
			{0, unhealthy, true, false, 1},
			{1, ignored, false, false, 1},
			{2, healthy, true, true, 0},
			{3, ignored, false, true, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s checkState
			for i, st := range c.steps {
				changed := s.apply(st.o, "cause", sec(st.at), t0, c.grace)
				r := s.result("task")
				if changed != st.changed || r.Alive != st.alive || r.ConsecutiveFailures != st.fails {
					t.Fatalf("step %d (t+%ds %v): changed=%v alive=%v failures=%d, want %v %v %d",
						i, st.at, st.o, changed, r.Alive, r.ConsecutiveFailures, st.changed, st.alive, st.fails)
				}
			}
		})
	}
	var s checkState
	s.apply(healthy, "", sec(1), t0, 0)
	s.apply(healthy, "", sec(2), t0, 0)
	s.apply(unhealthy, "Got status code 500", sec(3), t0, 0)
	r := s.result("t1")
	want := api.HealthCheckResult{Alive: false, ConsecutiveFailures: 1, TaskID: "t1",
		FirstSuccess: "2026-11-22T03:00:01.000Z", LastSuccess: "2026-11-22T03:00:02.000Z",
		LastFailure: "2026-11-22T03:00:03.000Z", LastFailureCause: "Got status code 500"}
	if r != want {
		t.Errorf("result = %+v\nwant %+v", r, want)
	}
}

func TestHTTPOutcome(t *testing.T) {
	cases := []struct {
		code   int
		ignore bool
		want   outcome
	}{
		{200, false, healthy}, {204, false, healthy}, {301, false, healthy}, {399, false, healthy},
		{100, false, unhealthy}, {101, true, ignored}, {199, true, ignored},
		{400, false, unhealthy}, {404, true, unhealthy}, {500, false, unhealthy}, {503, true, unhealthy},
	}
	for _, c := range cases {
		if got, _ := httpOutcome(c.code, c.ignore); got != c.want {
			t.Errorf("httpOutcome(%d, ignore1xx=%v) = %v, want %v", c.code, c.ignore, got, c.want)
		}
	}
}

func TestCheckPort(t *testing.T) {
	i := func(n int) *int { return &n }
	cases := []struct {
		name       string
		idx, port  *int
		ports      []int
		want       int
		wantErrStr bool
	}{
		{"portIndex", i(1), nil, []int{31000, 31001}, 31001, false},
		{"portIndex out of range", i(2), nil, []int{31000}, 0, true},
		{"literal port", nil, i(8080), []int{31000}, 8080, false},
		{"default first port", nil, nil, []int{31000, 31001}, 31000, false},
		{"no port at all", nil, nil, nil, 0, true},
	}
	for _, c := range cases {
		got, err := checkPort(c.idx, c.port, c.ports)
		if got != c.want || (err != nil) != c.wantErrStr {
			t.Errorf("%s: got %d, %v", c.name, got, err)
		}
	}
}

func TestBaseProtocol(t *testing.T) {
	for in, want := range map[string]string{"HTTP": "HTTP", "MESOS_HTTP": "HTTP", "mesos_https": "HTTPS", "MESOS_TCP": "TCP", "COMMAND": "COMMAND"} {
		if got := baseProtocol(in); got != want {
			t.Errorf("baseProtocol(%q) = %q, want %q", in, got, want)
		}
	}
}

// portOf returns the port of a test server URL.
func portOf(t *testing.T, raw string) int {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// healthOf returns the last posted health results of id.
func healthOf(m *fakeMaster, id string) []api.HealthCheckResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.statuses) - 1; i >= 0; i-- {
		if s := m.statuses[i]; s.TaskID == id && s.HealthCheckResults != nil {
			return s.HealthCheckResults
		}
	}
	return nil
}

func healthTask(id string, port int, hcs ...api.HealthCheck) api.Assignment {
	a := shTask(id, `exec sleep 1000`)
	a.Spec.Ports = []int{port}
	a.Spec.HealthChecks = hcs
	return a
}

func TestHTTPHealthCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			w.WriteHeader(404)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	zero := 0
	m.set(healthTask("web", portOf(t, srv.URL), api.HealthCheck{
		Protocol: "HTTP", Path: "/health", PortIndex: &zero, IntervalSeconds: 1, TimeoutSeconds: 50, MaxConsecutiveFailures: 3,
	}))
	eventually(t, 10*time.Second, "healthy result", func() bool {
		r := healthOf(m, "web")
		return len(r) == 1 && r[0].Alive && r[0].FirstSuccess != ""
	})
	status.Store(500)
	eventually(t, 10*time.Second, "two consecutive failures", func() bool {
		r := healthOf(m, "web")
		return len(r) == 1 && !r[0].Alive && r[0].ConsecutiveFailures >= 2 && r[0].LastFailureCause == "Got status code 500"
	})
	status.Store(302) // a redirect is healthy and is not followed
	eventually(t, 10*time.Second, "healthy again", func() bool {
		r := healthOf(m, "web")
		return len(r) == 1 && r[0].Alive && r[0].ConsecutiveFailures == 0
	})
	// The agent never kills for health: the framework decides.
	if _, ok := m.last("web", api.TaskKilling); ok {
		t.Error("the agent killed a task for failing health checks")
	}
}

func TestHealthResultsPostedOnlyOnChange(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(healthTask("quiet", portOf(t, srv.URL), api.HealthCheck{Protocol: "MESOS_HTTP", IntervalSeconds: 1, TimeoutSeconds: 50}))
	eventually(t, 10*time.Second, "healthy", func() bool { r := healthOf(m, "quiet"); return len(r) == 1 && r[0].Alive })
	time.Sleep(300 * time.Millisecond) // ~15 more successful checks at 20 ms
	n := 0
	for _, s := range m.states("quiet") {
		if s == api.TaskRunning {
			n++
		}
	}
	if n > 3 {
		t.Errorf("%d RUNNING updates for a steadily healthy task: results must be posted on change only", n)
	}
}

func TestHTTPSHealthCheckSkipsVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(healthTask("tls", portOf(t, srv.URL), api.HealthCheck{Protocol: "HTTPS", IntervalSeconds: 1, TimeoutSeconds: 50}))
	eventually(t, 10*time.Second, "healthy over self-signed TLS", func() bool {
		r := healthOf(m, "tls")
		return len(r) == 1 && r[0].Alive
	})
}

func TestTCPHealthCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(healthTask("tcp", port, api.HealthCheck{Protocol: "TCP", IntervalSeconds: 1, TimeoutSeconds: 50}))
	eventually(t, 10*time.Second, "tcp healthy", func() bool { r := healthOf(m, "tcp"); return len(r) == 1 && r[0].Alive })
	ln.Close()
	eventually(t, 10*time.Second, "tcp unhealthy after the listener closed", func() bool {
		r := healthOf(m, "tcp")
		return len(r) == 1 && !r[0].Alive && r[0].ConsecutiveFailures >= 1 && r[0].LastFailureCause != ""
	})
}

func TestCommandHealthCheckAndGrace(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	startAgent(t, testConfig(t, m, dir))
	a := shTask("cmd", `sleep 1000`)
	// Two checks: the task is alive only when both are. The command one
	// sees the task's env and sandbox; its failures during the 10-unit
	// (200 ms) grace period are ignored.
	a.Spec.HealthChecks = []api.HealthCheck{
		{Protocol: "COMMAND", Command: &api.CommandCheck{Value: `test -f ok && test "$FOO" = bar`}, IntervalSeconds: 1, TimeoutSeconds: 50, GracePeriodSeconds: 10},
		{Protocol: "MESOS_COMMAND", Command: &api.CommandCheck{Value: `true`}, IntervalSeconds: 1, TimeoutSeconds: 50},
	}
	m.set(a)
	running := waitState(t, m, "cmd", api.TaskRunning)
	time.Sleep(100 * time.Millisecond)
	if r := healthOf(m, "cmd"); r != nil {
		t.Fatalf("results posted during the grace period: %+v", r)
	}
	eventually(t, 10*time.Second, "failure counted after grace", func() bool {
		r := healthOf(m, "cmd")
		return len(r) == 2 && !r[0].Alive && r[0].ConsecutiveFailures >= 1 && r[1].Alive
	})
	if r := healthOf(m, "cmd"); r[0].LastFailure < api.Timestamp(running.Timestamp.Add(190*time.Millisecond)) {
		t.Errorf("a failure at %s was counted within the grace period (running at %s)", r[0].LastFailure, api.Timestamp(running.Timestamp))
	}
	if err := os.WriteFile(filepath.Join(dir, "sandboxes", "cmd", "ok"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "command check healthy", func() bool {
		r := healthOf(m, "cmd")
		return len(r) == 2 && r[0].Alive && r[1].Alive
	})
}

func TestReadinessCheck(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ready.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(503)
	}))
	defer srv.Close()
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	a := shTask("rdy", `exec sleep 1000`)
	a.Spec.Ports = []int{1, portOf(t, srv.URL)}
	a.Spec.Env["PORT_HTTP"] = strconv.Itoa(portOf(t, srv.URL))
	a.Spec.ReadinessChecks = []api.ReadinessCheck{{Name: "r", Protocol: "HTTP", Path: "/ready", PortName: "http", IntervalSeconds: 1, TimeoutSeconds: 50}}
	m.set(a)
	st := waitState(t, m, "rdy", api.TaskRunning)
	if st.Ready == nil || *st.Ready {
		t.Fatalf("RUNNING update ready = %v, want false until the check passes", st.Ready)
	}
	time.Sleep(100 * time.Millisecond)
	if st, _ := m.last("rdy", api.TaskRunning); st.Ready == nil || *st.Ready {
		t.Fatal("ready before the readiness endpoint answered 200")
	}
	ready.Store(true)
	eventually(t, 10*time.Second, "ready", func() bool {
		st, _ := m.last("rdy", api.TaskRunning)
		return st.Ready != nil && *st.Ready
	})
}
