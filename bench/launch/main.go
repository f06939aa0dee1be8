// Command launch measures weft's launch latency as a user sees it: the real
// binary (`weft up`, one node, real process executor) on loopback, 200
// launches one after the other, each a PUT /v2/apps/{id} of a NEW app with
// one instance of `exec sleep 600`, timed from the moment the PUT is sent to
// the moment its status_update_event with TASK_RUNNING arrives on
// /v2/events (api.Client.Events). A new app per launch (rather than scaling
// one app up) is the honest "API call to TASK_RUNNING": the app is created,
// versioned, deployed, placed, assigned, the process forked and its RUNNING
// reported back — nothing is warm but the node.
//
// Flat as the cluster fills (issue #19): the first -measure launches run on
// an empty cluster; after the -launches series the bench fills the node to
// -fill running apps (one `sleep` instance each, created through
// POST /v2/groups, 100 apps a group, not timed), then times -measure more
// launches the same way. The ROW compares the two p50s, side by side in the
// same run: target p50 with 1,000 apps running ≤ 1.2× p50 with none. With
// -cpuprofile, the master's CPU profile (weft up --pprof) is taken during
// that last phase.
//
// Targets ([foundation]): p50 ≤ 100 ms, p99 ≤ 500 ms. Every task writes its
// pid to a file, so the bench checks that each launch really forked a
// process, and kills any left over. The apps are deleted at the end and
// `weft up` is stopped with Ctrl-C (SIGINT), which also stops its tasks.
//
//	go run ./bench/launch [-launches 200 -fill 1000 -measure 50 -cpuprofile f]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

const (
	targetP50 = 100 * time.Millisecond
	targetP99 = 500 * time.Millisecond
)

func main() {
	launches := flag.Int("launches", 200, "sequential launches (one new app each)")
	timeout := flag.Duration("timeout", 30*time.Second, "give up on one launch after this long")
	flag.IntVar(&fillTo, "fill", 1000, "apps running before the last phase (0: no fill phase)")
	flag.IntVar(&measure, "measure", 50, "launches timed on the empty cluster and again once filled")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "save the master's CPU profile during the filled phase here")
	flag.Parse()
	cleanupOnSignal()
	if err := run(*launches, *timeout); err == errBenchFailed {
		exit(1)
	} else if err != nil {
		fmt.Printf("launch FAILED: %v\n", err)
		fmt.Printf("SUMMARY launch FAIL: %v\n", err)
		exit(1)
	}
	exit(0)
}

var (
	fillTo, measure int
	cpuProfile      string
)

func run(n int, perLaunch time.Duration) error {
	bin, err := weftBin()
	if err != nil {
		return err
	}
	dir, err := tempDir("weft-bench-launch-")
	if err != nil {
		return err
	}
	pidDir := filepath.Join(dir, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	// Runs after weft up has stopped: whatever a task left behind dies.
	atExit(func() {
		if k := killPidFiles(pidDir); k > 0 {
			fmt.Printf("note: killed %d task processes still alive after weft up stopped\n", k)
		}
	})

	apiPort := freePort()
	base := 20000 + apiPort%20000
	args := []string{"up",
		"--data-dir", filepath.Join(dir, "data"),
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--agent-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0",
		"--dns-addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
		"--lb-http-addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
		"--lb-admin-addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
		"--lb-appid-addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
		// Marathon's default portDefinitions give every task one host port.
		"--ports", fmt.Sprintf("%d-%d", base, base+n+fillTo+measure+100),
		// Every task 0.01 cpus, 8 MiB: room for all of them whatever the
		// box's size (the sleeps use neither).
		"--cpus", fmt.Sprint(max(8, (n+fillTo+measure)/50)), "--mem", fmt.Sprint(max(8192, (n+fillTo+measure)*8+1024)),
		"--pprof",
	}
	fmt.Printf("launch: %d launches on `weft up` (%s), load average %s\n", n, bin, loadAvg())
	up, err := startProc(dir, "up", bin, args...)
	if err != nil {
		return err
	}
	c := api.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := eventually(60*time.Second, 100*time.Millisecond, "weft up answering with a leader and an alive agent", func() error {
		if up.Exited() {
			return fmt.Errorf("weft up exited:\n%s", up.LogTail(3000))
		}
		if _, err := c.Do(ctx, "GET", "/v2/leader", nil, nil); err != nil {
			return err
		}
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, nd := range nodes {
			if nd.Status == "alive" && nd.Resources.Cpus > 0 {
				return nil
			}
		}
		return fmt.Errorf("no alive agent in %d nodes", len(nodes))
	}); err != nil {
		return err
	}

	var ids []string
	// Delete the apps while weft up runs, so its agent stops the sleeps;
	// then Ctrl-C (the proc's own cleanup, registered earlier, runs after).
	atExit(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer dcancel()
		_, _ = c.Do(dctx, "DELETE", "/v2/groups/bench?force=true", nil, nil)
		for _, id := range ids {
			_, _ = c.DeleteApp(dctx, id, true)
		}
		_ = eventually(45*time.Second, 200*time.Millisecond, "every task gone", func() error {
			ts, err := c.Tasks(dctx)
			if err != nil {
				return err
			}
			if len(ts) > 0 {
				return fmt.Errorf("%d tasks left", len(ts))
			}
			return nil
		})
		if !up.Stop(30 * time.Second) {
			fmt.Println("note: weft up did not stop within 30s of SIGINT; killed its process group")
		}
	})

	evs, err := c.Events(ctx, api.EventStatusUpdate)
	if err != nil {
		return err
	}
	var slowest string
	var slowestD time.Duration
	launch := func(i int) (time.Duration, error) {
		id := fmt.Sprintf("/bench/launch/app-%04d", i)
		def := map[string]any{
			"id":        id,
			"cmd":       fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600", pidDir),
			"cpus":      0.01,
			"mem":       8,
			"instances": 1,
		}
		body, _ := json.Marshal(def)
		lctx, lcancel := context.WithTimeout(ctx, perLaunch)
		defer lcancel()
		start := time.Now()
		if _, err := c.PutApp(lctx, id, body, false); err != nil {
			return 0, fmt.Errorf("PUT %s: %w", id, err)
		}
		ids = append(ids, id)
		var failed string
		for running := false; !running; {
			select {
			case ev, ok := <-evs:
				if !ok {
					return 0, fmt.Errorf("event stream ended at launch %d", i)
				}
				var d struct{ AppID, TaskID, TaskStatus, Message string }
				_ = json.Unmarshal(ev.Data, &d)
				if d.AppID != id {
					continue
				}
				switch {
				case d.TaskStatus == api.TaskRunning:
					running = true
				case api.Terminal(d.TaskStatus):
					failed = fmt.Sprintf("%s %s %s", d.TaskID, d.TaskStatus, d.Message)
				}
			case <-lctx.Done():
				var q json.RawMessage
				qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = c.Do(qctx, "GET", "/v2/queue", nil, &q)
				qcancel()
				return 0, fmt.Errorf("launch %d (%s): no TASK_RUNNING within %v (last terminal update: %q); queue: %.2000s", i, id, perLaunch, failed, q)
			}
		}
		d := time.Since(start)
		if d > slowestD {
			slowestD, slowest = d, id
		}
		return d, nil
	}
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		d, err := launch(i)
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	var full []time.Duration
	if fillTo > 0 && measure > 0 {
		// The fill's own status events are read and dropped meanwhile.
		stop, drained := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(drained)
			for {
				select {
				case <-evs:
				case <-stop:
					return
				}
			}
		}()
		err := fill(ctx, c, pidDir, fillTo-n)
		close(stop)
		<-drained
		if err != nil {
			return err
		}
		prof := make(chan error, 1)
		if cpuProfile != "" {
			go func() { prof <- saveProfile(fmt.Sprintf("http://127.0.0.1:%d", apiPort), cpuProfile, 15*time.Second) }()
		}
		for i := 0; i < measure; i++ {
			d, err := launch(n + i)
			if err != nil {
				return err
			}
			full = append(full, d)
		}
		if cpuProfile != "" {
			if err := <-prof; err != nil {
				fmt.Printf("note: no CPU profile: %v\n", err)
			} else {
				fmt.Printf("  the master's CPU profile during the filled phase: %s\n", cpuProfile)
			}
		}
	}

	// Each launch and fill forked a real process that writes its pid; a
	// task is RUNNING once its shell started, a moment before the write.
	wantPids := n + len(full) + max(0, fillTo-n)
	var pids []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pids, _ = filepath.Glob(filepath.Join(pidDir, "*.pid"))
		if len(pids) >= wantPids || time.Now().After(deadline) {
			break
		}
	}

	sorted := append([]time.Duration(nil), lat...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	p50, p99, pmax := percentile(sorted, 50), percentile(sorted, 99), sorted[len(sorted)-1]
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	mean := sum / time.Duration(len(lat))
	// First and last quarter: does latency grow with the number of apps?
	q := len(lat) / 4
	firstQ, lastQ := append([]time.Duration(nil), lat[:q]...), append([]time.Duration(nil), lat[len(lat)-q:]...)
	sort.Slice(firstQ, func(i, j int) bool { return firstQ[i] < firstQ[j] })
	sort.Slice(lastQ, func(i, j int) bool { return lastQ[i] < lastQ[j] })

	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	fmt.Printf("PUT /v2/apps/{new id} → TASK_RUNNING on /v2/events, %d launches, real process executor:\n", n)
	fmt.Printf("  p50  %9v  (%.2f× the 100ms target)\n", r(p50), float64(p50)/float64(targetP50))
	fmt.Printf("  p99  %9v  (%.2f× the 500ms target)\n", r(p99), float64(p99)/float64(targetP99))
	fmt.Printf("  max  %9v  (%s)\n", r(pmax), slowest)
	fmt.Printf("  mean %9v, min %v\n", r(mean), r(sorted[0]))
	fmt.Printf("  first %d launches p50 %v, last %d launches p50 %v (with %d apps already running)\n",
		q, r(percentile(firstQ, 50)), q, r(percentile(lastQ, 50)), n-q)
	fmt.Printf("  load average after the run: %s (the machine is shared)\n", loadAvg())

	fmt.Printf("  %d task processes wrote their pid (want at least %d)\n", len(pids), wantPids)
	benchkit.EmitRow(benchkit.Row{Bench: "launch", Figure: fmt.Sprintf("PUT new app → TASK_RUNNING p50 (%d launches, weft up)", n), Weft: r(p50).String(), Peer: benchkit.NoPeer, Target: "≤ 100ms", Met: p50 <= targetP50})
	benchkit.EmitRow(benchkit.Row{Bench: "launch", Figure: fmt.Sprintf("PUT new app → TASK_RUNNING p99 (%d launches, weft up)", n), Weft: r(p99).String(), Peer: benchkit.NoPeer, Target: "≤ 500ms", Met: p99 <= targetP99})
	flatOK := true
	if len(full) > 0 {
		m := min(measure, len(lat))
		empty := append([]time.Duration(nil), lat[:m]...)
		sort.Slice(empty, func(i, j int) bool { return empty[i] < empty[j] })
		sort.Slice(full, func(i, j int) bool { return full[i] < full[j] })
		e50, f50 := percentile(empty, 50), percentile(full, 50)
		ratio := float64(f50) / float64(e50)
		flatOK = ratio <= 1.2
		fmt.Printf("  flat as it fills: p50 of the first %d launches (empty cluster) %v; p50 of %d launches with %d apps running %v (%.2f×, target ≤ 1.2×); p99 %v vs %v\n",
			m, r(e50), len(full), fillTo, r(f50), ratio, r(percentile(empty, 99)), r(percentile(full, 99)))
		benchkit.EmitRow(benchkit.Row{Bench: "launch", Figure: fmt.Sprintf("launch p50 with %d apps running vs with none", fillTo), Weft: r(f50).String(),
			Peer: fmt.Sprintf("the same run's first %d launches on an empty cluster", m), PeerValue: r(e50).String(), Ratio: ratio, Target: "≤ 1.2×", Met: flatOK})
	}

	verdict := "PASS"
	if p50 > targetP50 || p99 > targetP99 || len(pids) < wantPids || !flatOK {
		verdict = "FAIL"
	}
	fmt.Printf("SUMMARY launch %s: p50 %v (%.2f× target 100ms), p99 %v (%.2f× target 500ms), max %v over %d launches on weft up; %d/%d real processes\n",
		verdict, r(p50), float64(p50)/float64(targetP50), r(p99), float64(p99)/float64(targetP99), r(pmax), n, len(pids), n)
	if verdict == "FAIL" {
		return errBenchFailed
	}
	return nil
}

var errBenchFailed = fmt.Errorf("targets missed")

// fill creates apps (one `sleep` instance each) in groups of 100 through
// POST /v2/groups until count more tasks run, untimed.
func fill(ctx context.Context, c *api.Client, pidDir string, count int) error {
	if count <= 0 {
		return nil
	}
	before, err := c.Tasks(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	for g := 0; g*100 < count; g++ {
		var apps []map[string]any
		for i := g * 100; i < min(count, (g+1)*100); i++ {
			apps = append(apps, map[string]any{"id": fmt.Sprintf("app-%04d", i), "cpus": 0.01, "mem": 8, "instances": 1,
				"cmd": fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600", pidDir)})
		}
		body := map[string]any{"id": fmt.Sprintf("/bench/fill/g%02d", g), "apps": apps}
		if _, err := c.Do(ctx, "POST", "/v2/groups", body, nil); err != nil {
			return fmt.Errorf("filling: POST /v2/groups: %w", err)
		}
	}
	want := len(before) + count
	err = eventually(10*time.Minute, time.Second, fmt.Sprintf("%d tasks running", want), func() error {
		ts, err := c.Tasks(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, t := range ts {
			if t.State == api.TaskRunning {
				n++
			}
		}
		if n < want {
			return fmt.Errorf("%d of %d running", n, want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("  filled: %d more apps running in %v (load %s)\n", count, time.Since(start).Round(100*time.Millisecond), loadAvg())
	time.Sleep(2 * time.Second) // let the fill's deployments settle
	return nil
}

// saveProfile saves the master's CPU profile over d (weft up --pprof).
func saveProfile(base, file string, d time.Duration) error {
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
