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
// Targets ([foundation]): p50 ≤ 100 ms, p99 ≤ 500 ms. Every task writes its
// pid to a file, so the bench checks that each launch really forked a
// process, and kills any left over. The apps are deleted at the end and
// `weft up` is stopped with Ctrl-C (SIGINT), which also stops its tasks.
//
//	go run ./bench/launch [-launches 200]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/weftnet/weft/sched/api"
)

const (
	targetP50 = 100 * time.Millisecond
	targetP99 = 500 * time.Millisecond
)

func main() {
	launches := flag.Int("launches", 200, "sequential launches (one new app each)")
	timeout := flag.Duration("timeout", 30*time.Second, "give up on one launch after this long")
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
		"--ports", fmt.Sprintf("%d-%d", base, base+999),
		// 200 tasks × 0.01 cpus, 8 MiB: room for all of them whatever the
		// box's size (the sleeps use neither).
		"--cpus", "8", "--mem", "8192",
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
	lat := make([]time.Duration, 0, n)
	var slowest string
	var slowestD time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("/bench/launch/app-%03d", i)
		def := map[string]any{
			"id":        id,
			"cmd":       fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600", pidDir),
			"cpus":      0.01,
			"mem":       8,
			"instances": 1,
		}
		body, _ := json.Marshal(def)
		lctx, lcancel := context.WithTimeout(ctx, perLaunch)
		start := time.Now()
		_, err := c.PutApp(lctx, id, body, false)
		if err != nil {
			lcancel()
			return fmt.Errorf("PUT %s: %w", id, err)
		}
		ids = append(ids, id)
		var failed string
		for running := false; !running; {
			select {
			case ev, ok := <-evs:
				if !ok {
					lcancel()
					return fmt.Errorf("event stream ended at launch %d", i)
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
				lcancel()
				var q json.RawMessage
				qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = c.Do(qctx, "GET", "/v2/queue", nil, &q)
				qcancel()
				return fmt.Errorf("launch %d (%s): no TASK_RUNNING within %v (last terminal update: %q); queue: %.2000s", i, id, perLaunch, failed, q)
			}
		}
		d := time.Since(start)
		lcancel()
		lat = append(lat, d)
		if d > slowestD {
			slowestD, slowest = d, id
		}
	}

	// Each launch forked a real process that wrote its pid.
	pids, _ := filepath.Glob(filepath.Join(pidDir, "*.pid"))

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
	fmt.Printf("  %d task processes wrote their pid (want %d)\n", len(pids), n)
	fmt.Printf("  load average after the run: %s (the machine is shared)\n", loadAvg())

	verdict := "PASS"
	if p50 > targetP50 || p99 > targetP99 || len(pids) < n {
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
