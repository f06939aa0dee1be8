// Command listing measures `GET /v2/apps?embed=apps.tasks` on a real
// `weft master` process holding 1,000 apps and 10,000 RUNNING tasks.
//
// 10,000 real processes would swamp a 2-core box, so the agents are
// simulated inside the bench — but through the same doors a real agent
// uses: each joins the master's gossip with mesh.New (gossip only, no
// WireGuard) carrying api.NodeTags (agent id, resources), long-polls
// GET /v1/agents/{id}/assignments and POSTs /v1/agents/{id}/status with
// TASK_RUNNING for every task it is given. The master, its store, the
// marathon framework and the HTTP path measured are the real binary's.
// The apps are created through PUT /v2/apps/{id}.
//
// Then three phases of sequential listings (GET, whole body read), each
// against the [foundation] target p99 ≤ 100 ms:
//   - quiet: nothing changes;
//   - churn: a background generator fails RUNNING tasks at -churn per
//     second (a simulated agent reports TASK_FAILED; marathon replaces the
//     task, the agent reports the replacement RUNNING) for as long as the
//     listings go on; the rate achieved and the replacements that reached
//     RUNNING are printed beside the latencies;
//   - settled: one task changes before each listing, and the listing waits
//     (untimed) until the task is replaced — rendering after a change
//     without the master's concurrent work on it.
//
// The payload size (and the gzip size when the master compresses) and the
// client's JSON decode time are printed beside it. With -cpuprofile the
// master runs with --pprof and a CPU profile of it is taken during the
// churn phase.
//
//	go run ./bench/listing [-apps 1000 -instances 10 -agents 20 -gets 300 -churn 20 -churn-for 20s -settled 50 -cpuprofile FILE]
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/sched/api"
)

const targetP99 = 100 * time.Millisecond

var errBenchFailed = errors.New("target missed")

func main() {
	apps := flag.Int("apps", 1000, "apps")
	instances := flag.Int("instances", 10, "instances per app")
	agents := flag.Int("agents", 20, "simulated agents (gossip + agent HTTP protocol)")
	gets := flag.Int("gets", 300, "listings in the quiet phase")
	churnFor := flag.Duration("churn-for", 20*time.Second, "how long the churn phase lists (back to back)")
	churnRate := flag.Float64("churn", 20, "tasks failed per second in the churn phase")
	settled := flag.Int("settled", 50, "listings in the settled phase (each waits for a replacement)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the master during the churn phase here")
	flag.Parse()
	cleanupOnSignal()
	if err := run(opts{*apps, *instances, *agents, *gets, *churnRate, *churnFor, *settled, *cpuProfile}); errors.Is(err, errBenchFailed) {
		exit(1)
	} else if err != nil {
		fmt.Printf("listing FAILED: %v\n", err)
		fmt.Printf("SUMMARY listing FAIL: %v\n", err)
		exit(1)
	}
	exit(0)
}

type opts struct {
	apps, instances, agents, gets int
	churn                         float64
	churnFor                      time.Duration
	settled                       int
	cpuProfile                    string
}

func run(o opts) error {
	nApps, instances, nAgents, gets := o.apps, o.instances, o.agents, o.gets
	bin, err := weftBin()
	if err != nil {
		return err
	}
	dir, err := tempDir("weft-bench-listing-")
	if err != nil {
		return err
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	gossip := fmt.Sprintf("127.0.0.1:%d", freePort())
	fmt.Printf("listing: weft master (%s) + %d simulated agents, %d apps × %d instances = %d tasks; load average %s\n",
		bin, nAgents, nApps, instances, nApps*instances, loadAvg())
	margs := []string{"master", "--no-mesh", "--node-name", "m1", "--site", "bench",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", apiAddr, "--raft-addr", "",
		"--gossip-addr", gossip, "--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0"}
	if o.cpuProfile != "" {
		margs = append(margs, "--pprof")
	}
	master, err := startProc(dir, "master", bin, margs...)
	if err != nil {
		return err
	}
	c := api.NewClient(apiAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := eventually(60*time.Second, 100*time.Millisecond, "master API with a leader", func() error {
		if master.Exited() {
			return fmt.Errorf("weft master exited:\n%s", master.LogTail(3000))
		}
		_, err := c.Do(ctx, "GET", "/v2/leader", nil, nil)
		return err
	}); err != nil {
		return err
	}

	// Simulated agents: stopped (gossip leave) before the master stops.
	actx, acancel := context.WithCancel(ctx)
	var awg sync.WaitGroup
	atExit(func() {
		acancel()
		done := make(chan struct{})
		go func() { awg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			fmt.Println("note: simulated agents did not stop within 15s")
		}
	})
	perAgent := (nApps*instances + nAgents - 1) / nAgents
	sims := make([]*simAgent, nAgents)
	for i := range sims {
		name := fmt.Sprintf("sim-%03d", i)
		node := api.Node{ID: name, Resources: api.Resources{
			Cpus: float64(perAgent)*0.01*2 + 1, Mem: float64(perAgent)*8*2 + 1024, Disk: 1000,
			Ports: []api.PortRange{{Begin: 31000, End: 31000 + 2*perAgent + 100}},
		}}
		cfg := mesh.DefaultConfig()
		cfg.NodeName, cfg.Role, cfg.Site = name, api.RoleAgent, "bench"
		cfg.GossipBind = "127.0.0.1:0"
		cfg.Join = []string{gossip}
		cfg.WireGuard = false
		cfg.Tags = api.NodeTags(node)
		m, err := mesh.New(cfg)
		if err != nil {
			return fmt.Errorf("simulated agent %s: %w", name, err)
		}
		s := &simAgent{id: name, api: apiAddr, c: c, reported: map[string]string{}, live: map[string]bool{}}
		sims[i] = s
		awg.Add(2)
		go func() { defer awg.Done(); _ = m.Run(actx) }()
		go func() { defer awg.Done(); s.run(actx) }()
	}
	if err := eventually(60*time.Second, 200*time.Millisecond, "every simulated agent alive in the master's view", func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		alive := 0
		for _, n := range nodes {
			if n.Status == "alive" && n.Resources.Cpus > 0 {
				alive++
			}
		}
		if alive != nAgents {
			return fmt.Errorf("%d agents alive, want %d", alive, nAgents)
		}
		return nil
	}); err != nil {
		return err
	}

	// 1,000 apps through the Marathon API, 8 at a time.
	start := time.Now()
	ids := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				def := map[string]any{"id": id, "cmd": "exec sleep 600", "cpus": 0.01, "mem": 8, "instances": instances,
					"labels": map[string]string{"team": "bench"}, "env": map[string]string{"GREETING": "hi"}}
				body, _ := json.Marshal(def)
				if _, err := c.PutApp(ctx, id, body, false); err != nil {
					select {
					case errs <- fmt.Errorf("PUT %s: %w", id, err):
					default:
					}
					return
				}
			}
		}()
	}
	for i := 0; i < nApps; i++ {
		ids <- fmt.Sprintf("/bench/listing/g%02d/app-%04d", i%10, i)
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	want := nApps * instances
	if err := eventually(5*time.Minute, 500*time.Millisecond, fmt.Sprintf("%d tasks RUNNING", want), func() error {
		list, err := c.Apps(ctx)
		if err != nil {
			return err
		}
		running := 0
		for _, a := range list {
			running += a.TasksRunning
		}
		if len(list) != nApps || running != want {
			return fmt.Errorf("%d apps, %d tasks running", len(list), running)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("setup: %d apps and %d RUNNING tasks in %.1fs\n", nApps, want, time.Since(start).Seconds())

	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	url := "http://" + apiAddr + "/v2/apps?embed=apps.tasks"

	// What the listing holds, checked once: every app, every task.
	body, _, err := get(ctx, hc, url, "")
	if err != nil {
		return err
	}
	var listing struct {
		Apps []api.AppInfo `json:"apps"`
	}
	decStart := time.Now()
	if err := json.Unmarshal(body, &listing); err != nil {
		return fmt.Errorf("decoding the listing: %w", err)
	}
	decode := time.Since(decStart)
	nTasks := 0
	for _, a := range listing.Apps {
		nTasks += len(a.Tasks)
	}
	if len(listing.Apps) != nApps || nTasks != want {
		return fmt.Errorf("the listing holds %d apps and %d tasks, want %d and %d", len(listing.Apps), nTasks, nApps, want)
	}
	_, gz, err := get(ctx, hc, url, "gzip")
	if err != nil {
		return err
	}

	quiet, err := timeGets(ctx, hc, url, gets, nil)
	if err != nil {
		return err
	}

	// Before the listings: the master's CPU under the churn alone, which
	// is its cost per task change (failure, expunge, launch, RUNNING).
	mc0 := procCPU(master.Pid())
	time.Sleep(5 * time.Second)
	idleCPU := (procCPU(master.Pid()) - mc0) * 2 // per 10 s
	alone := startChurn(ctx, c, sims, o.churn, 7)
	mc0 = procCPU(master.Pid())
	time.Sleep(10 * time.Second)
	aloneFailed, aloneErr := alone()
	aloneCPU := procCPU(master.Pid()) - mc0
	if aloneErr != nil {
		return fmt.Errorf("churn: failing a task: %w", aloneErr)
	}
	aloneNote := fmt.Sprintf("master CPU under the churn alone (no listing): %.0f%% of one core for %.1f tasks/s (idle: %.0f%%), %.1f ms CPU per task failed and replaced",
		100*aloneCPU.Seconds()/10, float64(aloneFailed)/10, 100*idleCPU.Seconds()/10, 1000*(aloneCPU-idleCPU).Seconds()/float64(max(aloneFailed, 1)))
	if err := eventually(60*time.Second, 100*time.Millisecond, "the churn alone settled", func() error {
		return settledOnMaster(ctx, c, sims, want)
	}); err != nil {
		return err
	}

	// Churn: a generator fails tasks at o.churn per second while the
	// listings run.
	var prof chan []byte
	if o.cpuProfile != "" {
		prof = make(chan []byte, 1)
		go func() {
			b, _, err := get(ctx, http.DefaultClient, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", apiAddr, max(1, int(o.churnFor.Seconds())-1)), "")
			if err != nil {
				fmt.Printf("note: no CPU profile: %v\n", err)
			}
			prof <- b
		}()
	}
	runningBefore := runningReports(sims)
	cpuBefore, mcpuBefore := procCPU(os.Getpid()), procCPU(master.Pid())
	gstart := time.Now()
	stopChurn := startChurn(ctx, c, sims, o.churn, 1)
	churn, err := timeGetsFor(ctx, hc, url, o.churnFor)
	nFailed, gerr := stopChurn()
	churnFor := time.Since(gstart)
	benchCPU, masterCPU := procCPU(os.Getpid())-cpuBefore, procCPU(master.Pid())-mcpuBefore
	replaced := runningReports(sims) - runningBefore
	// Untimed: every task failed is replaced and RUNNING again.
	settleStart := time.Now()
	if serr := eventually(60*time.Second, 100*time.Millisecond, "every failed task replaced", func() error {
		if n := runningReports(sims) - runningBefore; n < int64(nFailed) {
			return fmt.Errorf("%d of %d replaced", n, nFailed)
		}
		return nil
	}); serr != nil && err == nil {
		err = serr
	}
	settleFor := time.Since(settleStart)
	if err != nil {
		return err
	}
	if gerr != nil {
		return fmt.Errorf("churn: failing a task: %w", gerr)
	}
	if o.cpuProfile != "" {
		if b := <-prof; len(b) > 0 {
			if err := os.WriteFile(o.cpuProfile, b, 0o644); err != nil {
				return err
			}
			fmt.Printf("CPU profile of the master during the churn phase: %s\n", o.cpuProfile)
		}
	}
	churnNote := fmt.Sprintf("%d tasks failed in %.1fs (%.1f/s, asked %.0f/s), %d replacements RUNNING during it (%.1f/s), all replaced %.1fs after; CPU: master %.0f%%, bench (agents, churn, listing client) %.0f%% of one core",
		nFailed, churnFor.Seconds(), float64(nFailed)/churnFor.Seconds(), o.churn, replaced, float64(replaced)/churnFor.Seconds(), settleFor.Seconds(),
		100*masterCPU.Seconds()/churnFor.Seconds(), 100*benchCPU.Seconds()/churnFor.Seconds())
	if float64(nFailed) < 0.8*o.churn*churnFor.Seconds() {
		return fmt.Errorf("churn: the generator fell behind: %s", churnNote)
	}

	// The same change, but the listing waits (untimed) until marathon has
	// replaced the task, so it measures rendering after a change without
	// the master's concurrent work on it.
	rng := rand.New(rand.NewPCG(3, 4))
	settled, err := timeGets(ctx, hc, url, o.settled, func() error {
		s := sims[rng.IntN(len(sims))]
		id := s.takeLive(rng)
		if id == "" {
			return fmt.Errorf("agent %s has no RUNNING task left", s.id)
		}
		if err := c.PostStatus(ctx, s.id, []api.TaskStatus{{TaskID: id, State: api.TaskFailed, Message: "bench: task changed", Timestamp: time.Now()}}); err != nil {
			return err
		}
		appID := appOf(listing.Apps, id)
		return eventually(30*time.Second, 20*time.Millisecond, "the failed task replaced", func() error {
			app, err := c.App(ctx, appID)
			if err != nil {
				return err
			}
			running := 0
			for _, t := range app.Tasks {
				if t.ID == id {
					return fmt.Errorf("%s still listed", id)
				}
				if t.State == api.TaskRunning {
					running++
				}
			}
			if running != instances || len(app.Deployments) != 0 {
				return fmt.Errorf("%d running", running)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}

	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("GET /v2/apps?embed=apps.tasks, %d apps, %d tasks, payload %.1f MiB", nApps, want, float64(len(body))/(1<<20))
	if gz > 0 {
		fmt.Printf(" (%.2f MiB with Accept-Encoding: gzip)", float64(gz)/(1<<20))
	} else {
		fmt.Printf(" (the master does not gzip)")
	}
	fmt.Printf("; client JSON decode %v (not counted)\n", r(decode))
	failed := false
	var sum []string
	for _, ph := range []struct {
		name string
		lat  []time.Duration
	}{{"quiet", quiet}, {fmt.Sprintf("churn %.0f tasks/s", o.churn), churn}, {"replaced before each call", settled}} {
		p50, p99, pmax := percentile(ph.lat, 50), percentile(ph.lat, 99), ph.lat[len(ph.lat)-1]
		fmt.Printf("  %-31s p50 %9v  p99 %9v (%.2f× the 100ms target)  max %9v  over %d GETs\n",
			ph.name, r(p50), r(p99), float64(p99)/float64(targetP99), r(pmax), len(ph.lat))
		if p99 > targetP99 {
			failed = true
		}
		sum = append(sum, fmt.Sprintf("%s p50 %v p99 %v (%.2f×)", ph.name, r(p50), r(p99), float64(p99)/float64(targetP99)))
	}
	fmt.Printf("  churn: %s\n", churnNote)
	fmt.Printf("  %s\n", aloneNote)
	fmt.Printf("  load average after the run: %s (the machine is shared)\n", loadAvg())
	verdict := "PASS"
	if failed {
		verdict = "FAIL"
	}
	fmt.Printf("SUMMARY listing %s: %s; %d apps, %d tasks, %.1f MiB; churn %.1f tasks/s achieved; target p99 ≤ 100ms\n",
		verdict, strings.Join(sum, "; "), nApps, want, float64(len(body))/(1<<20), float64(nFailed)/churnFor.Seconds())
	if failed {
		return errBenchFailed
	}
	return nil
}

// get fetches url; with enc set it asks for that encoding and returns the
// size on the wire when the server used it (else 0).
func get(ctx context.Context, hc *http.Client, url, enc string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if enc != "" {
		req.Header.Set("Accept-Encoding", enc)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: %s: %.300s", url, resp.Status, b)
	}
	if enc != "" && resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, 0, err
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			return nil, 0, err
		}
		return plain, len(b), nil
	}
	return b, 0, nil
}

// timeGets times n sequential GETs (request sent to the whole body read),
// calling between (not timed) before each; it returns the sorted
// latencies. The body is read and dropped (a reused buffer: the client's
// own allocations would load the shared machine), and its length checked
// against Content-Length.
func timeGets(ctx context.Context, hc *http.Client, url string, n int, between func() error) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		if between != nil {
			if err := between(); err != nil {
				return nil, fmt.Errorf("changing a task: %w", err)
			}
		}
		t0 := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		got, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK || got < 1<<10 || (resp.ContentLength >= 0 && got != resp.ContentLength) {
			return nil, fmt.Errorf("GET %s: %s, %d bytes read of %d", url, resp.Status, got, resp.ContentLength)
		}
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, nil
}

// startChurn fails RUNNING tasks of the simulated agents at rate per
// second until the returned stop is called, which reports how many it
// failed. Each tick's report is sent on its own (up to 8 at a time), so a
// slow answer does not slow the churn; a tick with 8 reports in flight is
// skipped, and shows in the rate achieved.
func startChurn(ctx context.Context, c *api.Client, sims []*simAgent, rate float64, seed uint64) func() (int, error) {
	gctx, gstop := context.WithCancel(ctx)
	var (
		gwg     sync.WaitGroup
		gmu     sync.Mutex
		nFailed int
		gerr    error
	)
	sem := make(chan struct{}, 8)
	gwg.Add(1)
	go func() {
		defer gwg.Done()
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		rng := rand.New(rand.NewPCG(seed, 2))
		for {
			select {
			case <-gctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue
			}
			s := sims[rng.IntN(len(sims))]
			id := s.takeLive(rng)
			if id == "" {
				<-sem
				continue
			}
			gwg.Add(1)
			go func() {
				defer gwg.Done()
				defer func() { <-sem }()
				// ctx, not gctx: a failure already taken from the live set
				// must reach the master even when the churn stops meanwhile,
				// or the bench loses count of that task.
				err := c.PostStatus(ctx, s.id, []api.TaskStatus{{TaskID: id, State: api.TaskFailed, Message: "bench: churn", Timestamp: time.Now()}})
				gmu.Lock()
				defer gmu.Unlock()
				if err == nil {
					nFailed++
				} else if ctx.Err() == nil && gerr == nil {
					gerr = err
				}
			}()
		}
	}()
	return func() (int, error) {
		gstop()
		gwg.Wait()
		return nFailed, gerr
	}
}

// settledOnMaster is nil once the master counts want tasks running and
// the simulated agents agree. When they disagree, it says which tasks.
func settledOnMaster(ctx context.Context, c *api.Client, sims []*simAgent, want int) error {
	tasks, err := c.Tasks(ctx)
	if err != nil {
		return err
	}
	onMaster := map[string]string{}
	running := 0
	for _, t := range tasks {
		onMaster[t.ID] = t.State
		if t.State == api.TaskRunning {
			running++
		}
	}
	live := 0
	for _, s := range sims {
		live += s.liveCount()
	}
	if running == want && live == want {
		return nil
	}
	var odd []string
	for _, s := range sims {
		s.mu.Lock()
		for id := range s.live {
			if onMaster[id] != api.TaskRunning {
				odd = append(odd, fmt.Sprintf("%s live on %s, master: %q", id, s.id, onMaster[id]))
			}
		}
		s.mu.Unlock()
	}
	if len(odd) > 5 {
		odd = odd[:5]
	}
	return fmt.Errorf("master: %d tasks running, simulated agents: %d live %v", running, live, odd)
}

func (s *simAgent) liveCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// timeGetsFor is timeGets for as many GETs as fit in d.
func timeGetsFor(ctx context.Context, hc *http.Client, url string, d time.Duration) ([]time.Duration, error) {
	var all []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		lat, err := timeGets(ctx, hc, url, 1, nil)
		if err != nil {
			return nil, err
		}
		all = append(all, lat...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all, nil
}

// appOf is the app a task of the listing belongs to: task ids are the
// app's id path joined by "_", a ".", and a uuid.
func appOf(apps []api.AppInfo, taskID string) string {
	prefix, _, _ := strings.Cut(taskID, ".")
	for _, a := range apps {
		if strings.ReplaceAll(strings.TrimPrefix(a.ID, "/"), "/", "_") == prefix {
			return a.ID
		}
	}
	return ""
}

func runningReports(sims []*simAgent) int64 {
	var n int64
	for _, s := range sims {
		n += s.running.Load()
	}
	return n
}

// simAgent speaks the agent's HTTP protocol: it long-polls its
// assignments and reports TASK_RUNNING for every task to run and
// TASK_KILLED for every task to kill, at once (no process).
type simAgent struct {
	id      string
	api     string // the master's API host:port
	c       *api.Client
	running atomic.Int64 // TASK_RUNNING reports sent

	mu       sync.Mutex
	reported map[string]string // task id → state last reported
	live     map[string]bool   // reported RUNNING, not failed by the bench
}

// takeLive picks one of the agent's RUNNING tasks the bench has not failed
// yet and forgets it ("" when there is none).
func (s *simAgent) takeLive(rng *rand.Rand) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) == 0 {
		return ""
	}
	n := rng.IntN(len(s.live))
	for id := range s.live {
		if n == 0 {
			delete(s.live, id)
			return id
		}
		n--
	}
	return ""
}

// leanAssignments is the part of api.Assignments a simulated agent uses:
// decoding only it keeps the bench's own CPU (which shares the machine
// with the master) low; a real agent runs on its own node.
type leanAssignments struct {
	Index uint64 `json:"index"`
	Tasks []struct {
		Task struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"task"`
		Goal string `json:"goal"`
	} `json:"tasks"`
}

func (s *simAgent) assignments(ctx context.Context, after uint64) (*leanAssignments, error) {
	url := fmt.Sprintf("http://%s/v1/agents/%s/assignments?index=%d&wait=30s", s.api, s.id, after)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	var as leanAssignments
	if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
		return nil, err
	}
	return &as, nil
}

func (s *simAgent) run(ctx context.Context) {
	var after uint64
	for ctx.Err() == nil {
		as, err := s.assignments(ctx, after)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		after = as.Index
		var ups []api.TaskStatus
		running := 0
		s.mu.Lock()
		for _, a := range as.Tasks {
			want := api.TaskRunning
			if a.Goal == api.GoalKill {
				want = api.TaskKilled
			}
			if api.Terminal(a.Task.State) || s.reported[a.Task.ID] == want {
				continue
			}
			s.reported[a.Task.ID] = want
			if want == api.TaskRunning {
				s.live[a.Task.ID] = true
				running++
			} else {
				delete(s.live, a.Task.ID)
			}
			ups = append(ups, api.TaskStatus{TaskID: a.Task.ID, State: want, Timestamp: time.Now()})
		}
		s.mu.Unlock()
		if len(ups) > 0 {
			if s.c.PostStatus(ctx, s.id, ups) == nil {
				s.running.Add(int64(running))
			}
		}
	}
}

// procCPU is the user+system CPU time pid has used (0 when unknown).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}
