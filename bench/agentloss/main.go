// Command agentloss measures how fast a killed agent's tasks run again
// elsewhere, as an operator sees it: a real `weft master` and 4 real
// `weft agent` processes on loopback (gossip only: --no-mesh), an app of
// 20 instances of `exec sleep 86400` (a day: the tasks must outlive the -lossy watch, or their own end reads as a false alarm) (process executor) spread over the
// agents, then `kill -9` of the agent running the most tasks. The clock
// runs from the kill until every instance is TASK_RUNNING on another agent
// (GET /v2/apps/{id} polled every 50 ms); the moment the master first shows
// the victim's tasks TASK_UNREACHABLE (the master's agent-loss detection:
// the agent hung up its assignments long poll and answers no gossip ping,
// or gossip calls it failed) is printed beside it. The killed agent's leftover task processes are killed
// by PID (each task writes its pid to a file), the agent is restarted with
// the same arguments and data dir, and the next round waits for a steady
// state (every agent alive, 20 tasks, all RUNNING, no deployment).
//
// With few rounds the p99 is the max (nearest rank).
//
// Target (issue #15): p99 ≤ 5 s over 20 rounds with weft's default
// unreachableStrategy.inactiveAfterSeconds (marathon.DefaultConfig's
// InactiveAfter, 2 s, counted from when the master finds the agent lost).
// Comparison points, quoted: Mesos 75 s, Nomad about 50 s, Kubernetes
// about 6 min.
//
// With -lossy D the bench instead checks for false alarms: agent a1 runs
// in its own network namespace behind a veth whose every packet, each
// way, is dropped with probability 5 % (iptables statistic match in that
// namespace; this kernel has no netem), for D. Every agent and the master
// then use addresses on that veth's host side. Any of a1's tasks that is
// not RUNNING, or a1 shown other than alive, is a false alarm; the target
// is none in 10 minutes.
//
//	go run ./bench/agentloss [-rounds 20 -agents 4 -instances 20]
//	go run ./bench/agentloss -lossy 10m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/marathon"
)

const target = 5 * time.Second

// Published figures (time until a lost node's work runs elsewhere, with
// their defaults). None of them ran here: they are quoted, labelled as
// such, and never printed as a ratio.
var peers = []struct {
	name string
	d    time.Duration
}{{"Mesos", 75 * time.Second}, {"Nomad", 50 * time.Second}, {"Kubernetes", 6 * time.Minute}}

var errBenchFailed = errors.New("target missed")

func main() {
	rounds := flag.Int("rounds", 20, "kill -9 / restart rounds")
	agents := flag.Int("agents", 4, "weft agent processes")
	instances := flag.Int("instances", 20, "instances of the app")
	lossy := flag.Duration("lossy", 0, "instead of kill rounds, drop 5 % of a1's packets each way for this long and count false alarms (the issue asks for 10m)")
	flag.Parse()
	cleanupOnSignal()
	if err := run(*rounds, *agents, *instances, *lossy); errors.Is(err, errBenchFailed) {
		exit(1)
	} else if err != nil {
		fmt.Printf("agentloss FAILED: %v\n", err)
		fmt.Printf("SUMMARY agentloss FAIL: %v\n", err)
		exit(1)
	}
	exit(0)
}

type cluster struct {
	dir, bin, pidDir string
	bins             map[string]string // an agent's program, when not bin
	c                *api.Client
	mu               sync.Mutex // agents: the cleanup may run on a signal
	agents           map[string]*proc
	args             map[string][]string
	starts           map[string]int
}

func (cl *cluster) startAgent(name string) error {
	cl.starts[name]++
	bin := cl.bin
	if b := cl.bins[name]; b != "" {
		bin = b
	}
	p, err := startProcNoStop(cl.dir, fmt.Sprintf("%s-%d", name, cl.starts[name]), bin, cl.args[name]...)
	if err != nil {
		return err
	}
	cl.mu.Lock()
	cl.agents[name] = p
	cl.mu.Unlock()
	stopIfExiting(p)
	return nil
}

func (cl *cluster) agent(name string) *proc {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.agents[name]
}

func run(rounds, nAgents, instances int, lossy time.Duration) error {
	inactive := marathon.DefaultConfig().InactiveAfter
	bin, err := weftBin()
	if err != nil {
		return err
	}
	dir, err := tempDir("weft-bench-agentloss-")
	if err != nil {
		return err
	}
	cl := &cluster{dir: dir, bin: bin, pidDir: filepath.Join(dir, "pids"),
		agents: map[string]*proc{}, args: map[string][]string{}, starts: map[string]int{}}
	if err := os.MkdirAll(cl.pidDir, 0o755); err != nil {
		return err
	}
	// Runs last: whatever the tasks left behind dies.
	atExit(func() {
		if k := killPidFiles(cl.pidDir); k > 0 {
			fmt.Printf("note: killed %d task processes left after the agents stopped\n", k)
		}
	})
	host := "127.0.0.1"
	var ln *lossyNet
	if lossy > 0 {
		if ln, err = newLossyNet(); err != nil {
			return fmt.Errorf("setting up a1's lossy link: %w", err)
		}
		atExit(ln.close)
		host = ln.hostIP
	}
	apiAddr := fmt.Sprintf("%s:%d", host, freePort())
	gossip := fmt.Sprintf("%s:%d", host, freePort())
	fmt.Printf("agentloss: weft master + %d weft agents (%s), app of %d × `exec sleep 86400`, %d rounds; inactiveAfterSeconds default %v; load average %s\n",
		nAgents, bin, instances, rounds, inactive, loadAvg())
	master, err := startProc(dir, "master", bin, "master", "--no-mesh", "--node-name", "m1", "--site", "bench",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", apiAddr, "--raft-addr", "",
		"--gossip-addr", gossip, "--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cl.c = api.NewClient(apiAddr)
	c := cl.c
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var names []string
	for i := 0; i < nAgents; i++ {
		name := fmt.Sprintf("a%d", i+1)
		names = append(names, name)
		ip := host
		var pre []string
		if ln != nil && name == "a1" {
			ip, pre = ln.nsIP, []string{"netns", "exec", ln.ns, bin}
		}
		cl.args[name] = append(pre, "agent", "--no-mesh", "--node-name", name, "--site", "bench",
			"--data-dir", filepath.Join(dir, name), "--join", gossip,
			"--gossip-addr", ip+":0", "--agent-addr", ip+":0",
			"--no-dns", "--no-lb", "--no-docker", "--cpus", "4", "--mem", "4096",
			"--ports", fmt.Sprintf("%d-%d", 32000+i*100, 32099+i*100))
		if pre != nil {
			cl.bins = map[string]string{name: "ip"}
		}
	}
	const id = "/bench/agentloss/web"
	// Runs before the master stops: delete the app while the agents run
	// (they stop its tasks), then stop the agents with Ctrl-C.
	atExit(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = c.DeleteApp(dctx, id, true)
		_ = eventually(20*time.Second, 200*time.Millisecond, "tasks gone", func() error {
			ts, err := c.Tasks(dctx)
			if err != nil {
				return err
			}
			if len(ts) > 0 {
				return fmt.Errorf("%d tasks", len(ts))
			}
			return nil
		})
		cl.mu.Lock()
		var ps []*proc
		for _, p := range cl.agents {
			ps = append(ps, p)
		}
		cl.mu.Unlock()
		for _, p := range ps {
			p.Stop(20 * time.Second)
		}
	})
	for _, name := range names {
		if err := cl.startAgent(name); err != nil {
			return err
		}
	}
	if err := eventually(60*time.Second, 100*time.Millisecond, "master with a leader and every agent alive", func() error {
		if master.Exited() {
			return fmt.Errorf("weft master exited:\n%s", master.LogTail(3000))
		}
		return cl.allAlive(ctx, names)
	}); err != nil {
		return err
	}

	// Spread the instances: MAX_PER hostname first, then lift the cap so a
	// lost agent's tasks fit on the others.
	sleepCmd := fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 86400", cl.pidDir)
	perAgent := (instances + nAgents - 1) / nAgents
	def := map[string]any{"id": id, "cmd": sleepCmd, "cpus": 0.1, "mem": 16, "instances": instances,
		"constraints": [][]string{{"hostname", "MAX_PER", fmt.Sprint(perAgent)}}}
	body, _ := json.Marshal(def)
	if _, err := c.PutApp(ctx, id, body, false); err != nil {
		return err
	}
	if err := eventually(60*time.Second, 200*time.Millisecond, "instances running, spread", func() error {
		return cl.steady(ctx, id, instances)
	}); err != nil {
		return err
	}
	if _, err := c.PutApp(ctx, id, []byte(`{"constraints":[]}`), false); err != nil {
		return err
	}
	if err := eventually(90*time.Second, 200*time.Millisecond, "constraint lifted, steady", func() error {
		return cl.steady(ctx, id, instances)
	}); err != nil {
		return err
	}

	if ln != nil {
		return lossyRun(ctx, cl, ln, id, lossy)
	}

	var lat, detect []time.Duration
	var moved []int
	for r := 0; r < rounds; r++ {
		app, err := c.App(ctx, id)
		if err != nil {
			return err
		}
		per := map[string][]string{}
		for _, tk := range app.Tasks {
			per[tk.SlaveID] = append(per[tk.SlaveID], tk.ID)
		}
		victim := ""
		for _, n := range names { // the agent running the most tasks
			if victim == "" || len(per[n]) > len(per[victim]) {
				victim = n
			}
		}
		lost := per[victim]
		dist := []string{}
		for _, n := range names {
			dist = append(dist, fmt.Sprintf("%s:%d", n, len(per[n])))
		}

		start := time.Now()
		cl.agent(victim).Kill9()
		var unreachableAt time.Duration
		err = eventually(2*time.Minute, 50*time.Millisecond, "the lost agent's tasks running elsewhere", func() error {
			app, err := c.App(ctx, id)
			if err != nil {
				return err
			}
			elsewhere := 0
			for _, tk := range app.Tasks {
				if tk.SlaveID == victim && tk.State == api.TaskUnreachable && unreachableAt == 0 {
					unreachableAt = time.Since(start)
				}
				if tk.SlaveID != victim && tk.State == api.TaskRunning {
					elsewhere++
				}
			}
			if elsewhere < instances {
				return fmt.Errorf("%d of %d running off %s", elsewhere, instances, victim)
			}
			return nil
		})
		d := time.Since(start)
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		lat, detect, moved = append(lat, d), append(detect, unreachableAt), append(moved, len(lost))
		fmt.Printf("round %d: kill -9 %s (tasks %s) → its %d tasks RUNNING elsewhere after %v (master showed them TASK_UNREACHABLE after %v)\n",
			r+1, victim, strings.Join(dist, " "), len(lost), d.Round(10*time.Millisecond), unreachableAt.Round(10*time.Millisecond))

		// The killed agent's tasks outlive it (as on a partitioned host):
		// kill them by PID, restart the agent, wait for a steady state.
		for _, tid := range lost {
			killPidFile(filepath.Join(cl.pidDir, tid+".pid"))
		}
		if err := cl.startAgent(victim); err != nil {
			return err
		}
		if err := eventually(90*time.Second, 200*time.Millisecond, "steady state after the restart of "+victim, func() error {
			if err := cl.allAlive(ctx, names); err != nil {
				return err
			}
			return cl.steady(ctx, id, instances)
		}); err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
	}

	sorted := append([]time.Duration(nil), lat...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	p50, p99, pmax := percentile(sorted, 50), percentile(sorted, 99), sorted[len(sorted)-1]
	sd := append([]time.Duration(nil), detect...)
	sort.Slice(sd, func(i, j int) bool { return sd[i] < sd[j] })
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	fmt.Printf("kill -9 of an agent → all its tasks RUNNING elsewhere, %d rounds (inactiveAfterSeconds %v by default):\n", len(lat), inactive.Seconds())
	fmt.Printf("  p50 %v  p99 %v (%.2f× the %v target)  max %v\n", r(p50), r(p99), float64(p99)/float64(target), target, r(pmax))
	fmt.Printf("  of which agent-loss detection (kill → TASK_UNREACHABLE shown): p50 %v, max %v\n", r(percentile(sd, 50)), r(sd[len(sd)-1]))
	var cmp []string
	for _, p := range peers {
		cmp = append(cmp, fmt.Sprintf("%s %v", p.name, p.d))
	}
	fmt.Printf("  quoted, not run here (published defaults): %s\n", strings.Join(cmp, ", "))
	fmt.Printf("  tasks moved per round: %v\n", moved)
	fmt.Printf("  load average after the run: %s (the machine is shared)\n", loadAvg())
	verdict := "PASS"
	if p99 > target {
		verdict = "FAIL"
	}
	benchkit.EmitRow(benchkit.Row{Bench: "agentloss", Figure: fmt.Sprintf("kill -9 of an agent → its tasks RUNNING elsewhere, p99 over %d rounds", len(lat)),
		Weft: r(p99).String(), Peer: benchkit.NoPeer, Target: "≤ " + target.String(), Met: p99 <= target})
	fmt.Printf("SUMMARY agentloss %s: p50 %v, p99 %v (target %v), max %v over %d kill -9 rounds, inactiveAfter %v\n",
		verdict, r(p50), r(p99), target, r(pmax), len(lat), inactive)
	if verdict == "FAIL" {
		return errBenchFailed
	}
	return nil
}

// allAlive checks the master answers and sees every agent alive.
func (cl *cluster) allAlive(ctx context.Context, names []string) error {
	for _, n := range names {
		if p := cl.agent(n); p.Exited() {
			return fmt.Errorf("agent %s exited:\n%s", n, p.LogTail(3000))
		}
	}
	nodes, err := cl.c.Nodes(ctx)
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, nd := range nodes {
		if nd.Status == "alive" && nd.Resources.Cpus > 0 {
			alive[nd.ID] = true
		}
	}
	for _, n := range names {
		if !alive[n] {
			return fmt.Errorf("agent %s not alive in the master's view", n)
		}
	}
	return nil
}

// steady checks the app has exactly n tasks, all RUNNING, and no
// deployment.
func (cl *cluster) steady(ctx context.Context, id string, n int) error {
	app, err := cl.c.App(ctx, id)
	if err != nil {
		return err
	}
	running := 0
	var desc []string
	for _, tk := range app.Tasks {
		if tk.State == api.TaskRunning {
			running++
		}
		desc = append(desc, tk.SlaveID+"="+tk.State)
	}
	if running != n || len(app.Tasks) != n || len(app.Deployments) != 0 {
		sort.Strings(desc)
		return fmt.Errorf("%d tasks, %d running, %d deployments; want %d running, none other (%s)",
			len(app.Tasks), running, len(app.Deployments), n, strings.Join(desc, " "))
	}
	return nil
}
