// Command ui measures the web UI's apps page on a real `weft master`
// holding 1,000 apps and 10,000 RUNNING tasks (issue #17's targets):
//
//   - server time (whole body read), p99 ≤ 50 ms, side by side with GET
//     /v2/apps, the API listing the page is built from, of each request
//     the page makes: GET /ui/apps (the page with its first screenful of
//     rows), the rest of its rows (X-Weft-Rows-After, fetched by its
//     script once it is up), and what an open page asks after an event
//     (X-Weft-Since: the rows changed since its store index). With
//     nothing changed, and right after a change has committed (each
//     sample first changes an app's label); the target holds for all;
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
	"html"
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
	page, err := fetch(ctx, hc, base+"/ui/apps", nil)
	if err != nil {
		return err
	}
	first := strings.Count(string(page), "<tr data-app=")
	last, index := lastRow(page)
	if first == 0 || first > o.apps || index == "" {
		return fmt.Errorf("the apps page lists %d apps (last %q, index %q), want its first screenful of %d", first, last, index, o.apps)
	}
	restHdr := map[string]string{"X-Weft-Partial": "1", "X-Weft-Rows-After": last}
	rest, err := fetch(ctx, hc, base+"/ui/apps", restHdr)
	if err != nil {
		return err
	}
	if n := strings.Count(string(rest), "<tr data-app="); first+n != o.apps {
		return fmt.Errorf("the apps page lists %d apps and %d more after %s, want %d in all", first, n, last, o.apps)
	}
	uiLat, err := timeGets(ctx, hc, base+"/ui/apps", nil, o.gets)
	if err != nil {
		return err
	}
	restLat, err := timeGets(ctx, hc, base+"/ui/apps", restHdr, o.gets)
	if err != nil {
		return err
	}
	deltaLat, err := timeGets(ctx, hc, base+"/ui/apps", map[string]string{"X-Weft-Partial": "1", "X-Weft-Since": index}, o.gets)
	if err != nil {
		return err
	}
	apiLat, err := timeGets(ctx, hc, base+"/v2/apps", nil, o.gets)
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
	peerDCL, uiDCL, uiAll := []time.Duration{}, []time.Duration{}, []time.Duration{}
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
		// weft's page: every row in the DOM (the script fetched the rest).
		d, err := allRowsLoaded(bctx, o.apps)
		if err != nil {
			return err
		}
		uiAll = append(uiAll, d)
	}

	// 3. A task change visible on the open page.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/ui/apps"), chromedp.WaitVisible(chromedp.CSS("#apps"))); err != nil {
		return err
	}
	if err := eventually(10*time.Second, 50*time.Millisecond, "the page's event stream open and every row in it", func() error {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.getElementById("main").dataset.stream === "open" && document.querySelectorAll("tr[data-app]").length === %d`, o.apps)))
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
	after, err := timeGetsAfterChange(ctx, hc, c, base, index, last, max(o.gets/4, 20))
	if err != nil {
		return err
	}

	for _, l := range [][]time.Duration{peerDCL, uiDCL, uiAll, visible} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("GET /ui/apps: %d KiB of HTML with the first %d of %d apps, %d KiB for the rest (GET /v2/apps, the peer: the JSON it is built from)\n",
		len(page)>>10, first, o.apps, len(rest)>>10)
	ap99 := percentile(apiLat, 99)
	met := true
	server := func(figure string, ui, api []time.Duration) {
		u50, u99, a50, a99 := percentile(ui, 50), percentile(ui, 99), percentile(api, 50), percentile(api, 99)
		fmt.Printf("  server %-40s p50 %9v p99 %9v   /v2/apps p50 %9v p99 %9v   (%.2f× the 50 ms target)\n", figure, r(u50), r(u99), r(a50), r(a99), float64(u99)/float64(targetServer))
		ok := u99 <= targetServer
		met = met && ok
		emitRow(row{Bench: "ui", Figure: "server p99, " + figure, Weft: r(u99).String(), Peer: "GET /v2/apps (the listing the page is built from)",
			PeerValue: r(a99).String(), Ratio: float64(u99) / float64(a99), Target: "≤ 50ms", Met: ok})
	}
	server("page, idle", uiLat, apiLat)
	server("rest of the rows, idle", restLat, apiLat)
	server("live delta (X-Weft-Since), idle", deltaLat, apiLat)
	server("page, right after a change", after.page, after.api)
	server("rest of the rows, right after a change", after.rest, after.api)
	server("live delta, right after a change", after.delta, after.api)
	ud50, ud99, pd50, pd99 := percentile(uiDCL, 50), percentile(uiDCL, 99), percentile(peerDCL, 50), percentile(peerDCL, 99)
	fmt.Printf("  chromium DOMContentLoaded weft p50 %9v p99 %9v   static peer p50 %9v p99 %9v   ratio p50 %.2f×   (%.2f× the 500 ms target, p99)\n",
		r(ud50), r(ud99), r(pd50), r(pd99), float64(ud50)/float64(pd50), float64(ud99)/float64(targetDCL))
	peerDesc := "the same HTML served as a static file (CSS, script from weft)"
	emitRow(row{Bench: "ui", Figure: "chromium DOMContentLoaded p50", Weft: r(ud50).String(), Peer: peerDesc, PeerValue: r(pd50).String(), Ratio: float64(ud50) / float64(pd50), Target: "≤ 500ms", Met: ud50 <= targetDCL})
	emitRow(row{Bench: "ui", Figure: "chromium DOMContentLoaded p99", Weft: r(ud99).String(), Peer: peerDesc, PeerValue: r(pd99).String(), Ratio: float64(ud99) / float64(pd99), Target: "≤ 500ms", Met: ud99 <= targetDCL})
	met = met && ud99 <= targetDCL
	ua50, ua99 := percentile(uiAll, 50), percentile(uiAll, 99)
	fmt.Printf("  chromium every one of the %d rows in the page: p50 %9v p99 %9v after navigation (no target)\n", o.apps, r(ua50), r(ua99))
	emitRow(row{Bench: "ui", Figure: fmt.Sprintf("chromium all %d rows in the DOM p99 (after navigation)", o.apps), Weft: r(ua99).String(), Peer: noPeer, Target: "none (informative)", Met: true})
	v50, v99 := percentile(visible, 50), percentile(visible, 99)
	fmt.Printf("  a task change visible on the open page: p50 %v p99 %v over %d changes (%.2f× the 1 s target, p99)\n",
		r(v50), r(v99), len(visible), float64(v99)/float64(targetVisible))
	emitRow(row{Bench: "ui", Figure: "task change visible on the open apps page p99", Weft: r(v99).String(), Peer: noPeer, Target: "≤ 1s", Met: v99 <= targetVisible})
	met = met && v99 <= targetVisible
	fmt.Printf("  load average after the run: %s (the machine is shared)\n", loadAvg())
	verdict := "PASS"
	if !met {
		verdict = "FAIL"
	}
	fmt.Printf("SUMMARY ui %s: server p99 page %v idle, %v after a change, live delta %v after a change (target 50ms; /v2/apps p99 %v idle, %v after a change); DOMContentLoaded p99 %v p50 %v (%.2f× static, target 500ms); change visible p99 %v p50 %v (target 1s); %d apps, %d tasks\n",
		verdict, r(percentile(uiLat, 99)), r(percentile(after.page, 99)), r(percentile(after.delta, 99)), r(ap99), r(percentile(after.api, 99)),
		r(ud99), r(ud50), float64(ud50)/float64(pd50), r(v99), r(v50), o.apps, want)
	if verdict != "PASS" {
		return errMissed
	}
	return nil
}

// lastRow returns the id of the last app row of a page and the page's
// store index (data-index).
func lastRow(page []byte) (id, index string) {
	s := string(page)
	if i := strings.LastIndex(s, `<tr data-app="`); i >= 0 {
		id = html.UnescapeString(s[i+len(`<tr data-app="`):][:strings.Index(s[i+len(`<tr data-app="`):], `"`)])
	}
	if i := strings.Index(s, `data-index="`); i >= 0 {
		rest := s[i+len(`data-index="`):]
		index = rest[:strings.Index(rest, `"`)]
	}
	return id, index
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

func fetch(ctx context.Context, hc *http.Client, u string, hdr map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
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
func timeGets(ctx context.Context, hc *http.Client, u string, hdr map[string]string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := fetch(ctx, hc, u, hdr); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// afterChange are server times each taken right after a change.
type afterChange struct{ page, rest, delta, api []time.Duration }

// timeGetsAfterChange takes n samples of each request, each right after a
// change of one app's label has committed (PUT /v2/apps/{id} returns once
// its deployment is in the store): the page, the rest of its rows, the
// live delta since the index of the previous delta's answer, and GET
// /v2/apps, in turn. The app, made here, has no instances, so the change
// starts nothing.
func timeGetsAfterChange(ctx context.Context, hc *http.Client, c *api.Client, base, index, last string, n int) (*afterChange, error) {
	const id = "/bench/ui/tick"
	if _, err := c.PutApp(ctx, id, []byte(`{"cmd":"exec sleep 600","cpus":0.01,"mem":8,"instances":0,"labels":{"team":"bench"}}`), false); err != nil {
		return nil, fmt.Errorf("creating %s: %w", id, err)
	}
	out := &afterChange{}
	for i := 0; i < 4*n; i++ {
		def, _ := json.Marshal(map[string]any{"labels": map[string]string{"team": "bench", "tick": fmt.Sprint(i)}})
		if _, err := c.PutApp(ctx, id, def, true); err != nil {
			return nil, fmt.Errorf("changing %s: %w", id, err)
		}
		u, hdr, dst := base+"/ui/apps", map[string]string(nil), &out.page
		switch i % 4 {
		case 1:
			hdr, dst = map[string]string{"X-Weft-Partial": "1", "X-Weft-Rows-After": last}, &out.rest
		case 2:
			hdr, dst = map[string]string{"X-Weft-Partial": "1", "X-Weft-Since": index}, &out.delta
		case 3:
			u, dst = base+"/v2/apps", &out.api
		}
		t0 := time.Now()
		b, err := fetch(ctx, hc, u, hdr)
		if err != nil {
			return nil, err
		}
		*dst = append(*dst, time.Since(t0))
		if i%4 == 2 {
			var d struct {
				Index string `json:"index"`
				Full  string `json:"full"`
				Rows  []struct {
					ID string `json:"id"`
				} `json:"rows"`
			}
			if err := json.Unmarshal(b, &d); err != nil || d.Index == "" {
				return nil, fmt.Errorf("the live delta: %v: %.300s", err, b)
			}
			// (The first delta reaches back to the page's own index,
			// before the task changes watched above.)
			if i > 2 && (d.Full != "" || len(d.Rows) > 1 || (len(d.Rows) == 1 && d.Rows[0].ID != id)) {
				return nil, fmt.Errorf("the live delta since %s after a change of %s: full page %v, rows %v; want at most that one row", index, id, d.Full != "", d.Rows)
			}
			index = d.Index
		}
	}
	for _, l := range [][]time.Duration{out.page, out.rest, out.delta, out.api} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	return out, nil
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
		if r.Header.Get("X-Weft-Partial") != "" { // the page's script
			proxy.ServeHTTP(w, r)
			return
		}
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
// navigation timing entry's domContentLoadedEventEnd. A navigation that
// Chromium aborted because the host's network changed (other tests on the
// machine add and remove links) is no load of the page: it is tried
// again, a second later, up to ten times.
func domContentLoaded(ctx context.Context, u string) (time.Duration, error) {
	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for try := 1; ; try++ {
		err := chromedp.Do(tctx, chromedp.Navigate("about:blank"), chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("#apps")))
		if err != nil && strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") && try < 10 {
			fmt.Printf("loading %s: %v; again in a second\n", u, err)
			time.Sleep(time.Second) // links come and go in bursts
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("loading %s: %w", u, err)
		}
		break
	}
	ms, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`))
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("reading DOMContentLoaded of %s: %v (%v)", u, err, ms)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// allRowsLoaded waits until the page just loaded has all n rows (its
// script fetched the rest) and returns when that was, after navigation.
func allRowsLoaded(ctx context.Context, n int) (time.Duration, error) {
	var ms float64
	err := eventually(30*time.Second, 5*time.Millisecond, "every row in the page", func() error {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](fmt.Sprintf(`document.querySelectorAll("tr[data-app]").length === %d ? performance.now() : 0`, n)))
		if err != nil || v == 0 {
			return fmt.Errorf("not yet (%v)", err)
		}
		ms = v
		return nil
	})
	return time.Duration(ms * float64(time.Millisecond)), err
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
