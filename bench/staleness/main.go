// Command staleness measures, end to end with the real binary, how long a
// task change takes to reach DNS and the lb on another node: a weft master
// (m1), an agent that runs the task (a1) and an agent that runs only dns
// and lb (a2), three processes on loopback without the mesh. An app of one
// `exec sleep 600` task pinned to a1 is scaled 0 → 1 → 0 again and again;
// a1 starts or kills the task and reports TASK_RUNNING or TASK_KILLED to the
// master. Each change is timed from the master's status_update_event for
// it (its timestamp is when the master took the agent's report, in ms) to
// the first moment a2's DNS answers the changed SRV set (polled every 2 ms)
// and a2's lb shows the changed backend (/_haproxy_getconfig, polled every
// 5 ms). Target: p99 ≤ 1 s for both; absolute, no peer.
//
// 120 changes by default, so that the p99 rests on more than one sample.
//
//	go run ./bench/staleness [-samples 120]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

func main() {
	samples := flag.Int("samples", 120, "task changes timed (half starts, half kills; at least 100 for a p99)")
	flag.Parse()
	benchkit.CleanupOnSignal()
	if *samples < 100 {
		fmt.Printf("staleness: -samples %d: a p99 needs at least 100 changes\n", *samples)
		benchkit.Exit(2)
	}
	if err := run(*samples); err != nil {
		fmt.Println("staleness:", err)
		benchkit.Exit(1)
	}
	benchkit.Exit(0)
}

// observer polls a2's DNS and lb and remembers when each first showed a
// given number of backends of the app.
type observer struct {
	mu     sync.Mutex
	dnsAt  map[int]time.Time // count → first seen since the last reset
	lbAt   map[int]time.Time
	dnsErr error
}

func (o *observer) reset() {
	o.mu.Lock()
	o.dnsAt, o.lbAt = map[int]time.Time{}, map[int]time.Time{}
	o.mu.Unlock()
}

func (o *observer) saw(m map[int]time.Time, n int, at time.Time) {
	o.mu.Lock()
	if _, ok := m[n]; !ok && m != nil {
		m[n] = at
	}
	o.mu.Unlock()
}

func (o *observer) when(dns bool, n int) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.lbAt
	if dns {
		m = o.dnsAt
	}
	t, ok := m[n]
	return t, ok
}

func run(samples int) error {
	bin, err := benchkit.WeftBin()
	if err != nil {
		return err
	}
	dir, err := benchkit.TempDir("weft-staleness-")
	if err != nil {
		return err
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort())
	gossip := fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort())
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort())
	admin := fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort())
	fmt.Printf("staleness: weft master m1, agent a1 (runs the task), agent a2 (dns %s, lb admin %s); %d changes; load %s\n", dnsAddr, admin, samples, benchkit.LoadAvg())
	m1, err := benchkit.StartProc(dir, "m1", bin, "master", "--no-mesh", "--node-name", "m1", "--site", "bench",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", apiAddr, "--raft-addr", "",
		"--gossip-addr", gossip, "--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c := api.NewClient(apiAddr)
	const id = "/bench/staleness"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a1, err := benchkit.StartProcNoStop(dir, "a1", bin, "agent", "--no-mesh", "--node-name", "a1", "--site", "bench",
		"--data-dir", filepath.Join(dir, "a1"), "--join", gossip, "--gossip-addr", "127.0.0.1:0", "--agent-addr", "127.0.0.1:0",
		"--no-dns", "--no-lb", "--no-docker", "--cpus", "2", "--mem", "2048", "--ports", "33000-33999")
	if err != nil {
		return err
	}
	a2, err := benchkit.StartProcNoStop(dir, "a2", bin, "agent", "--no-mesh", "--node-name", "a2", "--site", "bench",
		"--data-dir", filepath.Join(dir, "a2"), "--join", gossip, "--gossip-addr", "127.0.0.1:0", "--agent-addr", "127.0.0.1:0",
		"--no-docker", "--cpus", "1", "--mem", "1024", "--ports", "34000-34099",
		"--dns-addr", dnsAddr, "--no-host-dns", "--lb-admin-addr", admin, "--lb-http-addr", fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort()),
		"--lb-appid-addr", fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort()), "--lb-bind", "127.0.0.1", "--lb-group", "*")
	if err != nil {
		return err
	}
	// The app goes first (a1 stops its task), then the agents stop;
	// m1 stops last (registered first).
	benchkit.AtExit(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		_, _ = c.DeleteApp(dctx, id, true)
		_ = benchkit.Eventually(15*time.Second, 200*time.Millisecond, "tasks gone", func() error {
			ts, err := c.Tasks(dctx)
			if err == nil && len(ts) > 0 {
				return fmt.Errorf("%d tasks", len(ts))
			}
			return err
		})
		a2.Stop(20 * time.Second)
		a1.Stop(20 * time.Second)
	})
	if err := benchkit.Eventually(60*time.Second, 100*time.Millisecond, "a leader and both agents alive", func() error {
		for _, p := range []*benchkit.Proc{m1, a1, a2} {
			if p.Exited() {
				return fmt.Errorf("a weft process exited:\n%s", p.LogTail(3000))
			}
		}
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		alive := 0
		for _, n := range nodes {
			if (n.Name == "a1" || n.Name == "a2") && n.Status == "alive" {
				alive++
			}
		}
		if alive < 2 {
			return fmt.Errorf("%d of 2 agents alive", alive)
		}
		return nil
	}); err != nil {
		return err
	}
	def := map[string]any{"id": id, "cmd": "exec sleep 600", "cpus": 0.05, "mem": 16, "instances": 0,
		"constraints":     [][]string{{"hostname", "CLUSTER", "a1"}},
		"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
		"labels":          map[string]string{"HAPROXY_GROUP": "external"}}
	body, _ := json.Marshal(def)
	if _, err := c.PutApp(ctx, id, body, false); err != nil {
		return err
	}
	events, err := c.Events(ctx, api.EventStatusUpdate)
	if err != nil {
		return err
	}
	obs := &observer{}
	obs.reset()
	go pollDNS(ctx, dnsAddr, obs)
	go pollLB(ctx, admin, obs)

	var dnsLat, lbLat []time.Duration
	for i := range samples {
		want := 1 - i%2 // 1: a start, 0: a kill
		wantState := api.TaskRunning
		if want == 0 {
			wantState = api.TaskKilled
		}
		obs.reset()
		scale, _ := json.Marshal(map[string]any{"instances": want})
		if _, err := c.PutApp(ctx, id, scale, true); err != nil {
			return err
		}
		// The master's event for the agent's report.
		var reported time.Time
		deadline := time.After(30 * time.Second)
		for reported.IsZero() {
			select {
			case ev, ok := <-events:
				if !ok {
					return fmt.Errorf("the event stream ended")
				}
				var d struct {
					AppID      string `json:"appId"`
					TaskStatus string `json:"taskStatus"`
					Timestamp  string `json:"timestamp"`
				}
				if json.Unmarshal(ev.Data, &d) != nil || d.AppID != id || d.TaskStatus != wantState {
					continue
				}
				t, err := time.Parse("2006-01-02T15:04:05.000Z", d.Timestamp)
				if err != nil {
					return fmt.Errorf("event timestamp %q: %v", d.Timestamp, err)
				}
				reported = t
			case <-deadline:
				return fmt.Errorf("change %d: no %s event in 30 s", i, wantState)
			}
		}
		var dnsAt, lbAt time.Time
		if err := benchkit.Eventually(10*time.Second, 5*time.Millisecond, fmt.Sprintf("a2's DNS and lb show %d backends", want), func() error {
			var okD, okL bool
			dnsAt, okD = obs.when(true, want)
			lbAt, okL = obs.when(false, want)
			if !okD || !okL {
				return fmt.Errorf("dns %v lb %v (dns error %v)", okD, okL, obs.dnsErr)
			}
			return nil
		}); err != nil {
			return err
		}
		// The event time is in whole ms: a change seen within that ms reads
		// as up to 1 ms early; count it as 0.
		dnsLat = append(dnsLat, max(0, dnsAt.Sub(reported)))
		lbLat = append(lbLat, max(0, lbAt.Sub(reported)))
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(dnsLat, func(i, j int) bool { return dnsLat[i] < dnsLat[j] })
	sort.Slice(lbLat, func(i, j int) bool { return lbLat[i] < lbLat[j] })
	p := func(s []time.Duration, q float64) time.Duration {
		return benchkit.Percentile(s, q).Round(time.Millisecond)
	}
	fmt.Printf("DNS on another node: p50 %v p99 %v max %v; lb: p50 %v p99 %v max %v (%d changes, load %s)\n",
		p(dnsLat, 50), p(dnsLat, 99), p(dnsLat, 100), p(lbLat, 50), p(lbLat, 99), p(lbLat, 100), len(dnsLat), benchkit.LoadAvg())
	dnsOK, lbOK := benchkit.Percentile(dnsLat, 99) <= time.Second, benchkit.Percentile(lbLat, 99) <= time.Second
	benchkit.EmitRow(benchkit.Row{Bench: "staleness", Figure: "task change (agent's report on the master) → DNS answer on another node, p99", Weft: p(dnsLat, 99).String(), Peer: benchkit.NoPeer, Target: "≤ 1s", Met: dnsOK})
	benchkit.EmitRow(benchkit.Row{Bench: "staleness", Figure: "task change (agent's report on the master) → lb route on another node, p99", Weft: p(lbLat, 99).String(), Peer: benchkit.NoPeer, Target: "≤ 1s", Met: lbOK})
	verdict := "MET"
	if !dnsOK || !lbOK {
		verdict = "NOT MET"
	}
	fmt.Printf("SUMMARY staleness %s: real master, agents and binary, %d task changes: DNS p99 %v, lb p99 %v on another node (target ≤ 1 s)\n", verdict, len(dnsLat), p(dnsLat, 99), p(lbLat, 99))
	return nil
}

// pollDNS asks a2's DNS for the app's SRV records every 2 ms.
func pollDNS(ctx context.Context, addr string, o *observer) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, srvs, err := r.LookupSRV(qctx, "staleness-bench", "tcp", "marathon.pcm")
		cancel()
		at := time.Now()
		var dnsErr *net.DNSError
		switch {
		case err == nil:
			o.saw(o.dnsAt, len(srvs), at)
		case asDNSErr(err, &dnsErr) && dnsErr.IsNotFound:
			o.saw(o.dnsAt, 0, at)
		default:
			o.mu.Lock()
			o.dnsErr = err
			o.mu.Unlock()
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func asDNSErr(err error, out **net.DNSError) bool {
	e, ok := err.(*net.DNSError)
	if ok {
		*out = e
	}
	return ok
}

// pollLB reads a2's lb routing table every 5 ms and counts the app's
// servers.
func pollLB(ctx context.Context, admin string, o *observer) {
	hc := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		resp, err := hc.Get("http://" + admin + "/_haproxy_getconfig")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			at := time.Now()
			n := 0
			in := false
			for _, line := range strings.Split(string(b), "\n") {
				if !strings.HasPrefix(line, " ") {
					in = strings.Contains(line, "/bench/staleness") || strings.Contains(line, "bench_staleness")
					continue
				}
				if in && strings.HasPrefix(strings.TrimSpace(line), "server ") && !strings.Contains(line, " draining") {
					n++
				}
			}
			o.saw(o.lbAt, n, at)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
