// Command assignments measures what one agent's assignment long poll costs
// per change: a master (sched.Master, raft on disk, in this process) holds
// -tasks tasks on one agent, shaped as Marathon tasks usually are (a
// command, env, ports, a health check), while -rate task changes per second
// land on that agent (a task flips between TASK_RUNNING and TASK_KILLED,
// one store write each, as the agent's status update makes). An agent-like
// client holds the long poll over real HTTP, in alternating rounds of two
// modes, side by side in the same run:
//   - delta: GET /v1/agents/{id}/assignments?delta=true, applied to an
//     api.AssignmentMirror (what the agent does now);
//   - whole: the same query without delta=true, the whole list on every
//     change (what the agent did before).
//
// Per mode: bytes the agent reads per change (headers included), and the
// time from just before a change is sent to the store to when the agent
// has an answer at or past its index (p50, p99), and the CPU this process
// (master and agent client together, gzip both ways: the client accepts it
// as the agent's does) uses per change. Target: ≤ 5 KB per change
// (the change, not the agent's whole list).
//
//	go run ./bench/assignments [-tasks 500 -rate 10 -round 10s -rounds 4]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/bench/internal/benchmaster"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

const agentID = "agent-0001"

func main() {
	tasks := flag.Int("tasks", 500, "tasks on the agent")
	rate := flag.Float64("rate", 10, "task changes per second")
	round := flag.Duration("round", 10*time.Second, "length of one measured round")
	rounds := flag.Int("rounds", 4, "rounds, alternating delta and whole (even: as many of each)")
	flag.Parse()
	benchkit.CleanupOnSignal()
	benchkit.Exit(run(*tasks, *rate, *round, *rounds))
}

func run(tasks int, rate float64, round time.Duration, rounds int) int {
	dir, err := benchkit.TempDir("weft-assignments-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	node := api.Node{ID: agentID, Name: agentID, Role: api.RoleAgent, Status: sched.NodeAlive, Address: "10.0.0.1", OverlayIP: "10.47.0.1",
		Resources: api.Resources{Cpus: 64, Mem: 262144, Disk: 1000000, Ports: []api.PortRange{{Begin: 31000, End: 32000}}}}
	ctx, cancel := context.WithCancel(context.Background())
	benchkit.AtExit(cancel)
	m, ln, err := benchmaster.Start(ctx, dir, node)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: m.Handler()}
	go func() { _ = srv.Serve(ln) }()
	benchkit.AtExit(func() { _ = srv.Close() })

	// The agent's tasks.
	var ids []string
	recs := map[string]*sched.TaskRecord{}
	var ops []sched.Op
	for i := range tasks {
		app := fmt.Sprintf("/team-%02d/service-%04d", i%50, i)
		tid := fmt.Sprintf("team-%02d_service-%04d.%08d-0000-4000-8000-%012d", i%50, i, i, i)
		cmd := "./server --port $PORT0 --name service-" + fmt.Sprint(i)
		rec := &sched.TaskRecord{Goal: api.GoalRun,
			Task: api.Task{ID: tid, AppID: app, Host: node.Address, SlaveID: agentID, State: api.TaskRunning,
				StagedAt: "2026-12-01T10:00:01.000Z", StartedAt: "2026-12-01T10:00:02.000Z", Version: "2026-12-01T10:00:00.000Z",
				Ports: []int{31000 + i}, ServicePorts: []int{10000 + i}, IPAddresses: []api.IPAddress{{IPAddress: node.OverlayIP, Protocol: "IPv4"}},
				HealthCheckResults: []api.HealthCheckResult{}, Framework: "marathon"},
			Spec: api.TaskSpec{Cmd: &cmd, Env: map[string]string{"MARATHON_APP_ID": app, "MARATHON_APP_VERSION": "2026-12-01T10:00:00.000Z", "LOG_LEVEL": "info"},
				Resources: api.Resources{Cpus: 0.1, Mem: 128, Disk: 0}, Ports: []int{31000 + i},
				HealthChecks: []api.HealthCheck{{Protocol: "HTTP", Path: "/health", GracePeriodSeconds: 300, IntervalSeconds: 60, TimeoutSeconds: 20, MaxConsecutiveFailures: 3}}},
		}
		recs[tid] = rec
		ids = append(ids, tid)
		ops = append(ops, sched.Put(sched.TableTasks, tid, rec))
		if len(ops) == 250 || i == tasks-1 {
			if _, err := m.Store().Apply(ctx, ops); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			ops = ops[:0]
		}
	}
	next := 0
	change := func() (uint64, error) {
		tid := ids[next%len(ids)]
		next++
		rec := *recs[tid]
		if rec.Task.State == api.TaskRunning {
			rec.Task.State, rec.Task.Message = api.TaskKilled, "killed by the assignments bench"
		} else {
			rec.Task.State, rec.Task.Message = api.TaskRunning, ""
		}
		rec.Task.StartedAt = time.Now().UTC().Format(time.RFC3339Nano)
		recs[tid] = &rec
		return m.Store().Apply(ctx, []sched.Op{sched.Put(sched.TableTasks, tid, &rec)})
	}

	var read atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, n: &read}, nil
	}}
	cl := api.NewClient("http://" + ln.Addr().String())
	cl.HTTP, cl.Stream = &http.Client{Transport: tr}, &http.Client{Transport: tr}
	fmt.Printf("assignments: one agent with %d tasks, %.0f changes/s, raft on disk, load %s\n", tasks, rate, benchkit.LoadAvg())

	type result struct {
		mode     string
		perChg   float64
		cpuPer   time.Duration
		p50, p99 time.Duration
		samples  int
	}
	var results []result
	for r := range rounds {
		mode := "delta"
		if r%2 == 1 {
			mode = "whole"
		}
		// The agent's poll.
		rctx, rcancel := context.WithCancel(ctx)
		var mu sync.Mutex
		var got []answer
		var mirror api.AssignmentMirror
		var pollErr error
		first := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var after uint64
			for rctx.Err() == nil {
				var as *api.Assignments
				var err error
				if mode == "delta" {
					as, err = cl.AssignmentChanges(rctx, agentID, after, 30*time.Second)
				} else {
					as, err = cl.Assignments(rctx, agentID, after, 30*time.Second)
				}
				if err != nil {
					if rctx.Err() == nil {
						pollErr = err
					}
					return
				}
				if mode == "delta" {
					mirror.Apply(as)
					as = mirror.Assignments()
				}
				if len(as.Tasks) != tasks {
					pollErr = fmt.Errorf("the agent holds %d tasks, want %d", len(as.Tasks), tasks)
					return
				}
				now := time.Now()
				mu.Lock()
				if after == 0 {
					close(first)
				}
				got = append(got, answer{index: as.Index, at: now})
				mu.Unlock()
				after = as.Index
			}
		}()
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "no first answer in 30 s:", pollErr)
			rcancel()
			return 1
		}
		time.Sleep(200 * time.Millisecond)
		bytes0, cpu0 := read.Load(), benchkit.CPUTime(os.Getpid())
		var sent []answer
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		end := time.Now().Add(round)
		for time.Now().Before(end) {
			<-tick.C
			at := time.Now()
			idx, err := change()
			if err != nil {
				fmt.Fprintln(os.Stderr, "change:", err)
				tick.Stop()
				rcancel()
				return 1
			}
			sent = append(sent, answer{index: idx, at: at})
		}
		tick.Stop()
		// Let the last change arrive.
		last := sent[len(sent)-1].index
		_ = benchkit.Eventually(5*time.Second, 5*time.Millisecond, "the last change reaches the agent", func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) > 0 && got[len(got)-1].index >= last {
				return nil
			}
			return fmt.Errorf("behind")
		})
		bytes, cpu := read.Load()-bytes0, benchkit.CPUTime(os.Getpid())-cpu0
		rcancel()
		<-done
		if pollErr != nil {
			fmt.Fprintln(os.Stderr, mode+":", pollErr)
			return 1
		}
		var lat []time.Duration
		missing := 0
		mu.Lock()
		for _, s := range sent {
			i := sort.Search(len(got), func(i int) bool { return got[i].index >= s.index })
			if i == len(got) {
				missing++
				continue
			}
			lat = append(lat, got[i].at.Sub(s.at))
		}
		mu.Unlock()
		if missing > 0 {
			fmt.Fprintf(os.Stderr, "%s: %d of %d changes never reached the agent\n", mode, missing, len(sent))
			return 1
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res := result{mode: mode, perChg: float64(bytes) / float64(len(sent)), cpuPer: cpu / time.Duration(len(sent)), p50: benchkit.Percentile(lat, 50), p99: benchkit.Percentile(lat, 99), samples: len(lat)}
		fmt.Printf("round %d %-5s: %d changes, %.0f B per change, %v CPU per change, change → agent p50 %v p99 %v, load %s\n",
			r, mode, len(sent), res.perChg, res.cpuPer, res.p50.Round(time.Microsecond), res.p99.Round(time.Microsecond), benchkit.LoadAvg())
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
	bD, bW := med("delta", func(r result) float64 { return r.perChg }), med("whole", func(r result) float64 { return r.perChg })
	pD, pW := med("delta", func(r result) float64 { return float64(r.p99) }), med("whole", func(r result) float64 { return float64(r.p99) })
	cD, cW := med("delta", func(r result) float64 { return float64(r.cpuPer) }), med("whole", func(r result) float64 { return float64(r.cpuPer) })
	peer := "the whole assignment list on every change (the same query without delta=true), alternating rounds"
	met := bD <= 5000 && time.Duration(pD) <= time.Second && cD < cW
	benchkit.EmitRow(benchkit.Row{Bench: "assignments", Figure: fmt.Sprintf("bytes to an agent per change (%d tasks on it, %.0f changes/s)", tasks, rate),
		Weft: fmt.Sprintf("%.2f KB", bD/1000), Peer: peer, PeerValue: fmt.Sprintf("%.1f KB", bW/1000), Ratio: ratio(bD, bW), Target: "≤ 5 KB", Met: met})
	benchkit.EmitRow(benchkit.Row{Bench: "assignments", Figure: "change → agent has it, p99",
		Weft: time.Duration(pD).Round(time.Microsecond).String(), Peer: peer, PeerValue: time.Duration(pW).Round(time.Microsecond).String(), Ratio: ratio(pD, pW),
		Target: "≤ 1 s", Met: time.Duration(pD) <= time.Second})
	benchkit.EmitRow(benchkit.Row{Bench: "assignments", Figure: "CPU per change, master and agent client (one process)",
		Weft: time.Duration(cD).Round(time.Microsecond).String(), Peer: peer, PeerValue: time.Duration(cW).Round(time.Microsecond).String(), Ratio: ratio(cD, cW),
		Target: "< the whole list's", Met: cD < cW})
	verdict := "MET"
	if !met {
		verdict = "NOT MET"
	}
	fmt.Printf("SUMMARY assignments %s: %d tasks on one agent: %.2f KB per change as deltas, %.1f KB as whole lists (%.4f×); change → agent p99 %v (whole %v); CPU per change %v (whole %v); target ≤ 5 KB\n",
		verdict, tasks, bD/1000, bW/1000, ratio(bD, bW), time.Duration(pD).Round(time.Microsecond), time.Duration(pW).Round(time.Microsecond), time.Duration(cD).Round(time.Microsecond), time.Duration(cW).Round(time.Microsecond))
	if !met {
		return 1
	}
	return 0
}

type answer struct {
	index uint64
	at    time.Time
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// countingConn counts the bytes read off a connection: what the master
// sent to the agent.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}
