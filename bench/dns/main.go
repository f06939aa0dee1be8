// Command dns benchmarks weft's DNS server against NSD, side by side in one
// run, with dnsperf (the same query file, the same settings, runs
// alternating, each after a warm-up run; medians): throughput at
// saturation (QPS ratio, loss), server CPU per query at a fixed 20k QPS,
// throughput while task changes land on a real master that weft's DNS
// follows live. Staleness from a real task change to a changed answer on
// another node is bench/staleness's figure (agent report → real master →
// watch → answer); an in-process state source would leave those hops out.
// Only NOERROR and NXDOMAIN answers, in the split the query file asks for,
// count as throughput.
//
//	go run ./bench/dns [-duration 15s] [-runs 3] [-warmup 3s] [-rate 10]
//
// It needs nsd and dnsperf (Debian packages nsd, dnsperf); it installs
// nothing and says what is missing.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/dns"
	"github.com/weftnet/weft/sched/api"
)

var cpuProfile string

func main() {
	duration := flag.Duration("duration", 15*time.Second, "length of each dnsperf run")
	runs := flag.Int("runs", 3, "alternations (A,B) per measurement; the figures are medians")
	warmup := flag.Duration("warmup", 3*time.Second, "a dnsperf run before each measured run, not counted")
	rate := flag.Float64("rate", 10, "task changes per second on the master in the live phase")
	apps := flag.Int("apps", 1000, "apps in the zone (3 tasks each)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of weft's first saturation run here")
	flag.Parse()
	if os.Getenv(childEnv) != "" {
		if err := serveMaster(*apps); err != nil {
			fmt.Fprintln(os.Stderr, "bench/dns master:", err)
			os.Exit(1)
		}
		return
	}
	benchkit.CleanupOnSignal()
	var missing []string
	for _, tool := range []string{"nsd", "dnsperf"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "bench/dns: missing %s; install with: apt-get install -y nsd dnsperf\n", strings.Join(missing, ", "))
		os.Exit(2)
	}
	warmupRun = *warmup
	if err := run(*duration, *runs, *apps, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dns:", err)
		benchkit.Exit(1)
	}
	benchkit.Exit(0)
}

// warmupRun is the length of the unmeasured dnsperf run before each
// measured one.
var warmupRun time.Duration

// state is apps × 3 tasks on three agents, host networking, one port each.
func state(apps int, index uint64) *api.State {
	st := &api.State{Index: index, Leader: "10.47.1.1:8080"}
	agents := []string{"b-S1", "b-S2", "b-S3"}
	for i, id := range agents {
		st.Nodes = append(st.Nodes, api.Node{ID: id, Name: "agent" + strconv.Itoa(i+1), Role: api.RoleBoth, Site: "a", Status: "alive",
			Address: fmt.Sprintf("192.168.1.%d", 10+i), OverlayIP: fmt.Sprintf("10.47.%d.1", i+1), OverlayBlock: fmt.Sprintf("10.47.%d.0/24", i+1)})
	}
	for a := 0; a < apps; a++ {
		id := "/app-" + strconv.Itoa(a)
		st.Apps = append(st.Apps, &api.App{ID: id, Instances: 3, PortDefinitions: []api.PortDefinition{{Port: 10000 + a, Protocol: "tcp"}}})
		for k := 0; k < 3; k++ {
			st.Tasks = append(st.Tasks, &api.Task{ID: fmt.Sprintf("app-%d.%d", a, k), AppID: id, SlaveID: agents[k], State: api.TaskRunning,
				Ports: []int{20000 + a}, Framework: "marathon"})
		}
	}
	return st
}

func run(duration time.Duration, runs, apps int, rate float64) error {
	dir, err := benchkit.TempDir("weft-bench-dns-") // removed at exit, after nsd is stopped
	if err != nil {
		return err
	}
	st := state(apps, 1)
	src := &source{st: st, changed: make(chan struct{})}

	cfg := dns.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Forward = false
	cfg.Source = src
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := dns.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Run(ctx) }()
	<-srv.Ready()
	weftAddr := srv.Addrs()[0]

	// NSD serves a zone file of the same records.
	zone := filepath.Join(dir, "pcm.zone")
	var zt strings.Builder
	for _, l := range strings.SplitAfter(srv.Table().ZoneText(), "\n") {
		if strings.HasPrefix(l, "pcm.") || strings.Contains(l, ".pcm. ") {
			zt.WriteString(l) // in-zone records only (no PTR)
		}
	}
	if err := os.WriteFile(zone, []byte(zt.String()), 0o644); err != nil {
		return err
	}
	nsdPort, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`server:
  ip-address: 127.0.0.1@%d
  server-count: 1
  minimal-responses: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  refuse-any: yes
  reuseport: no
  database: ""
  zonelistfile: "%s/zone.list"
  xfrdfile: "%s/xfrd.state"
  pidfile: "%s/nsd.pid"
  username: ""
  chroot: ""
  verbosity: 0
  hide-version: yes
remote-control:
  control-enable: no
zone:
  name: pcm.
  zonefile: "%s"
`, nsdPort, dir, dir, dir, zone)), 0o644); err != nil {
		return err
	}
	nsd := exec.Command("nsd", "-d", "-c", conf)
	nsd.Stderr = os.Stderr
	if err := nsd.Start(); err != nil {
		return fmt.Errorf("starting nsd: %w", err)
	}
	benchkit.AtExit(func() { _ = nsd.Process.Kill(); _ = nsd.Wait() })
	nsdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nsdPort))
	if err := waitAnswer(nsdAddr, "app-0.marathon.pcm."); err != nil {
		return fmt.Errorf("nsd does not answer: %w", err)
	}

	// Queries: 70% A of existing names, 20% SRV, 10% A of unknown names.
	qfile := filepath.Join(dir, "queries.txt")
	if expectNX, err = writeQueries(qfile, apps, 100000); err != nil {
		return err
	}
	fmt.Printf("zone: %d apps x 3 tasks, %d records; queries: 70%% A, 20%% SRV, 10%% unknown\n", apps, len(srv.Table().Records()))
	fmt.Printf("weft dns on %s (GOMAXPROCS default), nsd %s on %s (server-count 1)\n", weftAddr, nsdVersion(), nsdAddr)
	fmt.Printf("load average at start: %s (other work on this machine skews every figure; ratios within one run hold best)\n\n", loadavg())

	targets := []target{{"nsd", nsdAddr, nsd.Process.Pid}, {"weft", weftAddr, os.Getpid()}}
	sat := map[string][]result{}
	fmt.Printf("saturation (dnsperf -c 4, %v per run after a %v warm-up, alternating):\n", duration, warmupRun)
	for r := 0; r < runs; r++ {
		for _, t := range order(targets, r) {
			var prof *os.File
			if t.name == "weft" && r == 0 && cpuProfile != "" {
				if prof, err = os.Create(cpuProfile); err == nil {
					_ = pprof.StartCPUProfile(prof)
				}
			}
			res, err := measure(t, qfile, duration, 0)
			if prof != nil {
				pprof.StopCPUProfile()
				prof.Close()
			}
			if err != nil {
				return err
			}
			sat[t.name] = append(sat[t.name], res)
			fmt.Printf("  %-5s run %d: %s\n", t.name, r+1, res)
		}
	}
	lat := map[string][]result{}
	fmt.Printf("fixed load (-Q 20000), server CPU (utime+stime) per answered query:\n")
	for r := 0; r < runs; r++ {
		for _, t := range order(targets, r) {
			res, err := measure(t, qfile, duration, 20000)
			if err != nil {
				return err
			}
			lat[t.name] = append(lat[t.name], res)
			fmt.Printf("  %-5s run %d: %s\n", t.name, r+1, res)
		}
	}

	// Live: weft's DNS follows a real master while changes land on it.
	fmt.Printf("live (%.0f task changes/s on a real master, raft on disk; weft's dns follows it through api.Watcher, NSD serves the static zone; saturation):\n", rate)
	lv, err := startLive(apps)
	if err != nil {
		return err
	}
	liveTargets := []target{{"nsd", nsdAddr, nsd.Process.Pid}, {"weft", lv.srv.Addrs()[0], os.Getpid()}}
	lv.drive(rate)
	live := map[string][]result{}
	for r := 0; r < runs; r++ {
		for _, t := range order(liveTargets, r) {
			before := lv.srv.Status().Index
			sent := lv.sent.Load()
			res, err := measure(t, qfile, duration, 0)
			if err != nil {
				return err
			}
			live[t.name] = append(live[t.name], res)
			extra := ""
			if t.name == "weft" {
				extra = fmt.Sprintf("  (table index %d -> %d, %d changes accepted meanwhile)", before, lv.srv.Status().Index, lv.sent.Load()-sent)
			}
			fmt.Printf("  %-5s run %d: %s%s\n", t.name, r+1, res, extra)
		}
	}
	lv.stopDriving()
	caught := lv.caughtUp(2 * time.Second)
	if caught != nil {
		fmt.Printf("  weft's dns did not catch up with the master: %v\n", caught)
	}
	changeErrs := lv.errs.Load()
	if changeErrs > 0 {
		fmt.Printf("  %d changes failed on the master: %v\n", changeErrs, lv.errMsg.Load())
	}
	fmt.Printf("  %d changes accepted by the master in all\n", lv.sent.Load())
	lv.stop()

	wq, nq := median(sat["weft"], qps), median(sat["nsd"], qps)
	wl, nl := median(lat["weft"], avgLat), median(lat["nsd"], avgLat)
	wc, nc := median(lat["weft"], cpuPerQuery), median(lat["nsd"], cpuPerQuery)
	lq, lnq := median(live["weft"], qps), median(live["nsd"], qps)
	lost, liveLost := 0, 0
	for _, r := range append(sat["weft"], lat["weft"]...) {
		lost += r.lost
	}
	for _, r := range live["weft"] {
		liveLost += r.lost
	}
	fmt.Printf("\nmedians (weft / nsd): QPS %.2f (%.0f / %.0f), avg latency at 20k QPS %.2fx (%.3f / %.3f ms), server CPU/query at 20k %.2fx (%.1f / %.1f us), QPS under changes %.2f (%.0f / %.0f)\n",
		wq/nq, wq, nq, wl/nl, wl*1000, nl*1000, wc/nc, wc*1e6, nc*1e6, lq/lnq, lq, lnq)
	fmt.Printf("load average at end: %s\n", loadavg())
	const nsdPeer = "NSD (same zone, same dnsperf, alternating runs, medians)"
	benchkit.EmitRow(benchkit.Row{Bench: "dns", Figure: "QPS at saturation (right rcodes only)", Weft: fmt.Sprintf("%.0f", wq), Peer: nsdPeer, PeerValue: fmt.Sprintf("%.0f", nq), Ratio: wq / nq, Target: "≥ 1.0× with 0 lost", Met: wq/nq >= 1.0 && lost == 0})
	benchkit.EmitRow(benchkit.Row{Bench: "dns", Figure: "server CPU per query at 20k QPS", Weft: fmt.Sprintf("%.1f µs", wc*1e6), Peer: nsdPeer, PeerValue: fmt.Sprintf("%.1f µs", nc*1e6), Ratio: wc / nc, Target: "≤ 1.2×", Met: wc/nc <= 1.2})
	benchkit.EmitRow(benchkit.Row{Bench: "dns", Figure: fmt.Sprintf("QPS while %.0f task changes/s land on a real master (weft follows them live; NSD serves a static zone of the same names, it cannot change its zone without a reload)", rate),
		Weft: fmt.Sprintf("%.0f", lq), Peer: nsdPeer, PeerValue: fmt.Sprintf("%.0f", lnq), Ratio: lq / lnq, Target: "≥ 1.0× with 0 lost, weft caught up with every change",
		Met: lq/lnq >= 1.0 && liveLost == 0 && caught == nil && changeErrs == 0})
	fmt.Printf("SUMMARY dns: QPS %.2fx NSD (lost %d), CPU/query at 20k %.2fx NSD (target <= 1.2), QPS under %.0f changes/s %.2fx NSD (lost %d)\n",
		wq/nq, lost, wc/nc, rate, lq/lnq, liveLost)
	return nil
}

type target struct {
	name string
	addr string
	pid  int
}

// order alternates which server goes first, round by round.
func order(ts []target, round int) []target {
	if round%2 == 0 {
		return ts
	}
	return []target{ts[1], ts[0]}
}

// measure is a warm-up run, then the measured run, then a pause.
func measure(t target, qfile string, d time.Duration, rate int) (result, error) {
	if warmupRun > 0 {
		if _, err := dnsperf(t.addr, qfile, warmupRun, rate, t.pid); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	res, err := dnsperf(t.addr, qfile, d, rate, t.pid)
	time.Sleep(time.Second)
	return res, err
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func nsdVersion() string {
	out, _ := exec.Command("nsd", "-v").CombinedOutput()
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return f[2]
	}
	return "?"
}

func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			l.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port")
}

func waitAnswer(addr, name string) error {
	c := &mdns.Client{Timeout: 200 * time.Millisecond}
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	var err error
	for i := 0; i < 50; i++ {
		var r *mdns.Msg
		if r, _, err = c.Exchange(m, addr); err == nil && len(r.Answer) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// writeQueries writes n queries and returns the share of them whose
// answer must be NXDOMAIN (the rest must be NOERROR).
func writeQueries(path string, apps, n int) (float64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	nx := 0
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i++ {
		x := rng.IntN(1000)
		a := rng.IntN(apps)
		switch {
		case x < 700:
			fmt.Fprintf(w, "app-%d.marathon.pcm A\n", a)
		case x < 900:
			fmt.Fprintf(w, "_app-%d._tcp.marathon.pcm SRV\n", a)
		default:
			nx++
			fmt.Fprintf(w, "nope-%d.marathon.pcm A\n", rng.IntN(100000))
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return float64(nx) / float64(n), f.Close()
}

type result struct {
	qps, avgLat, maxLat float64 // qps counts only answers with the right rcode
	lost                int
	cpu                 float64 // server CPU seconds during the run
	sent                int
	rcodes              map[string]int // dnsperf's "Response codes" line
	nxShare             float64        // NXDOMAIN / (NOERROR + NXDOMAIN)
}

func (r result) String() string {
	return fmt.Sprintf("%8.0f QPS  lost %d  avg %.3f ms  max %.2f ms  server CPU %.0f%% core, %.1f us/query  NXDOMAIN %.1f%%",
		r.qps, r.lost, r.avgLat*1000, r.maxLat*1000, 100*r.cpu/r.dur(), 1e6*cpuPerQuery(r), 100*r.nxShare)
}

func (r result) dur() float64 {
	if r.qps == 0 {
		return 1
	}
	return float64(r.sent) / r.qps
}

func qps(r result) float64         { return r.qps }
func avgLat(r result) float64      { return r.avgLat }
func cpuPerQuery(r result) float64 { return r.cpu / float64(max(r.sent, 1)) }

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, 0, len(rs))
	for _, r := range rs {
		v = append(v, f(r))
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

var (
	reQPS  = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	reLost = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reSent = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reAvg  = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+) \(min [\d.]+, max ([\d.]+)\)`)
	reCode = regexp.MustCompile(`([A-Z]+) (\d+) \([\d.]+%\)`)
)

// expectNX is the share of the query file that must get NXDOMAIN.
var expectNX float64

// checkRcodes counts only NOERROR and NXDOMAIN answers as throughput, in
// the split the query file asks for: any other rcode (SERVFAIL, REFUSED,
// FORMERR...) or a split more than one point off the file's is an error,
// never throughput.
func checkRcodes(r *result, out string) error {
	i := strings.Index(out, "Response codes:")
	if i < 0 {
		return fmt.Errorf("dnsperf printed no response codes:\n%s", out)
	}
	line := out[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	r.rcodes = map[string]int{}
	total := 0
	for _, m := range reCode.FindAllStringSubmatch(line, -1) {
		n, _ := strconv.Atoi(m[2])
		r.rcodes[m[1]] += n
		total += n
	}
	good := r.rcodes["NOERROR"] + r.rcodes["NXDOMAIN"]
	if total == 0 || good == 0 {
		return fmt.Errorf("no answers: %s", line)
	}
	r.qps *= float64(good) / float64(total)
	r.nxShare = float64(r.rcodes["NXDOMAIN"]) / float64(good)
	if good != total {
		return fmt.Errorf("wrong rcodes (only NOERROR and NXDOMAIN are right for this zone): %s", line)
	}
	if d := r.nxShare - expectNX; d > 0.01 || d < -0.01 {
		return fmt.Errorf("NXDOMAIN share %.2f%%, the query file asks for %.2f%%: %s", 100*r.nxShare, 100*expectNX, line)
	}
	return nil
}

func dnsperf(addr, qfile string, d time.Duration, rate int, pid int) (result, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-s", host, "-p", port, "-d", qfile, "-l", strconv.Itoa(max(1, int(d.Seconds()))), "-c", "4"}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate))
	}
	cpuOf := cpuSeconds
	if pid == os.Getpid() {
		cpuOf = procCPU // weft runs in this process; nsd and dnsperf are its children
	}
	before := cpuOf(pid)
	out, err := exec.Command("dnsperf", args...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("dnsperf: %w\n%s", err, out)
	}
	cpu := cpuOf(pid) - before
	s := string(out)
	var r result
	if m := reQPS.FindStringSubmatch(s); m != nil {
		r.qps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reLost.FindStringSubmatch(s); m != nil {
		r.lost, _ = strconv.Atoi(m[1])
	}
	if m := reSent.FindStringSubmatch(s); m != nil {
		r.sent, _ = strconv.Atoi(m[1])
	}
	if m := reAvg.FindStringSubmatch(s); m != nil {
		r.avgLat, _ = strconv.ParseFloat(m[1], 64)
		r.maxLat, _ = strconv.ParseFloat(m[2], 64)
	}
	r.cpu = cpu
	if r.qps == 0 {
		return r, fmt.Errorf("dnsperf output not understood:\n%s", s)
	}
	if err := checkRcodes(&r, s); err != nil {
		return r, fmt.Errorf("server at %s: %w", addr, err)
	}
	return r, nil
}

// cpuSeconds is utime+stime of a process (all threads) and its children
// (nsd serves from a forked process).
func cpuSeconds(pid int) float64 {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			parent[p] = ppid(p)
		}
	}
	total := 0.0
	for p := range parent {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				total += procCPU(p)
				break
			}
		}
	}
	return total
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ
}

// source serves the saturation and fixed-rate phases a fixed state through
// a blocking query (the live phase follows a real master instead).
type source struct {
	mu      sync.Mutex
	st      *api.State
	changed chan struct{}
}

func (s *source) Watch(ctx context.Context, after uint64, wait time.Duration) (*api.State, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		st, ch := s.st, s.changed
		s.mu.Unlock()
		if st.Index > after {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		case <-t.C:
			return st, nil
		}
	}
}
