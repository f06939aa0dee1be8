// Command lb benchmarks weft's lb against HAProxy 2.6 side by side, on the
// same backends and cores: HTTP keep-alive (wrk), TCP small requests (wrk
// through L4), bulk TCP (iperf3) and reconfiguration under load. It prints
// ratios and a one-line summary. How fast a real task change reaches the
// lb on another node is bench/staleness's figure, measured from the agent's
// report through a real master; this bench's in-process state source
// leaves those hops out, so it no longer times propagation.
//
// Needs the Debian packages haproxy, wrk and iperf3. Run: go run ./bench/lb
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/lb"
	"github.com/weftnet/weft/sched/api"
)

var (
	role      = flag.String("role", "", "internal: run as backend or lb child")
	ports     = flag.String("ports", "", "internal: backend ports")
	stateURL  = flag.String("state", "", "internal: state server URL for the lb child")
	httpAddr  = flag.String("http", "", "internal: lb child HTTP frontend")
	adminAddr = flag.String("admin", "", "internal: lb child admin frontend")
	pprofAddr = flag.String("pprof", "", "serve net/http/pprof of the lb child here (e.g. 127.0.0.1:6060)")
	duration  = flag.Duration("duration", 10*time.Second, "length of each wrk and iperf3 run")
	runs      = flag.Int("runs", 2, "alternations of each weft/HAProxy pair")
	conns     = flag.Int("conns", 64, "wrk connections")
	changeFor = flag.Duration("change-duration", 2*time.Minute, "length of the under-change phase")
	skip      = flag.String("skip", "", "comma list of phases to skip: http,strict,tcp,bulk,change")
	only      = flag.String("only", "", "comma list of the only phases to run (e.g. tcp); overrides -skip")
	tcpRuns   = flag.Int("tcp-runs", 5, "alternations of the weft/HAProxy pair in the HTTP and TCP phases (the ratio is their median)")
	warmup    = flag.Duration("warmup", 3*time.Second, "unmeasured wrk run through each proxy before a phase's measured runs")
	baseline  = flag.String("baseline", "fea98ef", "git revision of the lb before the strict HTTP/1.1 parser (issue #13): built from this repository and run side by side in the strict phase; \"\" skips it")
	threads   = flag.Int("threads", 0, "threads of each proxy, the same for both: HAProxy's nbthread and the lb's GOMAXPROCS (0: one per core)")
)

const vhost = "bench.test"

func main() {
	flag.Parse()
	switch *role {
	case "backend":
		runBackend()
		return
	case "lb":
		runLB()
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/lb:", err)
		os.Exit(1)
	}
}

// ---- children ----

func runBackend() {
	body := []byte(strings.Repeat("x", 1023) + "\n")
	for _, p := range strings.Split(*ports, ",") {
		p := p
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", p)
			w.Header().Set("Content-Length", "1024")
			w.Write(body)
		})
		go func() {
			if err := http.ListenAndServe("127.0.0.1:"+p, h); err != nil {
				fmt.Fprintln(os.Stderr, "backend:", err)
				os.Exit(1)
			}
		}()
	}
	select {}
}

func runLB() {
	cfg := lb.DefaultConfig()
	cfg.Group = []string{"*"}
	cfg.HTTPAddr = *httpAddr
	cfg.HTTPSAddr = ""
	cfg.AppIDAddr = ""
	cfg.AdminAddr = *adminAddr
	cfg.BindHost = "127.0.0.1"
	cfg.Source = api.NewClient(*stateURL)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := lb.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil) // net/http/pprof registers on the default mux
	}
	if err := p.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// ---- the state server the lb child watches ----

type stateServer struct {
	mu      sync.Mutex
	st      api.State
	changed chan struct{}
}

func (s *stateServer) set(apps []api.App, tasks []api.Task) {
	s.mu.Lock()
	s.st.Index++
	s.st.Apps, s.st.Tasks = make([]*api.App, len(apps)), make([]*api.Task, len(tasks))
	for i := range apps {
		s.st.Apps[i] = &apps[i]
	}
	for i := range tasks {
		s.st.Tasks[i] = &tasks[i]
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *stateServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil {
		wait = 30 * time.Second
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		if s.st.Index > after {
			b, _ := json.Marshal(s.st)
			s.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
			return
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			s.mu.Lock()
			b, _ := json.Marshal(s.st)
			s.mu.Unlock()
			w.Write(b)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// ---- helpers ----

// freePort returns a port free to listen on, below the kernel's ephemeral
// range (32768 and up): a port from that range can be taken by any
// outgoing connection on the machine (wrk's, the lb's, another bench's)
// before HAProxy or the lb binds it.
func freePort() int {
	for i := 0; i < 1000; i++ {
		p := 20000 + rand.IntN(12000)
		if usedPorts[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		usedPorts[p] = true
		return p
	}
	panic("no free port in 20000-31999")
}

var usedPorts = map[int]bool{}

func waitPort(port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d", port)
}

func lbEnv() []string {
	env := os.Environ()
	if *threads > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(*threads))
	}
	return env
}

func start(name string, args ...string) (*exec.Cmd, error) { return startEnv(nil, name, args...) }

func startEnv(env []string, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	if name != "iperf3" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return cmd, nil
}

// cpuSplit returns utime and stime of a process in clock ticks.
func cpuSplit(pid int) (float64, float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return u, k
}

// ctxSwitches sums the voluntary and involuntary context switches of all
// threads of a process.
func ctxSwitches(pid int) float64 {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	n := 0.0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasSuffix(strings.Fields(l + " x")[0], "ctxt_switches:") {
				v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				n += v
			}
		}
	}
	return n
}

type wrkResult struct {
	rps              float64 // good answers (2xx/3xx) per second; errors are failures, not throughput
	requests         int
	p50, p99         time.Duration
	sockErrs, non2xx int
	cpuPct           float64
	sysShare         float64 // of cpuPct, the part in the kernel
	switches         float64 // context switches of the proxy per request
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reLat    = regexp.MustCompile(`\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	reSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reReqs   = regexp.MustCompile(`(\d+) requests in`)
)

// failures is what a run got wrong: socket errors and non-2xx/3xx answers.
func (r wrkResult) failures() int { return r.sockErrs + r.non2xx }

func parseDur(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	}
	return time.Duration(f * float64(time.Second))
}

func wrk(url string, pid int, d time.Duration, c int, host bool) (wrkResult, error) {
	args := []string{"-t2", "-c" + strconv.Itoa(c), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	if host {
		args = append(args, "-H", "Host: "+vhost)
	}
	args = append(args, url)
	u0, k0 := cpuSplit(pid)
	cs0 := ctxSwitches(pid)
	start := time.Now()
	out, err := exec.Command("wrk", args...).CombinedOutput()
	el := time.Since(start)
	var r wrkResult
	if err != nil {
		return r, fmt.Errorf("wrk %s: %v\n%s", url, err, out)
	}
	if pid > 0 {
		u1, k1 := cpuSplit(pid)
		r.cpuPct = (u1 + k1 - u0 - k0) / 100 / el.Seconds() * 100
		r.switches = ctxSwitches(pid) - cs0
		if u1+k1 > u0+k0 {
			r.sysShare = (k1 - k0) / (u1 + k1 - u0 - k0)
		}
	}
	s := string(out)
	if m := reRPS.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if r.rps > 0 {
		r.switches /= r.rps * el.Seconds()
	}
	for _, m := range reLat.FindAllStringSubmatch(s, -1) {
		if m[1] == "50" {
			r.p50 = parseDur(m[2], m[3])
		} else {
			r.p99 = parseDur(m[2], m[3])
		}
	}
	if m := reSock.FindStringSubmatch(s); m != nil {
		for _, x := range m[1:] {
			n, _ := strconv.Atoi(x)
			r.sockErrs += n
		}
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := reReqs.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	// wrk's Requests/sec counts non-2xx answers too: only good ones count.
	if r.requests > 0 {
		r.rps *= float64(max(r.requests-r.non2xx, 0)) / float64(r.requests)
	}
	return r, nil
}

func iperf(port int, d time.Duration) (float64, error) {
	out, err := exec.Command("iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", strconv.Itoa(int(d.Seconds())), "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3 via port %d: %v\n%s", port, err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, err
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

type agg struct{ rps, p50, p99, cpu []float64 }

func (a *agg) add(r wrkResult) {
	a.rps = append(a.rps, r.rps)
	a.p50 = append(a.p50, float64(r.p50)/1e6)
	a.p99 = append(a.p99, float64(r.p99)/1e6)
	a.cpu = append(a.cpu, r.cpuPct)
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func skipped(phase string) bool {
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			if s == phase {
				return false
			}
		}
		return true
	}
	for _, s := range strings.Split(*skip, ",") {
		if s == phase {
			return true
		}
	}
	return false
}

// ---- the run ----

type env struct {
	self                                string
	backendPorts                        []int
	state                               *stateServer
	lbHTTP, lbTCP, lbBulk               int
	lbAdmin                             int
	lbPid, haPid                        int
	haHTTP, haTCP, haBulk, haBulkSplice int
	iperfPort                           int
	stateURL                            string
	procs                               []*exec.Cmd
}

func (e *env) apps(backends []int) ([]api.App, []api.Task) {
	apps := []api.App{
		{ID: "/web", Version: "v1", Labels: map[string]string{"HAPROXY_0_VHOST": vhost}, PortDefinitions: []api.PortDefinition{{Port: freeOr(&e.lbHTTP)}}},
		{ID: "/tcp", Version: "v1", PortDefinitions: []api.PortDefinition{{Port: e.lbTCP}}},
		{ID: "/bulk", Version: "v1", PortDefinitions: []api.PortDefinition{{Port: e.lbBulk}}},
	}
	var tasks []api.Task
	for i, p := range backends {
		tasks = append(tasks, api.Task{ID: fmt.Sprintf("web.%d", p), AppID: "/web", Host: "127.0.0.1", State: api.TaskRunning, Ports: []int{p}})
		if i < 2 {
			tasks = append(tasks, api.Task{ID: fmt.Sprintf("tcp.%d", p), AppID: "/tcp", Host: "127.0.0.1", State: api.TaskRunning, Ports: []int{p}})
		}
	}
	tasks = append(tasks, api.Task{ID: "bulk.1", AppID: "/bulk", Host: "127.0.0.1", State: api.TaskRunning, Ports: []int{e.iperfPort}})
	return apps, tasks
}

var webServicePort int

func freeOr(p *int) int {
	if webServicePort == 0 {
		webServicePort = freePort()
	}
	return webServicePort
}

func run() error {
	for _, tool := range []string{"haproxy", "wrk", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: apt-get install -y haproxy wrk iperf3", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	e := &env{self: self, state: &stateServer{changed: make(chan struct{})}}
	defer func() {
		for _, p := range e.procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	for i := 0; i < 6; i++ {
		e.backendPorts = append(e.backendPorts, freePort())
	}
	var ps []string
	for _, p := range e.backendPorts {
		ps = append(ps, strconv.Itoa(p))
	}
	be, err := start(self, "-role", "backend", "-ports", strings.Join(ps, ","))
	if err != nil {
		return err
	}
	e.procs = append(e.procs, be)
	e.iperfPort = freePort()
	ip, err := start("iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(e.iperfPort))
	if err != nil {
		return err
	}
	e.procs = append(e.procs, ip)

	// State server and weft's lb.
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(sl, e.state)
	e.stateURL = "http://" + sl.Addr().String()
	e.lbHTTP, e.lbTCP, e.lbBulk, e.lbAdmin = freePort(), freePort(), freePort(), freePort()
	e.state.set(e.apps(e.backendPorts[:2]))
	lbArgs := []string{"-role", "lb", "-state", "http://" + sl.Addr().String(), "-http", "127.0.0.1:" + strconv.Itoa(e.lbHTTP), "-admin", "127.0.0.1:" + strconv.Itoa(e.lbAdmin)}
	if *pprofAddr != "" {
		lbArgs = append(lbArgs, "-pprof", *pprofAddr)
	}
	lbp, err := startEnv(lbEnv(), self, lbArgs...)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, lbp)
	e.lbPid = lbp.Process.Pid

	// HAProxy per measurements.md §5.
	e.haHTTP, e.haTCP, e.haBulk, e.haBulkSplice = freePort(), freePort(), freePort(), freePort()
	dir, err := os.MkdirTemp("", "bench-lb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	s1, s2 := e.backendPorts[0], e.backendPorts[1]
	cfg := fmt.Sprintf(`global
  nbthread %d
  maxconn 4000
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend http_in
  bind 127.0.0.1:%d
  mode http
  default_backend http_be
backend http_be
  mode http
  balance roundrobin
  http-reuse always
  server s1 127.0.0.1:%d
  server s2 127.0.0.1:%d
listen tcp_in
  bind 127.0.0.1:%d
  mode tcp
  balance roundrobin
  server s1 127.0.0.1:%d
  server s2 127.0.0.1:%d
listen bulk_plain
  bind 127.0.0.1:%d
  mode tcp
  server iperf 127.0.0.1:%d
listen bulk_splice
  bind 127.0.0.1:%d
  mode tcp
  option splice-request
  option splice-response
  server iperf 127.0.0.1:%d
`, proxyThreads(), e.haHTTP, s1, s2, e.haTCP, s1, s2, e.haBulk, e.iperfPort, e.haBulkSplice, e.iperfPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	ha, err := start("haproxy", "-db", "-f", cfgPath)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, ha)
	e.haPid = ha.Process.Pid
	for _, p := range append(append([]int{}, e.backendPorts...), e.iperfPort, e.lbHTTP, e.lbTCP, e.lbBulk, e.haHTTP, e.haTCP, e.haBulk) {
		if err := waitPort(p); err != nil {
			return err
		}
	}
	fmt.Printf("weft lb vs HAProxy 2.6 — wrk -t2 -c%d -d%s, 1 KiB responses, %d alternations, %d cores; %s\n\n", *conns, *duration, *runs, numCPU(), threadsNote())

	summary := []string{}
	pass := true
	check := func(ok bool) string {
		if !ok {
			pass = false
			return "MISSED"
		}
		return "ok"
	}
	gap := func() { time.Sleep(2 * time.Second) }

	if !skipped("http") {
		d, err := wrk(fmt.Sprintf("http://127.0.0.1:%d/", s1), 0, *duration, *conns, false)
		if err != nil {
			return err
		}
		fmt.Printf("HTTP keep-alive (vhost frontend); backend direct: %.0f req/s, p99 %.2f ms\n", d.rps, float64(d.p99)/1e6)
		res, err := pairPhase(e, "http", fmt.Sprintf("http://127.0.0.1:%d/", e.lbHTTP), fmt.Sprintf("http://127.0.0.1:%d/", e.haHTTP), true)
		if err != nil {
			return err
		}
		okRate, okP99, okErr := res.ratio >= 0.95, res.p99Ratio <= 1.2, res.failures == 0
		fmt.Printf("  ratio req/s median %.2f× (target ≥ 0.95: %s); p99 median %.2f× HAProxy's (target ≤ 1.2: %s); failed requests %d (target 0: %s)\n\n",
			res.ratio, check(okRate), res.p99Ratio, check(okP99), res.failures, check(okErr))
		benchkit.EmitRow(benchkit.Row{Bench: "lb", Figure: "HTTP keep-alive req/s (median of alternating pairs; " + threadsNote() + ")", Weft: fmt.Sprintf("%.0f", res.weftRPS), Peer: haproxyPeer(), PeerValue: fmt.Sprintf("%.0f", res.haRPS), Ratio: res.ratio, Target: "≥ 0.95× with 0 failures", Met: okRate && okErr})
		benchkit.EmitRow(benchkit.Row{Bench: "lb", Figure: "HTTP p99 (median of alternating pairs; " + threadsNote() + ")", Weft: fmt.Sprintf("%.2f ms", res.weftP99), Peer: haproxyPeer(), PeerValue: fmt.Sprintf("%.2f ms", res.haP99), Ratio: res.p99Ratio, Target: "≤ 1.2×", Met: okP99})
		summary = append(summary, fmt.Sprintf("http %.2f× (p99 %.2f×, %d failed)", res.ratio, res.p99Ratio, res.failures))
	}

	if !skipped("strict") && *baseline != "" {
		res, rev, err := strictPhase(e)
		if err != nil {
			return err
		}
		ok := res.ratio >= 0.97 && res.failures == 0
		fmt.Printf("  strict parser / lenient (%s) req/s median %.3f× (target ≥ 0.97: %s); p99 %.2f×; failed requests %d\n\n", rev, res.ratio, check(ok), res.p99Ratio, res.failures)
		benchkit.EmitRow(benchkit.Row{Bench: "lb", Figure: "HTTP keep-alive req/s, strict HTTP/1.1 parser vs the lb before it (median of alternating pairs)", Weft: fmt.Sprintf("%.0f", res.weftRPS),
			Peer: "weft's lb at " + rev + " (before the strict parser), same backends, same wrk, alternating runs", PeerValue: fmt.Sprintf("%.0f", res.haRPS), Ratio: res.ratio, Target: "≥ 0.97× (within 3 %) with 0 failures", Met: ok})
		summary = append(summary, fmt.Sprintf("strict/lenient %.3f×", res.ratio))
	}

	if !skipped("tcp") {
		fmt.Println("TCP small requests (keep-alive HTTP through L4)")
		res, err := pairPhase(e, "tcp", fmt.Sprintf("http://127.0.0.1:%d/", e.lbTCP), fmt.Sprintf("http://127.0.0.1:%d/", e.haTCP), false)
		if err != nil {
			return err
		}
		okRate, okErr := res.ratio >= 0.9, res.failures == 0
		fmt.Printf("  ratio req/s median %.2f× (target ≥ 0.9: %s); failed requests %d (target 0: %s)\n\n", res.ratio, check(okRate), res.failures, check(okErr))
		benchkit.EmitRow(benchkit.Row{Bench: "lb", Figure: "TCP small requests req/s (median of alternating pairs; " + threadsNote() + ")", Weft: fmt.Sprintf("%.0f", res.weftRPS), Peer: haproxyPeer(), PeerValue: fmt.Sprintf("%.0f", res.haRPS), Ratio: res.ratio, Target: "≥ 0.9× with 0 failures", Met: okRate && okErr})
		summary = append(summary, fmt.Sprintf("tcp %.2f× (%d failed)", res.ratio, res.failures))
	}

	if !skipped("bulk") {
		var weft, haPlain, haSplice []float64
		for i := 0; i < *runs; i++ {
			for _, x := range []struct {
				port int
				into *[]float64
			}{{e.lbBulk, &weft}, {e.haBulk, &haPlain}, {e.haBulkSplice, &haSplice}} {
				g, err := iperf(x.port, *duration)
				if err != nil {
					return err
				}
				*x.into = append(*x.into, g)
				gap()
			}
		}
		fmt.Println("Bulk TCP (iperf3, one stream)")
		fmt.Printf("  HAProxy tcp (default)         %6.2f Gbit/s\n", mean(haPlain))
		fmt.Printf("  HAProxy tcp (forced splice)   %6.2f Gbit/s\n", mean(haSplice))
		fmt.Printf("  weft lb (splice)              %6.2f Gbit/s\n", mean(weft))
		best := math.Max(mean(haPlain), mean(haSplice))
		ratio := mean(weft) / best
		fmt.Printf("  ratio %.2f× the better HAProxy (target ≥ 1.0: %s); %.2f× HAProxy's default\n\n", ratio, check(ratio >= 1.0), mean(weft)/mean(haPlain))
		summary = append(summary, fmt.Sprintf("bulk %.2f×", ratio))
	}

	if !skipped("change") {
		res, err := underChange(e, *changeFor)
		if err != nil {
			return err
		}
		ok := res.errors == 0 && res.non2xx == 0 && res.longLivedBroken == 0
		fmt.Printf("Under change (%s, %.0f req/s offered, %.0f achieved, one backend change per second)\n", *changeFor, res.rate, float64(res.requests)/changeFor.Seconds())
		fmt.Printf("  %d requests, %d socket errors, %d non-2xx, %d changes, long-lived: %d/%d survived, keep-alive reconnects: %d (%s)\n\n",
			res.requests, res.errors, res.non2xx, res.changes, res.longLived-res.longLivedBroken, res.longLived, res.reconnects, check(ok))
		summary = append(summary, fmt.Sprintf("change %d err %d non-2xx %d/%d long-lived", res.errors, res.non2xx, res.longLived-res.longLivedBroken, res.longLived))
	}

	verdict := "all targets met"
	if !pass {
		verdict = "some targets missed"
	}
	fmt.Printf("SUMMARY lb: %s vs HAProxy 2.6 (targets: http ≥ 0.95×, p99 ≤ 1.2×, tcp ≥ 0.9×, 0 failed requests, bulk ≥ 1.0×, 0 errors under change) — %s\n", strings.Join(summary, ", "), verdict)
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	w := append([]float64(nil), v...)
	sort.Float64s(w)
	if len(w)%2 == 1 {
		return w[len(w)/2]
	}
	return (w[len(w)/2-1] + w[len(w)/2]) / 2
}

func haproxyPeer() string {
	return fmt.Sprintf("HAProxy 2.6, nbthread %d (same backends, same wrk, alternating runs)", proxyThreads())
}

// proxyThreads is the number of threads each proxy runs: -threads, else
// one per core (the lb's Go default).
func proxyThreads() int {
	if *threads > 0 {
		return *threads
	}
	return numCPU()
}

func threadsNote() string {
	n := proxyThreads()
	return fmt.Sprintf("%d threads each: HAProxy nbthread %d, lb GOMAXPROCS %d", n, n, n)
}

type pairResult struct {
	ratio, p99Ratio float64 // medians of the per-pair ratios
	weftRPS, haRPS  float64 // medians
	weftP99, haP99  float64 // medians, ms
	failures        int     // socket errors and non-2xx/3xx through weft
}

// pairPhase measures one kind of small request through each proxy: after
// one unmeasured warm-up run through each, weft and HAProxy run in turn
// -tcp-runs times, the order flipping each pair so drift on the shared
// cores favours neither; the verdict is the median of the per-pair ratios.
// Only good answers count as throughput; weft's socket errors and non-2xx
// answers are counted as failures. CPU is each proxy's own utime+stime.
// Each pair's row also shows both p50s and each proxy's context switches
// per request, so that a p99 gap can be told apart from extra work per
// request (a higher p50, more CPU or switches) and from the shared cores'
// noise (p50, CPU and switches alike, p99 apart).
func pairPhase(e *env, name, weftURL, haURL string, host bool) (pairResult, error) {
	return pairWith(e, name, weftURL, haURL, e.haPid, "HA", host)
}

// pairWith is pairPhase against any peer: the proxy at peerURL whose
// process is peerPid, labelled peer in the table.
func pairWith(e *env, name, weftURL, haURL string, haPid int, peer string, host bool) (pairResult, error) {
	gap := func() { time.Sleep(2 * time.Second) }
	if *warmup > 0 {
		for _, x := range []struct {
			url string
			pid int
		}{{weftURL, e.lbPid}, {haURL, haPid}} {
			if _, err := wrk(x.url, x.pid, *warmup, *conns, host); err != nil {
				return pairResult{}, err
			}
		}
		gap()
	}
	var weft, ha agg
	var res pairResult
	var ratios, p99Ratios, cpuRatios []float64
	fmt.Printf("  %-4s %10s %10s %7s %8s %8s %8s %8s %10s %10s %7s %9s %9s %7s %7s\n", "pair", "weft req/s", peer+" req/s", "ratio", "weft p50", peer+" p50", "weft p99", peer+" p99", "weft µs/r", peer+" µs/r", "cpu ×", "weft sys", peer+" sys", "weft cs/r", peer+" cs/r")
	for i := 0; i < *tcpRuns; i++ {
		var rw, rh wrkResult
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, isWeft := range order {
			url, pid, into := haURL, haPid, &rh
			if isWeft {
				url, pid, into = weftURL, e.lbPid, &rw
			}
			r, err := wrk(url, pid, *duration, *conns, host)
			if err != nil {
				return pairResult{}, err
			}
			if r.failures() > 0 {
				fmt.Printf("  %s run %d (weft %v): %d socket errors, %d non-2xx\n", name, i, isWeft, r.sockErrs, r.non2xx)
			}
			if isWeft {
				res.failures += r.failures()
			}
			*into = r
			gap()
		}
		weft.add(rw)
		ha.add(rh)
		ratio := rw.rps / rh.rps
		cw, ch := rw.cpuPct/100/rw.rps*1e6, rh.cpuPct/100/rh.rps*1e6
		ratios = append(ratios, ratio)
		p99Ratios = append(p99Ratios, float64(rw.p99)/float64(rh.p99))
		cpuRatios = append(cpuRatios, cw/ch)
		fmt.Printf("  %-4d %10.0f %10.0f %6.2f× %7.2fms %7.2fms %7.2fms %7.2fms %10.1f %10.1f %6.2f× %8.0f%% %8.0f%% %7.2f %7.2f\n", i, rw.rps, rh.rps, ratio,
			float64(rw.p50)/1e6, float64(rh.p50)/1e6, float64(rw.p99)/1e6, float64(rh.p99)/1e6, cw, ch, cw/ch, rw.sysShare*100, rh.sysShare*100, rw.switches, rh.switches)
	}
	res.ratio, res.p99Ratio = median(ratios), median(p99Ratios)
	res.weftRPS, res.haRPS = median(weft.rps), median(ha.rps)
	res.weftP99, res.haP99 = median(weft.p99), median(ha.p99)
	sorted := append([]float64(nil), ratios...)
	sort.Float64s(sorted)
	fmt.Printf("  req/s ratio range %.2f–%.2f over %d pairs; CPU per request median %.2f× %s's\n", sorted[0], sorted[len(sorted)-1], len(ratios), median(cpuRatios), peer)
	return res, nil
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

type changeResult struct {
	rate                                          float64
	requests, errors, non2xx, changes, reconnects int64
	longLived, longLivedBroken                    int
}

// underChange offers half of weft's measured rate over keep-alive
// connections while one backend changes every second, with long-lived TCP
// connections open through the TCP service port.
func underChange(e *env, d time.Duration) (changeResult, error) {
	// Half load: measure the saturated rate briefly, then offer half.
	r, err := wrk(fmt.Sprintf("http://127.0.0.1:%d/", e.lbHTTP), 0, 5*time.Second, *conns, true)
	if err != nil {
		return changeResult{}, err
	}
	res := changeResult{rate: r.rps / 2}
	const workers = 32
	interval := time.Duration(float64(time.Second) * workers / res.rate)
	var reqs, errs, non2xx, dials atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	url := fmt.Sprintf("http://127.0.0.1:%d/", e.lbHTTP)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, n, a)
			}}
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = vhost
				resp, err := c.Do(req)
				reqs.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					non2xx.Add(1)
				}
			}
		}()
	}
	// Long-lived TCP connections through the TCP service port: each sends
	// a keep-alive HTTP request every 200 ms on the same connection.
	const longLived = 4
	res.longLived = longLived
	var broken atomic.Int64
	for i := 0; i < longLived; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.lbTCP))
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReader(c)
			for ctx.Err() == nil {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					broken.Add(1)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	// One backend change per second: rotate which 2 of the 6 backends
	// (beyond the first two, which the TCP service keeps) serve /web.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	dialsBefore := int64(workers)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			e.state.set(e.apps(e.backendPorts[:2]))
			res.requests, res.errors, res.non2xx = reqs.Load(), errs.Load(), non2xx.Load()
			res.longLivedBroken = int(broken.Load())
			res.reconnects = max(dials.Load()-dialsBefore, 0)
			return res, nil
		case <-tick.C:
		}
		set := []int{e.backendPorts[0], e.backendPorts[1]}
		// Add one and remove one in turn among the spare backends.
		spare := e.backendPorts[2:]
		set = append(set, spare[i%len(spare)], spare[(i+1)%len(spare)])
		if i%2 == 1 {
			set = set[1:] // also drop one of the first two from /web
		}
		e.state.set(e.apps(set))
		res.changes++
	}
}

// strictPhase runs the HTTP phase between this lb and the lb as it was
// before the strict HTTP/1.1 parser (-baseline), built from this
// repository's history into a temporary directory and run the same way
// (this bench's own lb child role, watching the same state server).
func strictPhase(e *env) (pairResult, string, error) {
	dir, err := os.MkdirTemp("", "bench-lb-baseline")
	if err != nil {
		return pairResult{}, "", err
	}
	defer os.RemoveAll(dir)
	rev := *baseline
	out, err := exec.Command("git", "rev-parse", "--short", rev+"^{commit}").Output()
	if err != nil {
		return pairResult{}, "", fmt.Errorf("baseline %q is not a commit of this repository (run from a clone with history, or -baseline \"\"): %v", rev, err)
	}
	rev = strings.TrimSpace(string(out))
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return pairResult{}, "", err
	}
	arch := exec.Command("sh", "-c", "git archive --format=tar \"$0\" | tar -x -C \"$1\"", rev, src)
	if b, err := arch.CombinedOutput(); err != nil {
		return pairResult{}, "", fmt.Errorf("extracting %s: %v: %s", rev, err, b)
	}
	bin := filepath.Join(dir, "lb-baseline")
	build := exec.Command("go", "build", "-o", bin, "./bench/lb")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := build.CombinedOutput(); err != nil {
		return pairResult{}, "", fmt.Errorf("building the lb at %s: %v: %s", rev, err, b)
	}
	httpPort, adminPort := freePort(), freePort()
	p, err := startEnv(lbEnv(), bin, "-role", "lb", "-state", e.stateURL, "-http", "127.0.0.1:"+strconv.Itoa(httpPort), "-admin", "127.0.0.1:"+strconv.Itoa(adminPort))
	if err != nil {
		return pairResult{}, "", err
	}
	defer func() { p.Process.Kill(); p.Wait() }()
	if err := waitPort(httpPort); err != nil {
		return pairResult{}, "", err
	}
	fmt.Printf("HTTP keep-alive through the strict parser vs the lb at %s (before it)\n", rev)
	res, err := pairWith(e, "strict", fmt.Sprintf("http://127.0.0.1:%d/", e.lbHTTP), fmt.Sprintf("http://127.0.0.1:%d/", httpPort), p.Process.Pid, "old", true)
	return res, rev, err
}
