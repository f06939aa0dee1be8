package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// fakeStore is a master for the apps page: apps with running counts, a
// store index, and a change feed (what Master.Changes answers).
type fakeStore struct {
	mu      sync.Mutex
	index   uint64
	running map[string]int // app id → tasks running
	log     []api.Changes  // one per index step
	lists   int            // GET /v2/apps
	gets    map[string]int // GET /v2/apps/{id}
	queues  int            // GET /v2/queue
	hidden  string         // a prefix the "team" token may not read
}

func (f *fakeStore) Index() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.index }

// step moves the index with what changed.
func (f *fakeStore) step(ch api.Changes) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	ch.Index = f.index
	f.log = append(f.log, ch)
}

func (f *fakeStore) Changes(after uint64) api.Changes {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := api.Changes{Index: f.index}
	if after == 0 {
		out.Snapshot = true
		for id := range f.running {
			out.Apps = append(out.Apps, api.App{ID: id})
		}
		return out
	}
	for _, ch := range f.log {
		if ch.Index <= after {
			continue
		}
		out.Apps = append(out.Apps, ch.Apps...)
		out.Tasks = append(out.Tasks, ch.Tasks...)
		out.Deployments = append(out.Deployments, ch.Deployments...)
		if ch.Deleted != nil {
			if out.Deleted == nil {
				out.Deleted = &api.Deleted{}
			}
			out.Deleted.Apps = append(out.Deleted.Apps, ch.Deleted.Apps...)
			out.Deleted.Tasks = append(out.Deleted.Tasks, ch.Deleted.Tasks...)
			out.Deleted.Deployments = append(out.Deleted.Deployments, ch.Deleted.Deployments...)
		}
	}
	return out
}

func (f *fakeStore) appJSON(id string) string {
	return fmt.Sprintf(`{"id":%q,"instances":3,"cpus":0.1,"mem":16,"tasksRunning":%d,"deployments":[],"tasks":[]}`, id, f.running[id])
}

func (f *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	team := r.Header.Get("Authorization") == "Bearer team"
	switch {
	case r.URL.Path == "/v2/apps":
		f.lists++
		var ids []string
		for id := range f.running {
			if !team || !strings.HasPrefix(id, f.hidden) {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		var parts []string
		for _, id := range ids {
			parts = append(parts, f.appJSON(id))
		}
		fmt.Fprintf(w, `{"apps":[%s]}`, strings.Join(parts, ","))
	case strings.HasPrefix(r.URL.Path, "/v2/apps/"):
		id := strings.TrimPrefix(r.URL.Path, "/v2/apps")
		f.gets[id]++
		if _, ok := f.running[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"App '%s' does not exist"}`, id)
			return
		}
		if team && strings.HasPrefix(id, f.hidden) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, `{"app":%s}`, f.appJSON(id))
	case r.URL.Path == "/v2/queue":
		f.queues++
		_, _ = w.Write([]byte(`{"queue":[]}`))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// The apps page follows the change feed: after a change it reads again
// only the apps the change touched (an app, a task, a deployment, a
// deleted task or deployment), never the whole list; an open page gets
// just the rows that changed since its index, with where new rows go;
// a page older than what is kept gets the whole <main>; another token
// never sees rows it may not read.
func TestAppsPageIncremental(t *testing.T) {
	f := &fakeStore{running: map[string]int{}, gets: map[string]int{}, hidden: "/secret/"}
	for i := 0; i < 200; i += 2 { // even ids: room to insert odd ones
		f.running[fmt.Sprintf("/g/app-%03d", i)] = 3
	}
	f.running["/secret/x"] = 3
	f.index = 10
	u, err := New(Config{API: f, Index: f.Index, Changes: f.Changes})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string, hdr map[string]string) (int, string) {
		t.Helper()
		req := httptest.NewRequest("GET", "/ui/apps", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if token != "" {
			req.AddCookie(&http.Cookie{Name: tokenCookie, Value: token})
		}
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	delta := func(token string, since uint64) appsDelta {
		t.Helper()
		code, body := get(token, map[string]string{"X-Weft-Partial": "1", "X-Weft-Since": fmt.Sprint(since)})
		var d appsDelta
		if err := json.Unmarshal([]byte(body), &d); code != 200 || err != nil {
			t.Fatalf("delta since %d: %d %v %.300s", since, code, err, body)
		}
		return d
	}
	// The page carries its first screenful; the rest comes on request.
	code, page := get("", nil)
	if code != 200 || strings.Count(page, "<tr data-app=") != firstRows || !strings.Contains(page, `data-index="10"`) || !strings.Contains(page, `id="show-all"`) {
		t.Fatalf("page: %d, %d rows: %.500s", code, strings.Count(page, "<tr data-app="), page)
	}
	_, rest := get("", map[string]string{"X-Weft-Partial": "1", "X-Weft-Rows-After": "/g/app-198"})
	if n := strings.Count(rest, "<tr data-app="); n != 1 || !strings.Contains(rest, "/secret/x") {
		t.Fatalf("rows after /g/app-198: %d: %s", n, rest)
	}
	_, rest = get("", map[string]string{"X-Weft-Partial": "1", "X-Weft-Rows-After": "/g/app-118"})
	if n := strings.Count(rest, "<tr data-app="); n != 41 || strings.Contains(rest, `"/g/app-118"`) {
		t.Fatalf("rows after /g/app-118: %d", n)
	}
	if _, all := get("", nil); strings.Count(all, "<tr data-app=") != firstRows {
		t.Fatal("second page load differs")
	}
	req := httptest.NewRequest("GET", "/ui/apps?all=1", nil)
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, req)
	if n := strings.Count(rec.Body.String(), "<tr data-app="); n != 101 {
		t.Fatalf("?all=1 carries %d rows, want 101", n)
	}
	if f.lists != 1 {
		t.Fatalf("%d listings at one index, want 1", f.lists)
	}

	// A task of one app fails.
	f.mu.Lock()
	f.running["/g/app-010"] = 2
	f.mu.Unlock()
	f.step(api.Changes{Tasks: []api.Task{{ID: "g_app-010.t1", AppID: "/g/app-010", State: api.TaskFailed}}})
	d := delta("", 10)
	if d.Full != "" || len(d.Rows) != 1 || d.Rows[0].ID != "/g/app-010" || d.Rows[0].After != "/g/app-008" || !strings.Contains(d.Rows[0].HTML, "2 / 3") || len(d.Removed) != 0 {
		t.Fatalf("delta after a task change: %+v", d)
	}
	if d.Index != 11 || !strings.Contains(d.Aside, `data-status="Running"`) || d.Count != "101 of 101 apps" {
		t.Fatalf("delta: index %d, count %q, aside %.100q", d.Index, d.Count, d.Aside)
	}
	if f.lists != 1 || f.gets["/g/app-010"] != 1 || len(f.gets) != 1 {
		t.Fatalf("after one task change: %d listings, single reads %v; want only /g/app-010 read again", f.lists, f.gets)
	}
	if _, page := get("", nil); !strings.Contains(page, "2 / 3") {
		t.Fatal("the page does not show the change")
	}
	// An app with fewer tasks running than instances may be waiting: the
	// queue was read again. A change to a whole app (a label) cannot
	// move the queue: it is not read.
	queues := f.queues
	if queues != 2 {
		t.Fatalf("%d queue reads after the first page and a task failure, want 2", queues)
	}
	f.step(api.Changes{Apps: []api.App{{ID: "/g/app-050"}}})
	if d := delta("", 11); d.Index != 12 || f.queues != queues || f.gets["/g/app-050"] != 1 {
		t.Fatalf("after a change of a whole app: index %d, %d queue reads (want %d), single reads %v", d.Index, f.queues, queues, f.gets)
	}
	if d := delta("", 12); d.Full != "" || len(d.Rows)+len(d.Removed) != 0 || d.Aside != "" {
		t.Fatalf("nothing changed since 12, got %+v", d)
	}

	// Its replacement is deleted (expunged): the task names no app, the
	// tracker remembers whose it was. A deployment that ends names its
	// apps only by its id.
	f.step(api.Changes{Tasks: []api.Task{{ID: "g_app-020.t9", AppID: "/g/app-020", State: api.TaskStaging}},
		Deployments: []api.Deployment{{ID: "dep1", AffectedApps: []string{"/g/app-030"}}}})
	get("", nil)
	f.mu.Lock()
	f.running["/g/app-020"] = 1
	f.running["/g/app-030"] = 1
	f.mu.Unlock()
	f.step(api.Changes{Deleted: &api.Deleted{Tasks: []string{"g_app-020.t9"}, Deployments: []string{"dep1"}}})
	d = delta("", 13)
	if len(d.Rows) != 2 || d.Rows[0].ID != "/g/app-020" || d.Rows[1].ID != "/g/app-030" {
		t.Fatalf("delta after a deleted task and deployment: %+v", d)
	}
	// An app is created and one deleted: inserted after its neighbour,
	// and removed.
	f.mu.Lock()
	f.running["/g/app-015"] = 0
	delete(f.running, "/g/app-040")
	f.mu.Unlock()
	f.step(api.Changes{Apps: []api.App{{ID: "/g/app-015"}}, Deleted: &api.Deleted{Apps: []string{"/g/app-040"}}})
	d = delta("", 14)
	if len(d.Rows) != 1 || d.Rows[0].ID != "/g/app-015" || d.Rows[0].After != "/g/app-014" || len(d.Removed) != 1 || d.Removed[0] != "/g/app-040" {
		t.Fatalf("delta after a create and a delete: %+v", d)
	}
	// Since 10, everything at once, each row once.
	if d := delta("", 10); len(d.Rows) != 4 || len(d.Removed) != 1 {
		t.Fatalf("delta since 10: %+v", d)
	}
	// A filtered page: a row that leaves the filter is removed.
	req = httptest.NewRequest("GET", "/ui/apps?status=Running&q=app-01", nil)
	req.Header.Set("X-Weft-Partial", "1")
	req.Header.Set("X-Weft-Since", "14")
	f.mu.Lock()
	f.running["/g/app-015"] = 3
	f.mu.Unlock()
	f.step(api.Changes{Apps: []api.App{{ID: "/g/app-015"}}})
	rec = httptest.NewRecorder()
	u.ServeHTTP(rec, req)
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || len(d.Rows) != 1 || d.Rows[0].After != "/g/app-014" {
		t.Fatalf("filtered delta: %v %s", err, rec.Body)
	}
	if f.lists != 1 {
		t.Fatalf("%d listings after incremental changes, want 1", f.lists)
	}
	// Older than what is kept: the whole <main>.
	if d := delta("", 3); d.Full == "" || !strings.Contains(d.Full, `id="apps"`) {
		t.Fatalf("delta since 3 (before the view): %+v", d)
	}
	if code, body := get("", map[string]string{"X-Weft-Since": "yesterday"}); code != 400 || !strings.Contains(body, "X-Weft-Since") {
		t.Fatalf("a bad X-Weft-Since: %d %s", code, body)
	}

	// Another token: its own view; a change to an app it may not read
	// (403 on the single read) shows it nothing.
	if _, page := get("team", nil); strings.Contains(page, "/secret/") {
		t.Fatal("the team token sees /secret/x")
	}
	at := f.Index()
	f.mu.Lock()
	f.running["/secret/x"] = 1
	f.mu.Unlock()
	f.step(api.Changes{Apps: []api.App{{ID: "/secret/x"}}})
	if d := delta("team", at); len(d.Rows) != 0 || len(d.Removed) != 0 || d.Full != "" {
		t.Fatalf("the team token's delta after a change it may not read: %+v", d)
	}
	if d := delta("", at); len(d.Rows) != 1 || d.Rows[0].ID != "/secret/x" {
		t.Fatalf("the open token's delta: %+v", d)
	}

	// Many apps at once: read whole again, still a delta for open pages.
	before := f.lists
	var chApps []api.App
	f.mu.Lock()
	for i := 0; i < 200; i += 2 {
		id := fmt.Sprintf("/g/app-%03d", i)
		if _, ok := f.running[id]; ok {
			f.running[id] = 0
			chApps = append(chApps, api.App{ID: id})
		}
	}
	f.mu.Unlock()
	at = f.Index()
	f.step(api.Changes{Apps: chApps})
	d = delta("", at)
	if f.lists != before+1 || d.Full != "" || len(d.Rows) != len(chApps) {
		t.Fatalf("after %d apps changed: %d listings (want %d), %d rows in the delta, full %v", len(chApps), f.lists, before+1, len(d.Rows), d.Full != "")
	}
}
