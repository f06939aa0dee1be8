package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/weftnet/weft/mesh/meshtest"
	"github.com/weftnet/weft/sched/api"
)

// browser is a headless Chromium driven by chromedp, writing screenshots
// to dir.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
}

// uiScreenshotDir is where the UI tests leave their screenshots:
// $WEFT_UI_SCREENSHOTS, else bin/ui-screenshots of the repository (which
// `make test` prints).
func uiScreenshotDir(t *testing.T) string {
	dir := os.Getenv("WEFT_UI_SCREENSHOTS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "bin", "ui-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs Debian's chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, base: base, dir: uiScreenshotDir(t)}
}

// run runs actions with a time limit, failing the test on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v\n--- page main:\n%s", what, err, tail(html, 3000))
	}
}

// waitJS waits until the JavaScript expression is true.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("waiting %v for %s (%s): %v\n--- page main:\n%s", timeout, what, expr, err, tail(html, 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("reading %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// eval evaluates a JavaScript expression into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return loc
}

// shot writes a full-page PNG screenshot.
func (b *browser) shot(name string) {
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestUI drives the web UI in a real browser against the real binary: a
// master at site aws and agents at sites aws and london, as separate weft
// processes on loopback (gossip only, no WireGuard: the mesh matrix then
// shows every pair as "gossip only", with the serf RTT estimate). It
// creates an app from JSON and sees the API's 422 beside the bad field,
// watches the page update itself to healthy, scales through the
// confirmation, reads a task's log as it follows, and sees the job graph,
// the nodes grouped by site and the mesh matrix, writing a screenshot of
// each screen.
func TestUI(t *testing.T) {
	cl := startCluster(t, agentSpec{name: "a1", site: "aws"}, agentSpec{name: "a2", site: "london"})
	b := newBrowser(t, "http://"+cl.apiAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// / goes to the UI; without ACLs there is no login.
	b.run("open the UI", chromedp.Navigate(b.base+"/"), chromedp.WaitVisible(chromedp.CSS("#apps")))
	if loc := b.location(); !strings.HasSuffix(loc, "/ui/apps") {
		t.Fatalf("/ led to %s, want /ui/apps", loc)
	}
	b.run("login page", chromedp.Navigate(b.base+"/ui/login"), chromedp.WaitVisible(chromedp.CSS("#login")))
	if s := b.text("main"); !strings.Contains(s, "no login is needed") {
		t.Fatalf("open mode login page says %q", s)
	}

	// Create from JSON: a negative cpus comes back as the API's 422,
	// written beside the "cpus" line.
	def := map[string]any{
		"id": "/shop/web", "cmd": fmt.Sprintf("echo ui-log-line $MESOS_TASK_ID; exec %s -pids %s", httpd(t), cl.pidDir),
		"cpus": -1, "mem": 32, "instances": 1, "labels": map[string]string{"tier": "front"},
		"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
		"healthChecks": []map[string]any{{"protocol": "HTTP", "path": "/health", "portIndex": 0,
			"gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2, "delaySeconds": 0}},
	}
	bad, _ := json.MarshalIndent(def, "", "  ")
	b.run("create with a bad field",
		chromedp.Navigate(b.base+"/ui/apps"), chromedp.Click(chromedp.CSS("#create-app")),
		chromedp.WaitVisible(chromedp.CSS("#json")),
		chromedp.SetValue(chromedp.CSS("#json"), string(bad)),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#annotated")))
	if s := b.text(`tr.bad[data-path="/cpus"]`); !strings.Contains(s, `"cpus": -1`) || !strings.Contains(s, "←") {
		t.Fatalf("the 422 is not beside the cpus field: %q", s)
	}
	if s := b.text("#api-error"); !strings.Contains(s, "422") {
		t.Fatalf("no 422 shown: %q", s)
	}
	b.shot("03-create-422")

	// Fixed, it is created, and the app page follows it to healthy by
	// itself (live updates from /v2/events, no reload).
	def["cpus"] = 0.1
	good, _ := json.MarshalIndent(def, "", "  ")
	b.run("create", chromedp.SetValue(chromedp.CSS("#json"), string(good)), chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#app-id")))
	if got := b.text("#app-id"); got != "/shop/web" {
		t.Fatalf("after create the page shows %q", got)
	}
	b.waitJS("the live stream to open", `document.getElementById("main").dataset.stream === "open"`, 10*time.Second)
	b.waitJS("1 healthy, Running, without a reload",
		`(document.getElementById("app-healthy")||{}).textContent === "1" && document.getElementById("app-status").textContent === "Running"`, 60*time.Second)
	b.shot("04-app-healthy")

	// Scale to 2 through the confirmation.
	b.run("scale", chromedp.SetValue(chromedp.CSS("#scale-n"), "2"), chromedp.Click(chromedp.CSS("#scale")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")))
	if q := b.text("#question"); !strings.Contains(q, "to 2 instance") {
		t.Fatalf("confirmation asks %q", q)
	}
	b.shot("05-confirm-scale")
	b.run("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitVisible(chromedp.CSS("#app-id")))
	b.waitJS("2 healthy", `(document.getElementById("app-healthy")||{}).textContent === "2"`, 60*time.Second)
	if n := b.text("#app-instances"); n != "2" {
		t.Fatalf("instances %s after scaling", n)
	}
	sites := eval[[]string](b, `Array.from(document.querySelectorAll("#tasks tbody tr")).map(r => r.children[2].textContent)`)
	if len(sites) != 2 || (sites[0] != "aws" && sites[0] != "london") || (sites[1] != "aws" && sites[1] != "london") {
		t.Fatalf("task sites: %q, want two of aws and london", sites)
	}

	// The apps list: status, health and the group tree.
	b.run("apps list", chromedp.Navigate(b.base+"/ui/apps"), chromedp.WaitVisible(chromedp.CSS(`tr[data-app="/shop/web"]`)))
	if s := b.text(`tr[data-app="/shop/web"]`); !strings.Contains(s, "Running") || !strings.Contains(s, "2 / 2") {
		t.Fatalf("apps row: %q", s)
	}
	b.run("group tree", chromedp.Click(chromedp.CSS(`a[data-group="/shop"]`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-app="/shop/web"]`)))
	if loc := b.location(); !strings.Contains(loc, "group=%2Fshop") {
		t.Fatalf("group filter is not in the link: %s", loc)
	}
	b.shot("01-apps")
	b.run("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#apps")))
	b.shot("02-apps-phone")
	b.run("laptop width", chromedp.EmulateViewport(1280, 900), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#apps")))
	b.run("back", chromedp.NavigateBack(), chromedp.WaitVisible(chromedp.CSS("#apps")))

	// A longer list, followed live: apps made while the page is open
	// appear in their place and a deleted one goes, row by row, with no
	// reload; loaded again, the page carries its first screenful and
	// fetches the rest.
	b.run("apps page, open", chromedp.Navigate(b.base+"/ui/apps"), chromedp.WaitVisible(chromedp.CSS(`tr[data-app="/shop/web"]`)))
	b.waitJS("the live stream to open", `document.getElementById("main").dataset.stream === "open"`, 10*time.Second)
	if !eval[bool](b, `window.noReload = true`) {
		t.Fatal("marking the page")
	}
	const bulk = 70
	for i := 0; i < bulk; i++ {
		id := fmt.Sprintf("/bulk/b%02d", i)
		if _, err := cl.c.PutApp(ctx, id, []byte(`{"cmd":"sleep 600","cpus":0.01,"mem":8,"instances":0}`), false); err != nil {
			t.Fatal(err)
		}
	}
	b.waitJS("the new apps on the open page", fmt.Sprintf(`document.querySelectorAll('tr[data-app^="/bulk/"]').length === %d`, bulk), 60*time.Second)
	if _, err := cl.c.DeleteApp(ctx, "/bulk/b07", true); err != nil {
		t.Fatal(err)
	}
	b.waitJS("the deleted app gone from the open page", `document.querySelectorAll('tr[data-app="/bulk/b07"]').length === 0`, 30*time.Second)
	listed := eval[[]string](b, `Array.from(document.querySelectorAll("tr[data-app]")).map(r => r.dataset.app)`)
	if len(listed) != bulk || !sort.StringsAreSorted(listed) || !eval[bool](b, `window.noReload === true`) || b.text("#apps-count") != fmt.Sprintf("%d of %d apps", bulk, bulk) {
		t.Fatalf("the open page, followed live: reloaded %v, %q, rows %v", !eval[bool](b, `window.noReload === true`), b.text("#apps-count"), listed)
	}
	b.run("apps page, again", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#apps")))
	b.waitJS("the rows after the first screenful", fmt.Sprintf(`document.querySelectorAll("tr[data-app]").length === %d && !document.querySelector("tr.more")`, bulk), 30*time.Second)
	if _, err := cl.c.Do(ctx, http.MethodDelete, "/v2/groups/bulk?force=true", nil, nil); err != nil {
		t.Fatal(err)
	}

	// A task's log, fetched from its agent and followed.
	b.run("logs", chromedp.Navigate(b.base+"/ui/app/shop/web"), chromedp.WaitVisible(chromedp.CSS("#tasks a.log")),
		chromedp.Click(chromedp.CSS("#tasks a.log")), chromedp.WaitVisible(chromedp.CSS("#log")))
	b.waitJS("the log line", `document.getElementById("log").textContent.includes("ui-log-line shop_web.")`, 15*time.Second)
	b.shot("06-task-log")

	// An app no agent can take: its page says why, in words, and shows
	// its deployment's progress.
	nowhere := []byte(`{"id":"/shop/nowhere","cmd":"sleep 600","cpus":0.01,"mem":8,"instances":1,"constraints":[["hostname","LIKE","nowhere"]]}`)
	if _, err := cl.c.PutApp(ctx, "/shop/nowhere", nowhere, false); err != nil {
		t.Fatal(err)
	}
	b.run("unplaceable app", chromedp.Navigate(b.base+"/ui/app/shop/nowhere"), chromedp.WaitVisible(chromedp.CSS("#app-id")))
	b.waitJS("why not placed", `(document.getElementById("waiting")||{textContent:""}).textContent.includes("its constraints rule the agent out (hostname LIKE nowhere)")`, 30*time.Second)
	if s := b.text("#deployments"); !strings.Contains(s, "0 of 1 instances up") {
		t.Fatalf("deployment progress: %q", s)
	}
	if st := b.text("#app-status"); st != "Deploying" {
		t.Fatalf("the unplaceable app is %q, want Deploying", st)
	}
	b.shot("06b-why-not-placed")
	// Delete it, through the confirmation (the deployment still holds it:
	// the API's 409 is shown, then forced).
	b.run("delete", chromedp.Click(chromedp.CSS("#delete")), chromedp.WaitVisible(chromedp.CSS("#confirm-yes")))
	if q := b.text("#question"); !strings.Contains(q, "Delete /shop/nowhere?") {
		t.Fatalf("confirmation asks %q", q)
	}
	b.run("confirm delete", chromedp.Click(chromedp.CSS("#confirm-yes")))
	b.waitJS("the deployment's 409, offered as a force", `(document.getElementById("question")||{textContent:""}).textContent.includes("Force it?")`, 15*time.Second)
	b.run("force delete", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitVisible(chromedp.CSS("#apps")))
	if n := eval[int](b, `document.querySelectorAll('tr[data-app="/shop/nowhere"]').length`); n != 0 {
		t.Fatalf("/shop/nowhere still listed after delete")
	}

	// Jobs: a chain, drawn as a graph.
	for _, j := range []struct{ path, body string }{
		{"/scheduler/iso8601", `{"name":"extract","command":"echo extract","schedule":"R/2030-01-01T00:00:00Z/PT6H","cpus":0.1,"mem":16}`},
		{"/scheduler/dependency", `{"name":"transform","command":"echo transform","parents":["extract"],"cpus":0.1,"mem":16}`},
		{"/scheduler/dependency", `{"name":"load","command":"echo load","parents":["transform"],"cpus":0.1,"mem":16}`},
	} {
		req, _ := http.NewRequestWithContext(ctx, "POST", b.base+j.path, strings.NewReader(j.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("adding a job: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	b.run("jobs", chromedp.Navigate(b.base+"/ui/jobs"), chromedp.WaitVisible(chromedp.CSS("#job-graph")))
	edges := eval[int](b, `document.querySelectorAll('#job-graph line.edge[data-from="extract"][data-to="transform"], #job-graph line.edge[data-from="transform"][data-to="load"]').length`)
	boxes := eval[int](b, `document.querySelectorAll("#job-graph g.job").length`)
	if edges != 2 || boxes != 3 {
		t.Fatalf("job graph has %d of the 2 edges and %d boxes (want 3)", edges, boxes)
	}
	if s := b.text(`tr[data-job="extract"]`); !strings.Contains(s, "every 6 hours") {
		t.Fatalf("schedule in words: %q", s)
	}
	b.shot("07-jobs")
	// Run now, the run in the history, its log.
	b.run("job page", chromedp.Click(chromedp.CSS(`tr[data-job="extract"] a`)), chromedp.WaitVisible(chromedp.CSS("#run-now")))
	b.run("run now", chromedp.Click(chromedp.CSS("#run-now")), chromedp.WaitVisible(chromedp.CSS("#runs")))
	b.waitJS("the run succeeded", `!!document.querySelector("#runs .run.succeeded")`, 60*time.Second)
	b.shot("07b-job-runs")
	b.run("run log", chromedp.Click(chromedp.CSS("#runs a.log")), chromedp.WaitVisible(chromedp.CSS("#log")))
	b.waitJS("the run's output", `document.getElementById("log").textContent.includes("extract")`, 15*time.Second)

	// Nodes grouped by site.
	b.run("nodes", chromedp.Navigate(b.base+"/ui/nodes"), chromedp.WaitVisible(chromedp.CSS("#cluster-totals")))
	aws := eval[[]string](b, `Array.from(document.querySelectorAll('section[data-site="aws"] tr[data-node]')).map(r => r.dataset.node)`)
	london := eval[[]string](b, `Array.from(document.querySelectorAll('section[data-site="london"] tr[data-node]')).map(r => r.dataset.node)`)
	if strings.Join(aws, ",") != "a1,m1" || strings.Join(london, ",") != "a2" {
		t.Fatalf("nodes by site: aws %v, london %v", aws, london)
	}
	if s := b.text("#cluster-totals"); !strings.Contains(s, "3 node(s)") || !strings.Contains(s, "CPUs 0.20 / 8") {
		t.Fatalf("cluster totals: %q", s)
	}
	b.shot("08-nodes")

	// The mesh matrix: every node's own view, in site order.
	b.run("mesh", chromedp.Navigate(b.base+"/ui/mesh"), chromedp.WaitVisible(chromedp.CSS("#mesh")))
	cols := eval[[]string](b, `Array.from(document.querySelectorAll("#mesh th[data-col]")).map(c => c.dataset.col)`)
	if strings.Join(cols, ",") != "a1,m1,a2" {
		t.Fatalf("mesh columns %v, want a1,m1,a2 (aws, then london)", cols)
	}
	for _, pair := range [][2]string{{"a1", "a2"}, {"a2", "m1"}, {"m1", "a2"}} {
		expr := fmt.Sprintf(`(() => { const r = document.querySelector('#mesh tr[data-row=%s]'); const i = %s.indexOf(%s); return r ? r.querySelectorAll("td")[i].dataset.path : "no row"; })()`,
			jsString(pair[0]), mustJSON(cols), jsString(pair[1]))
		if path := eval[string](b, expr); path != "none" {
			t.Errorf("mesh %s -> %s is %q, want none (gossip only, no overlay in this testbed)", pair[0], pair[1], path)
		}
	}
	b.shot("09-mesh")

	// ACLs on: the UI asks for a token, keeps it in an HttpOnly cookie,
	// shows only what the token may read and hides what it may not write.
	other := []byte(`{"id":"/other/db","cmd":"sleep 600","cpus":0.01,"mem":8,"instances":0}`)
	if _, err := cl.c.PutApp(ctx, "/other/db", other, false); err != nil {
		t.Fatal(err)
	}
	mgmt, err := cl.c.ACLBootstrap(ctx)
	if err != nil {
		t.Fatalf("acl bootstrap: %v", err)
	}
	cl.c.Token = mgmt.SecretID // the cleanup removes the apps with it
	if _, err := cl.c.ACLPolicyApply(ctx, "shop-read", strings.NewReader(`{"apps":{"/shop/*":"read"},"node":"read"}`)); err != nil {
		t.Fatal(err)
	}
	viewer, err := cl.c.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "viewer", Policies: []string{"shop-read"}})
	if err != nil {
		t.Fatal(err)
	}
	b.run("apps, now behind a login", chromedp.Navigate(b.base+"/ui/apps?status=Running"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.run("a wrong token", chromedp.SetValue(chromedp.CSS("#token"), "not-a-token"), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	b.shot("11-login")
	b.run("log in", chromedp.SetValue(chromedp.CSS("#token"), viewer.SecretID), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#apps")))
	if loc := b.location(); !strings.HasSuffix(loc, "/ui/apps?status=Running") {
		t.Fatalf("after login at %s, want back at /ui/apps?status=Running", loc)
	}
	if who := b.text("#whoami"); who != "viewer" {
		t.Fatalf("logged in as %q", who)
	}
	if c := eval[string](b, "document.cookie"); strings.Contains(c, viewer.SecretID) {
		t.Fatalf("the token is readable by scripts: %q", c)
	}
	ids := eval[[]string](b, `Array.from(document.querySelectorAll("tr[data-app]")).map(r => r.dataset.app)`)
	if strings.Join(ids, ",") != "/shop/web" {
		t.Fatalf("the viewer sees apps %v, want only /shop/web", ids)
	}
	if n := eval[int](b, `document.querySelectorAll("#create-app").length`); n != 0 {
		t.Fatalf("a read-only token is offered to create apps")
	}
	b.run("read-only app page", chromedp.Navigate(b.base+"/ui/app/shop/web"), chromedp.WaitVisible(chromedp.CSS("#tasks")))
	if n := eval[int](b, `document.querySelectorAll("#actions, #scale, #delete").length`); n != 0 {
		t.Fatalf("a read-only token sees %d action controls", n)
	}
	b.waitJS("the live stream, with the cookie's token", `document.getElementById("main").dataset.stream === "open"`, 10*time.Second)
	b.shot("12-app-read-only")
	// The two versions (1 instance, then 2) side by side.
	b.run("compare versions", chromedp.Click(chromedp.CSS("#versions button")), chromedp.WaitVisible(chromedp.CSS("#diff")))
	del, add := eval[string](b, `Array.from(document.querySelectorAll("#diff .ddel")).map(e => e.textContent).join("")`),
		eval[string](b, `Array.from(document.querySelectorAll("#diff .dadd")).map(e => e.textContent).join("")`)
	if !strings.Contains(del, `"instances": 1`) || !strings.Contains(add, `"instances": 2`) {
		t.Fatalf("version diff: removed %q, added %q", del, add)
	}
	b.shot("13-version-diff")
	t.Logf("screenshots in %s", b.dir)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestUIMeshTwoSites shows the mesh matrix of a real WireGuard overlay: a
// master at site aws and an agent at site london in their own network
// namespaces (meshtest), joined by a token. The agent's API listens on its
// overlay address, so the master's UI reads the agent's own view over
// mutual TLS with its node certificate. Both directions must show a direct
// path with a handshake; Chromium, run inside the master's namespace,
// renders the page and leaves a screenshot.
func TestUIMeshTwoSites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startTwoSites(t, ctx, []string{"--no-docker", "--agent-addr", "0.0.0.0:5051"}, nil)
	row := func(html, node string) []string {
		i := strings.Index(html, `<tr data-row="`+node+`">`)
		if i < 0 {
			return nil
		}
		rest := html[i:]
		rest = rest[:strings.Index(rest, "</tr>")]
		var paths []string
		for _, part := range strings.Split(rest, `data-path="`)[1:] {
			paths = append(paths, part[:strings.Index(part, `"`)])
		}
		return paths
	}
	var page string
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		code, b, err := hostAPI(ctx, s.m1h, "GET", s.api+"/ui/mesh", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("GET /ui/mesh: %d %v", code, err)
		}
		page = string(b)
		// Columns in site order: aws (m1), then london (a1).
		m1, a1 := row(page, "m1"), row(page, "a1")
		if strings.Join(m1, ",") != "self,direct" || strings.Join(a1, ",") != "direct,self" {
			return fmt.Errorf("rows m1 %v, a1 %v; want self,direct and direct,self", m1, a1)
		}
		if !strings.Contains(page, "hs ") || strings.Contains(page, "unknown:") {
			return fmt.Errorf("no handshake shown, or a node's view unknown")
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- page:\n%s", err, tail(page, 4000))
	}
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs Debian's chromium)")
	}
	shot := filepath.Join(uiScreenshotDir(t), "10-mesh-wireguard.png")
	out, err := s.m1h.Exec(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--window-size=1280,640", "--screenshot="+shot, s.api+"/ui/mesh")
	if err != nil {
		t.Fatalf("chromium in m1's namespace: %v\n%s", err, out)
	}
	dom, err := s.m1h.Exec(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", s.api+"/ui/mesh")
	if err != nil || !strings.Contains(string(dom), `data-path="direct"`) {
		t.Fatalf("chromium's DOM of /ui/mesh has no direct path: %v\n%s", err, tail(string(dom), 2000))
	}
}
