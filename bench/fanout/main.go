// Command fanout measures what the master pays to keep every node's view of
// the cluster current: -nodes simulated nodes (one process, one HTTP client
// and one TCP connection each) hold a real watch of a real master
// (sched.Master with raft on disk, in a child process of its own so its CPU
// is its own), with -apps apps × -tasks tasks in the state, while -rate
// task changes per second land (a task flips between TASK_RUNNING and
// TASK_KILLED, one store write each, as an agent's status update makes).
//
// Two watches run side by side, in alternating rounds:
//   - changes: GET /v1/state/changes (a snapshot once, then only what
//     changed; gzip accepted), each answer decoded whole as a node's
//     api.Watcher decodes it (the nodes keep only its index and nodes hash:
//     a thousand whole copies of the state would not fit beside the rest);
//   - whole: GET /v1/state as dns and lb polled it before (the whole state
//     on every change, uncompressed: Accept-Encoding identity), the body read
//     to its end.
//
// Per mode: the master's egress per change per node (bytes the nodes read
// off their connections, headers included, over the changes of the round
// and the nodes), the master's CPU (its /proc/PID/stat over the round, in
// cores), and staleness (from just before a change is sent to the master
// to when a node has an answer at or past its index; p50/p99 over every
// node and change). Targets: ≤ 5 KB per change per node, ≤ 1 core,
// p99 ≤ 1 s; the whole-state ratio is from the same run.
//
//	go run ./bench/fanout [-nodes 1000 -apps 1000 -tasks 3 -rate 10 -round 10s -rounds 4]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/bench/internal/benchmaster"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

const childEnv = "WEFT_FANOUT_MASTER"

func main() {
	nodes := flag.Int("nodes", 1000, "simulated nodes, each with its own watch")
	apps := flag.Int("apps", 1000, "apps in the state")
	tasks := flag.Int("tasks", 3, "tasks per app")
	rate := flag.Float64("rate", 10, "task changes per second")
	round := flag.Duration("round", 10*time.Second, "length of one measured round")
	rounds := flag.Int("rounds", 4, "rounds, alternating changes and whole (even: as many of each)")
	warmup := flag.Duration("warmup", 3*time.Second, "changes before each round's measurement starts")
	flag.Parse()
	if os.Getenv(childEnv) != "" {
		if err := serveMaster(*nodes, *apps, *tasks); err != nil {
			fmt.Fprintln(os.Stderr, "fanout master:", err)
			os.Exit(1)
		}
		return
	}
	benchkit.CleanupOnSignal()
	code := run(*nodes, *apps, *tasks, *rate, *round, *rounds, *warmup)
	benchkit.Exit(code)
}

// serveMaster is the child: a master with raft on disk, the state filled,
// and /bench/change that flips one task and answers its store index.
func serveMaster(nodes, apps, tasks int) error {
	dir, err := os.MkdirTemp("", "weft-fanout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var members []api.Node
	for i := range nodes {
		id := fmt.Sprintf("node-%04d", i)
		members = append(members, api.Node{ID: id, Name: id, Role: api.RoleAgent, Status: sched.NodeAlive, Site: fmt.Sprintf("site-%d", i%3),
			Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), OverlayIP: fmt.Sprintf("10.47.%d.%d", i/250, i%250+1),
			Resources: api.Resources{Cpus: 8, Mem: 16384, Disk: 100000, Ports: []api.PortRange{{Begin: 31000, End: 32000}}}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, ln, err := benchmaster.Start(ctx, dir, members...)
	if err != nil {
		return err
	}
	// The state: apps with the fields a Marathon app usually has, tasks
	// running on the nodes.
	var ids []string
	recs := map[string]*sched.TaskRecord{}
	var ops []sched.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := m.Store().Apply(ctx, ops)
		ops = ops[:0]
		return err
	}
	cmd := "./server --port $PORT0"
	for a := range apps {
		id := fmt.Sprintf("/team-%02d/service-%04d", a%50, a)
		app := &api.App{ID: id, Cmd: &cmd, Instances: tasks, Cpus: 0.1, Mem: 128, Version: "2026-12-01T10:00:00.000Z",
			Labels:          map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": fmt.Sprintf("service-%04d.example.com", a)},
			PortDefinitions: []api.PortDefinition{{Port: 10000 + a, Protocol: "tcp", Name: "http"}}}
		ops = append(ops, sched.Put(sched.TableApps, id, app))
		for t := range tasks {
			n := members[(a*tasks+t)%len(members)]
			tid := fmt.Sprintf("team-%02d_service-%04d.%08d-0000-4000-8000-%012d", a%50, a, t, a)
			rec := &sched.TaskRecord{Goal: api.GoalRun, Task: api.Task{ID: tid, AppID: id, Host: n.Address, SlaveID: n.ID, State: api.TaskRunning,
				StagedAt: "2026-12-01T10:00:01.000Z", StartedAt: "2026-12-01T10:00:02.000Z", Version: app.Version,
				Ports: []int{31000 + t}, ServicePorts: []int{10000 + a}, IPAddresses: []api.IPAddress{{IPAddress: n.OverlayIP, Protocol: "IPv4"}},
				HealthCheckResults: []api.HealthCheckResult{}, Framework: "marathon", Site: n.Site}}
			recs[tid] = rec
			ids = append(ids, tid)
			ops = append(ops, sched.Put(sched.TableTasks, tid, rec))
		}
		if len(ops) >= 300 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	var mu sync.Mutex
	next := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /bench/change", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tid := ids[next%len(ids)]
		next++
		old := recs[tid]
		rec := *old
		if rec.Task.State == api.TaskRunning {
			rec.Task.State, rec.Task.Message = api.TaskKilled, "killed by the fan-out bench"
		} else {
			rec.Task.State, rec.Task.Message = api.TaskRunning, ""
		}
		rec.Task.StartedAt = time.Now().UTC().Format(time.RFC3339Nano)
		recs[tid] = &rec
		mu.Unlock()
		idx, err := m.Store().Apply(r.Context(), []sched.Op{sched.Put(sched.TableTasks, tid, &rec)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d\n", idx)
	})
	mux.Handle("/", m.Handler())
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("LISTEN %s\n", ln.Addr())
	// The parent closes stdin when it is done.
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	return nil
}

// countingConn counts the bytes read off a connection: what the master
// sent to this node.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// simNode is one simulated node: its own connection, its own watch.
type simNode struct {
	http *http.Client
	api  *api.Client
}

// commits is the index and send time of every change, in order.
type commits struct {
	mu  sync.Mutex
	idx []uint64
	at  []time.Time
}

func (c *commits) add(idx uint64, at time.Time) {
	c.mu.Lock()
	c.idx, c.at = append(c.idx, idx), append(c.at, at)
	c.mu.Unlock()
}

// position is where a simulated node's change watch is.
type position struct {
	index     uint64
	nodesHash string
}

// answer is when a node got an answer at index.
type answer struct {
	index uint64
	at    time.Time
}

type result struct {
	mode                  string
	changes               int
	bytesPerChangePerNode float64
	cores                 float64
	p50, p99              time.Duration
	samples, missing      int
}

func run(nodes, apps, tasks int, rate float64, round time.Duration, rounds int, warmup time.Duration) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	child := exec.Command(self, flagArgs(nodes, apps, tasks)...)
	child.Env = append(os.Environ(), childEnv+"=1")
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	benchkit.AtExit(func() { _ = stdin.Close(); _ = child.Process.Kill(); _ = child.Wait() })
	var addr string
	if _, err := fmt.Fscanf(stdout, "LISTEN %s\n", &addr); err != nil {
		fmt.Fprintln(os.Stderr, "the master child did not start:", err)
		return 1
	}
	base := "http://" + addr
	fmt.Printf("fanout: master pid %d at %s, %d nodes, %d apps × %d tasks, %.0f changes/s, load %s\n", child.Process.Pid, base, nodes, apps, tasks, rate, benchkit.LoadAvg())

	var egress atomic.Int64
	sims := make([]*simNode, nodes)
	for i := range sims {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: c, n: &egress}, nil
		}}
		hc := &http.Client{Transport: tr}
		cl := api.NewClient(base)
		cl.Stream, cl.HTTP = hc, hc
		sims[i] = &simNode{http: hc, api: cl}
	}

	var results []result
	for r := range rounds {
		mode := "changes"
		if r%2 == 1 {
			mode = "whole"
		}
		res, err := runRound(mode, base, sims, rate, round, warmup, child.Process.Pid, &egress)
		if err != nil {
			fmt.Fprintln(os.Stderr, "round", r, mode+":", err)
			return 1
		}
		fmt.Printf("round %d %-7s: %d changes, %.0f B/change/node, master %.2f cores, staleness p50 %v p99 %v (%d samples, %d nodes behind at the end), load %s\n",
			r, mode, res.changes, res.bytesPerChangePerNode, res.cores, res.p50.Round(time.Millisecond), res.p99.Round(time.Millisecond), res.samples, res.missing, benchkit.LoadAvg())
		results = append(results, res)
	}
	med := func(mode string, f func(result) float64) float64 {
		var v []float64
		for _, r := range results {
			if r.mode == mode {
				v = append(v, f(r))
			}
		}
		sort.Float64s(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	}
	bytesC, bytesW := med("changes", func(r result) float64 { return r.bytesPerChangePerNode }), med("whole", func(r result) float64 { return r.bytesPerChangePerNode })
	cpuC, cpuW := med("changes", func(r result) float64 { return r.cores }), med("whole", func(r result) float64 { return r.cores })
	p99C, p99W := med("changes", func(r result) float64 { return float64(r.p99) }), med("whole", func(r result) float64 { return float64(r.p99) })
	peer := "today's whole-state watch (GET /v1/state, uncompressed), alternating rounds"
	ok := true
	emit := func(figure, weft, peerV string, ratio float64, target string, met bool) {
		ok = ok && met
		benchkit.EmitRow(benchkit.Row{Bench: "fanout", Figure: figure, Weft: weft, Peer: peer, PeerValue: peerV, Ratio: ratio, Target: target, Met: met})
	}
	emit(fmt.Sprintf("master egress per change per node (%d nodes, %d apps × %d tasks, %.0f changes/s)", nodes, apps, tasks, rate),
		fmt.Sprintf("%.2f KB", bytesC/1000), fmt.Sprintf("%.1f KB", bytesW/1000), ratioOf(bytesC, bytesW), "≤ 5 KB", bytesC <= 5000)
	emit("master CPU (cores)", fmt.Sprintf("%.2f", cpuC), fmt.Sprintf("%.2f", cpuW), ratioOf(cpuC, cpuW), "≤ 1 core", cpuC <= 1)
	emit("staleness p99, change sent → node has it", time.Duration(p99C).Round(time.Millisecond).String(), time.Duration(p99W).Round(time.Millisecond).String(),
		ratioOf(p99C, p99W), "≤ 1 s", time.Duration(p99C) <= time.Second)
	verdict := "MET"
	if !ok {
		verdict = "NOT MET"
	}
	fmt.Printf("SUMMARY fanout %s: %d nodes, %.0f changes/s: %.2f KB per change per node (whole state %.1f KB, %.4f×), master %.2f cores (whole %.2f), staleness p99 %v (whole %v); targets ≤ 5 KB, ≤ 1 core, ≤ 1 s\n",
		verdict, nodes, rate, bytesC/1000, bytesW/1000, ratioOf(bytesC, bytesW), cpuC, cpuW, time.Duration(p99C).Round(time.Millisecond), time.Duration(p99W).Round(time.Millisecond))
	if !ok {
		return 1
	}
	return 0
}

func ratioOf(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func flagArgs(nodes, apps, tasks int) []string {
	return []string{"-nodes", strconv.Itoa(nodes), "-apps", strconv.Itoa(apps), "-tasks", strconv.Itoa(tasks)}
}

// runRound starts every node's watch in mode, drives changes for warmup
// and then round, and measures the round.
func runRound(mode, base string, sims []*simNode, rate float64, round, warmup time.Duration, pid int, egress *atomic.Int64) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cm commits
	var measuring atomic.Bool
	// seen[i] is when node i got each answer (its index), for staleness
	// worked out at the end: a node may have an answer before the change's
	// own answer came back to the bench.
	seen := make([][]answer, len(sims))
	var synced sync.WaitGroup
	var wg sync.WaitGroup
	last := make([]atomic.Uint64, len(sims))
	var failures atomic.Int64
	firstSem := make(chan struct{}, 8)
	for i, sn := range sims {
		synced.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mirror position
			var after uint64
			first := true
			for ctx.Err() == nil {
				if first {
					// The first answers are whole states: a few at a time,
					// so a thousand of them are not decoded at once.
					firstSem <- struct{}{}
				}
				idx, err := watchOnce(ctx, mode, base, sn, &mirror, after)
				if first {
					<-firstSem
				}
				if err != nil {
					if ctx.Err() == nil {
						failures.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				if measuring.Load() && idx > after {
					seen[i] = append(seen[i], answer{idx, time.Now()})
				}
				after = idx
				last[i].Store(idx)
				if first {
					first = false
					synced.Done()
				}
			}
		}()
	}
	synced.Wait() // every node has its first answer (a snapshot)
	// Changes at rate: each one sent to the master, its index kept.
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	post := &http.Client{Timeout: 10 * time.Second}
	change := func() error {
		at := time.Now()
		resp, err := post.Post(base+"/bench/change", "text/plain", nil)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("change: %d %s", resp.StatusCode, b)
		}
		idx, err := strconv.ParseUint(string(trimNL(b)), 10, 64)
		if err != nil {
			return err
		}
		if measuring.Load() {
			cm.add(idx, at)
		}
		return nil
	}
	warmEnd := time.Now().Add(warmup)
	for time.Now().Before(warmEnd) {
		<-tick.C
		if err := change(); err != nil {
			return result{}, err
		}
	}
	bytes0, cpu0, t0 := egress.Load(), benchkit.CPUTime(pid), time.Now()
	failures.Store(0)
	measuring.Store(true)
	n := 0
	for time.Since(t0) < round {
		<-tick.C
		if err := change(); err != nil {
			return result{}, err
		}
		n++
	}
	// Let the nodes catch up with the last change (up to 5 s), then stop.
	cm.mu.Lock()
	lastIdx := cm.idx[len(cm.idx)-1]
	cm.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	behind := 0
	for {
		behind = 0
		for i := range last {
			if last[i].Load() < lastIdx {
				behind++
			}
		}
		if behind == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	bytes1, cpu1 := egress.Load(), benchkit.CPUTime(pid)
	measuring.Store(false)
	cancel()
	for _, sn := range sims {
		sn.http.Transport.(*http.Transport).CloseIdleConnections()
	}
	wg.Wait()
	for _, sn := range sims {
		sn.http.Transport.(*http.Transport).CloseIdleConnections()
	}
	// Each change, each node: from sending it to the node's first answer at
	// or past its index. A change a node never saw counts as stale by the
	// whole round.
	var lat []time.Duration
	for k, idx := range cm.idx {
		for _, as := range seen {
			j := sort.Search(len(as), func(j int) bool { return as[j].index >= idx })
			if j < len(as) {
				lat = append(lat, as[j].at.Sub(cm.at[k]))
			} else {
				lat = append(lat, elapsed)
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if f := failures.Load(); f > 0 {
		fmt.Printf("round %s: %d failed watch queries\n", mode, f)
	}
	return result{mode: mode, changes: n, bytesPerChangePerNode: float64(bytes1-bytes0) / float64(n) / float64(len(sims)),
		cores: (cpu1 - cpu0).Seconds() / elapsed.Seconds(), p50: benchkit.Percentile(lat, 50), p99: benchkit.Percentile(lat, 99),
		samples: len(lat), missing: behind}, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// watchOnce is one blocking query of a node in mode; it returns the index
// the node is at afterwards.
func watchOnce(ctx context.Context, mode, base string, sn *simNode, pos *position, after uint64) (uint64, error) {
	if mode == "changes" {
		ch, err := sn.api.Changes(ctx, pos.index, pos.nodesHash, 30*time.Second)
		if err != nil {
			return 0, err
		}
		pos.index = ch.Index
		if ch.Nodes != nil {
			pos.nodesHash = ch.NodesHash
		}
		return pos.index, nil
	}
	// Today's watch: the whole state, uncompressed, on every change. The
	// body is read to its end; only its index is decoded (the nodes of the
	// bench do not build tables from it).
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/state?index=%d&wait=30s", base, after), nil)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := sn.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var head struct {
		Index uint64 `json:"index"`
	}
	dec := json.NewDecoder(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /v1/state: %d", resp.StatusCode)
	}
	// The index is the first key: read it with a token decoder, then
	// drain the rest.
	if err := readIndex(dec, &head.Index); err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, io.MultiReader(dec.Buffered(), resp.Body)); err != nil {
		return 0, err
	}
	return head.Index, nil
}

// readIndex reads `{"index":N` from the start of a state.
func readIndex(dec *json.Decoder, out *uint64) error {
	for range 3 {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if n, ok := tok.(json.Number); ok {
			v, err := strconv.ParseUint(string(n), 10, 64)
			*out = v
			return err
		}
		if f, ok := tok.(float64); ok {
			*out = uint64(f)
			return nil
		}
	}
	return fmt.Errorf("no index at the start of the state")
}
