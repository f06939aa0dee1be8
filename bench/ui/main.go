// Command ui measures the web UI's apps page on a real `weft master`
// holding 1,000 apps and 10,000 RUNNING tasks (issue #17's targets):
//
//   - server time of GET /ui/apps (whole body read), p99 ≤ 50 ms, side by
//     side with GET /v2/apps, the API listing the page is built from: with
//     nothing changed (both keep their work per store index), and right
//     after a change has committed (what a live page asks for after an
//     event); the target holds for both;
//   - DOMContentLoaded in headless Chromium (Debian's chromium, driven by
//     chromedp), ≤ 500 ms, side by side with the same HTML bytes served
//     as a static file (the page's own CSS and script still from weft);
//   - a task change visible ≤ 1 s after its event: a simulated agent
//     reports a task failed (the POST returns once the master has
//     committed it and published status_update_event), and the open
//     apps page shows that app's row at 9 / 10 through its /v2/events
//     stream, with no reload.
//
// The agents are simulated as in bench/listing: each joins the master's
// gossip and speaks the agent HTTP protocol, reporting TASK_RUNNING for
// every task it is given (while the visibility phase holds a replacement
// back, so the change stays on screen until it is measured).
//
//	go run ./bench/ui [-apps 1000 -instances 10 -agents 20 -gets 200 -loads 15 -changes 15]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/sched/api"
)

const (
	targetServer  = 50 * time.Millisecond
	targetDCL     = 500 * time.Millisecond
	targetVisible = time.Second
)

var errMissed = errors.New("target missed")

func main() {
	o := opts{}
	flag.IntVar(&o.apps, "apps", 1000, "apps")
	flag.IntVar(&o.instances, "instances", 10, "instances per app")
	flag.IntVar(&o.agents, "agents", 20, "simulated agents")
	flag.IntVar(&o.gets, "gets", 200, "timed GETs of each page")
	flag.IntVar(&o.loads, "loads", 15, "page loads in Chromium (each of weft and the static peer)")
	flag.IntVar(&o.changes, "changes", 15, "task changes watched on the open page")
	flag.Parse()
	cleanupOnSignal()
	if err := run(o); errors.Is(err, errMissed) {
		exit(1)
	} else if err != nil {
		fmt.Printf("ui FAILED: %v\nSUMMARY ui FAIL: %v\n", err, err)
		exit(1)
	}
	exit(0)
}

type opts struct{ apps, instances, agents, gets, loads, changes int }

func run(o opts) error {
	bin, err := weftBin()
	if err != nil {
		return err
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return fmt.Errorf("chromium is not installed (apt-get install chromium)")
	}
	dir, err := tempDir("weft-bench-ui-")
	if err != nil {
		return err
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	gossip := fmt.Sprintf("127.0.0.1:%d", freePort())
	want := o.apps * o.instances
	fmt.Printf("ui: weft master (%s) + %d simulated agents, %d apps × %d instances = %d tasks; load average %s\n",
		bin, o.agents, o.apps, o.instances, want, loadAvg())
	master, err := startProc(dir, "master", bin, "master", "--no-mesh", "--node-name", "m1", "--site", "bench",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", apiAddr, "--raft-addr", "",
		"--gossip-addr", gossip, "--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0")
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
	sims, err := startAgents(ctx, o, apiAddr, gossip, c)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := createApps(ctx, c, o); err != nil {
		return err
	}
	if err := eventually(5*time.Minute, 500*time.Millisecond, fmt.Sprintf("%d tasks RUNNING", want), func() error {
		return allRunning(ctx, c, o.apps, want)
	}); err != nil {
		return err
	}
	fmt.Printf("setup: %d apps and %d RUNNING tasks in %.1fs\n", o.apps, want, time.Since(start).Seconds())

	// 1. Server time, the page and the API listing it is built from.
	base := "http://" + apiAddr
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	page, err := fetch(ctx, hc, base+"/ui/apps")
	if err != nil {
		return err
	}
	if n := strings.Count(string(page), "<tr data-app="); n != o.apps {
		return fmt.Errorf("the apps page lists %d apps, want %d", n, o.apps)
	}
	uiLat, err := timeGets(ctx, hc, base+"/ui/apps", o.gets)
	if err != nil {
		return err
	}
	apiLat, err := timeGets(ctx, hc, base+"/v2/apps", o.gets)
	if err != nil {
		return err
	}

	// 2. DOMContentLoaded in Chromium, weft's page and the same bytes
	// served statically (everything else proxied to weft).
	peer, err := staticPeer(page, base)
	if err != nil {
		return err
	}
	defer peer.Close()
	bctx, bcancel := browser(chromium)
	defer bcancel()
	// The first action starts the browser, bound to bctx.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		return fmt.Errorf("starting chromium: %w", err)
	}
	peerDCL, uiDCL := []time.Duration{}, []time.Duration{}
	for i := 0; i < o.loads; i++ { // alternating, peer first
		for _, side := range []struct {
			url string
			out *[]time.Duration
		}{{"http://" + peer.Addr().String() + "/ui/apps", &peerDCL}, {base + "/ui/apps", &uiDCL}} {
			d, err := domContentLoaded(bctx, side.url)
			if err != nil {
				return err
			}
			*side.out = append(*side.out, d)
		}
	}

	// 3. A task change visible on the open page.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/ui/apps"), chromedp.WaitVisible(chromedp.CSS("#apps"))); err != nil {
		return err
	}
	if err := eventually(10*time.Second, 50*time.Millisecond, "the page's event stream open", func() error {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("main").dataset.stream === "open"`))
		if err != nil || !ok {
			return fmt.Errorf("not yet (%v)", err)
		}
		return nil
	}); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(7, 9))
	var visible []time.Duration
	for i := 0; i < o.changes; i++ {
		d, err := watchChange(ctx, bctx, c, sims, rng, o.instances)
		if err != nil {
			return err
		}
		visible = append(visible, d)
	}

	// 4. Server time right after a change: what every open page asks for
	// after an event. Both pages keep their work per store index, so the
	// timed GETs of 1. alone would measure only the kept answer. Each
	// sample first changes a label of an app of no instances (a deployment
	// with nothing to start), then times the page; the two pages alternate.
	uiChanged, apiChanged, err := timeGetsAfterChange(ctx, hc, c, base, max(o.gets/4, 20))
	if err != nil {
		return err
	}

	sort.Slice(peerDCL, func(i, j int) bool { return peerDCL[i] < peerDCL[j] })
	sort.Slice(uiDCL, func(i, j int) bool { return uiDCL[i] < uiDCL[j] })
	sort.Slice(visible, func(i, j int) bool { return visible[i] < visible[j] })
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("GET /ui/apps: %.1f MiB of HTML for %d apps (GET /v2/apps, the peer: the JSON it is built from)\n", float64(len(page))/(1<<20), o.apps)
	up50, up99 := percentile(uiLat, 50), percentile(uiLat, 99)
	ap50, ap99 := percentile(apiLat, 50), percentile(apiLat, 99)
	fmt.Printf("  server   /ui/apps p50 %9v p99 %9v   /v2/apps p50 %9v p99 %9v   ratio p99 %.2f×   (%.2f× the 50 ms target)\n",
		r(up50), r(up99), r(ap50), r(ap99), float64(up99)/float64(ap99), float64(up99)/float64(targetServer))
	uc50, uc99 := percentile(uiChanged, 50), percentile(uiChanged, 99)
	ac50, ac99 := percentile(apiChanged, 50), percentile(apiChanged, 99)
	fmt.Printf("  after a change /ui/apps p50 %9v p99 %9v   /v2/apps p50 %9v p99 %9v   ratio p99 %.2f×   (%.2f× the 50 ms target)\n",
		r(uc50), r(uc99), r(ac50), r(ac99), float64(uc99)/float64(ac99), float64(uc99)/float64(targetServer))
	ud50, udMax := percentile(uiDCL, 50), uiDCL[len(uiDCL)-1]
	pd50, pdMax := percentile(peerDCL, 50), peerDCL[len(peerDCL)-1]
	fmt.Printf("  chromium DOMContentLoaded weft p50 %9v max %9v   static peer p50 %9v max %9v   ratio p50 %.2f×   (%.2f× the 500 ms target, max)\n",
		r(ud50), r(udMax), r(pd50), r(pdMax), float64(ud50)/float64(pd50), float64(udMax)/float64(targetDCL))
	v50, vMax := percentile(visible, 50), visible[len(visible)-1]
	fmt.Printf("  a task change visible on the open page: p50 %v max %v over %d changes (%.2f× the 1 s target, max)\n",
		r(v50), r(vMax), len(visible), float64(vMax)/float64(targetVisible))
	fmt.Printf("  load average after the run: %s (the machine is shared)\n", loadAvg())
	verdict := "PASS"
	if up99 > targetServer || uc99 > targetServer || udMax > targetDCL || vMax > targetVisible {
		verdict = "FAIL"
	}
	fmt.Printf("SUMMARY ui %s: server p99 %v unchanged, %v after a change (%.2f×, %.2f× /v2/apps; target 50ms); DOMContentLoaded max %v p50 %v (%.2f× static, target 500ms); change visible max %v p50 %v (target 1s); %d apps, %d tasks\n",
		verdict, r(up99), r(uc99), float64(up99)/float64(ap99), float64(uc99)/float64(ac99), r(udMax), r(ud50), float64(ud50)/float64(pd50), r(vMax), r(v50), o.apps, want)
	if verdict != "PASS" {
		return errMissed
	}
	return nil
}

func startAgents(ctx context.Context, o opts, apiAddr, gossip string, c *api.Client) ([]*simAgent, error) {
	var awg sync.WaitGroup
	actx, acancel := context.WithCancel(ctx)
	atExit(func() {
		acancel()
		done := make(chan struct{})
		go func() { awg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	})
	perAgent := (o.apps*o.instances + o.agents - 1) / o.agents
	sims := make([]*simAgent, o.agents)
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
			return nil, fmt.Errorf("simulated agent %s: %w", name, err)
		}
		s := &simAgent{id: name, api: apiAddr, c: c, reported: map[string]string{}, live: map[string]string{}}
		sims[i] = s
		awg.Add(2)
		go func() { defer awg.Done(); _ = m.Run(actx) }()
		go func() { defer awg.Done(); s.run(actx) }()
	}
	return sims, eventually(60*time.Second, 200*time.Millisecond, "every simulated agent alive", func() error {
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
		if alive != o.agents {
			return fmt.Errorf("%d agents alive, want %d", alive, o.agents)
		}
		return nil
	})
}

func createApps(ctx context.Context, c *api.Client, o opts) error {
	ids := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				def := map[string]any{"id": id, "cmd": "exec sleep 600", "cpus": 0.01, "mem": 8, "instances": o.instances,
					"labels": map[string]string{"team": "bench"}}
				body, _ := json.Marshal(def)
				if _, err := c.PutApp(ctx, id, body, false); err != nil {
					select {
					case errs <- fmt.Errorf("PUT %s: %w", id, err):
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < o.apps; i++ {
		ids <- fmt.Sprintf("/bench/ui/g%02d/app-%04d", i%10, i)
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func allRunning(ctx context.Context, c *api.Client, apps, want int) error {
	list, err := c.Apps(ctx)
	if err != nil {
		return err
	}
	running, deploying := 0, 0
	for _, a := range list {
		running += a.TasksRunning
		deploying += len(a.Deployments)
	}
	if len(list) != apps || running != want || deploying != 0 {
		return fmt.Errorf("%d apps, %d tasks running, %d deployments", len(list), running, deploying)
	}
	return nil
}

func fetch(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, b)
	}
	return b, err
}

// timeGets times n sequential GETs, whole body read; errors fail the run.
func timeGets(ctx context.Context, hc *http.Client, u string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := fetch(ctx, hc, u); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// timeGetsAfterChange takes n samples of each page, each right after a
// change of one app's label has committed (PUT /v2/apps/{id} returns once
// its deployment is in the store). The app, made here, has no instances,
// so the change starts nothing.
func timeGetsAfterChange(ctx context.Context, hc *http.Client, c *api.Client, base string, n int) (ui, v2 []time.Duration, err error) {
	const id = "/bench/ui/tick"
	if _, err := c.PutApp(ctx, id, []byte(`{"cmd":"exec sleep 600","cpus":0.01,"mem":8,"instances":0,"labels":{"team":"bench"}}`), false); err != nil {
		return nil, nil, fmt.Errorf("creating %s: %w", id, err)
	}
	for i := 0; i < 2*n; i++ {
		def, _ := json.Marshal(map[string]any{"labels": map[string]string{"team": "bench", "tick": fmt.Sprint(i)}})
		if _, err := c.PutApp(ctx, id, def, true); err != nil {
			return nil, nil, fmt.Errorf("changing %s: %w", id, err)
		}
		u, out := base+"/ui/apps", &ui
		if i%2 == 1 {
			u, out = base+"/v2/apps", &v2
		}
		t0 := time.Now()
		if _, err := fetch(ctx, hc, u); err != nil {
			return nil, nil, err
		}
		*out = append(*out, time.Since(t0))
	}
	sort.Slice(ui, func(i, j int) bool { return ui[i] < ui[j] })
	sort.Slice(v2, func(i, j int) bool { return v2[i] < v2[j] })
	return ui, v2, nil
}

// staticPeer serves page at /ui/apps from memory and proxies the rest
// (the page's CSS, script and event stream) to weft.
func staticPeer(page []byte, base string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	target, _ := url.Parse(base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/apps", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.Handle("/", proxy)
	go func() { _ = http.Serve(ln, mux) }()
	return ln, nil
}

func browser(path string) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	return ctx, func() { cancel(); cancelA() }
}

// domContentLoaded loads u in a fresh navigation and reads the
// navigation timing entry's domContentLoadedEventEnd.
func domContentLoaded(ctx context.Context, u string) (time.Duration, error) {
	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank"), chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("#apps"))); err != nil {
		return 0, fmt.Errorf("loading %s: %w", u, err)
	}
	ms, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`))
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("reading DOMContentLoaded of %s: %v (%v)", u, err, ms)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// watchChange fails one RUNNING task (its replacement held back) and
// times until the open apps page shows the app's row at instances-1; then
// it lets the replacement run and waits for the row to be whole again.
func watchChange(ctx, bctx context.Context, c *api.Client, sims []*simAgent, rng *rand.Rand, instances int) (time.Duration, error) {
	s := sims[rng.IntN(len(sims))]
	id, app := s.takeLive(rng)
	if id == "" {
		return 0, fmt.Errorf("agent %s has no RUNNING task left", s.id)
	}
	for _, x := range sims {
		x.hold.Store(true)
	}
	defer func() {
		for _, x := range sims {
			x.release(ctx)
		}
	}()
	sel := fmt.Sprintf(`tr[data-app=%q]`, app)
	watch := fmt.Sprintf(`(() => { window.__seen = 0; const want = %q;
		const check = () => { const r = document.querySelector(%q); if (r && r.children[2].textContent.trim() === want && !window.__seen) { window.__seen = Date.now(); } };
		new MutationObserver(check).observe(document.getElementById("main"), {childList: true, subtree: true}); check(); return true; })()`,
		fmt.Sprintf("%d / %d", instances-1, instances), sel)
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](watch)); err != nil {
		return 0, err
	}
	t0 := time.Now() // the POST returns once the change is committed and its event published
	if err := c.PostStatus(ctx, s.id, []api.TaskStatus{{TaskID: id, State: api.TaskFailed, Message: "bench: task changed", Timestamp: time.Now()}}); err != nil {
		return 0, err
	}
	var seen float64
	if err := eventually(10*time.Second, 10*time.Millisecond, "the change on the page", func() error {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`window.__seen || 0`))
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("row of %s not yet at %d / %d", app, instances-1, instances)
		}
		seen = v
		return nil
	}); err != nil {
		return 0, err
	}
	d := time.UnixMilli(int64(seen)).Sub(t0)
	for _, x := range sims {
		x.release(ctx)
	}
	return max(d, 0), eventually(30*time.Second, 50*time.Millisecond, "the row whole again", func() error {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const r = document.querySelector(%q); return !!r && r.children[2].textContent.trim() === %q && r.children[1].textContent.trim() === "Running"; })()`,
			sel, fmt.Sprintf("%d / %d", instances, instances))))
		if err != nil || !ok {
			return fmt.Errorf("not yet (%v)", err)
		}
		return nil
	})
}
