package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// The apps page of 1,000 apps and 10,000 tasks is kept per token as
// table rows, each rendered once. When the store moves, the rows of the
// apps a change touched are read again (GET /v2/apps/{id} with the
// token, so ACL filtering stays the API's), the others are kept; each
// row remembers the store index at which it last changed, so an open
// page asks for what changed since its own index and replaces just
// those rows (see ui.js).

// tracker follows the master's change feed (Config.Changes) and keeps,
// for its last steps, which app ids each step touched: an app changed,
// one of its tasks, or a deployment that names it. It is shared by all
// tokens: it holds ids only, never what the apps are.
type tracker struct {
	mu      sync.Mutex
	index   uint64
	taskApp map[string]string   // task id → app id (deleted tasks name no app)
	depApps map[string][]string // deployment id → the apps it affects
	steps   []trackStep         // oldest first, contiguous
}

type trackStep struct {
	from, to uint64
	all      bool // a snapshot: everything may have changed
	apps     []string
}

const (
	maxSteps   = 512 // steps the tracker remembers
	maxTouched = 64  // apps re-read one by one; more and the list is read whole
)

// advance brings the tracker to the store's index. The caller holds mu.
func (t *tracker) advance(changes func(uint64) api.Changes, index func() uint64) {
	if t.index != 0 && t.index == index() {
		return
	}
	ch := changes(t.index)
	if ch.Index == t.index && !ch.Snapshot {
		return
	}
	st := trackStep{from: t.index, to: ch.Index}
	if ch.Snapshot || t.taskApp == nil {
		t.taskApp, t.depApps = map[string]string{}, map[string][]string{}
		st.all = true
	}
	seen := map[string]bool{}
	touch := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			st.apps = append(st.apps, id)
		}
	}
	for i := range ch.Apps {
		touch(ch.Apps[i].ID)
	}
	for i := range ch.Tasks {
		tk := &ch.Tasks[i]
		if tk.Framework == "chronos" {
			continue
		}
		t.taskApp[tk.ID] = tk.AppID
		touch(tk.AppID)
	}
	for i := range ch.Deployments {
		d := &ch.Deployments[i]
		for _, id := range t.depApps[d.ID] {
			touch(id)
		}
		apps := append([]string(nil), d.AffectedApps...)
		for _, s := range d.Steps {
			for _, a := range s.Actions {
				apps = append(apps, a.App)
			}
		}
		t.depApps[d.ID] = apps
		for _, id := range apps {
			touch(id)
		}
	}
	if d := ch.Deleted; d != nil {
		for _, id := range d.Apps {
			touch(id)
		}
		for _, id := range d.Tasks {
			touch(t.taskApp[id])
			delete(t.taskApp, id)
		}
		for _, id := range d.Deployments {
			for _, a := range t.depApps[id] {
				touch(a)
			}
			delete(t.depApps, id)
		}
	}
	if st.all {
		st.apps = nil
	}
	t.index = ch.Index
	t.steps = append(t.steps, st)
	if len(t.steps) > maxSteps {
		t.steps = append([]trackStep(nil), t.steps[len(t.steps)-maxSteps/2:]...)
	}
}

// sync brings the tracker to the store's index and returns it.
func (t *tracker) sync(changes func(uint64) api.Changes, index func() uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(changes, index)
	return t.index
}

// since returns the apps touched after index n, and the index they are
// known up to; ok is false when the tracker cannot tell (n is older than
// its steps, or a snapshot lies between).
func (t *tracker) since(n uint64, changes func(uint64) api.Changes, index func() uint64) (apps []string, upTo uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(changes, index)
	if n == t.index {
		return nil, n, true
	}
	if n > t.index {
		return nil, 0, false
	}
	seen := map[string]bool{}
	covered := false
	for i := len(t.steps) - 1; i >= 0; i-- {
		st := &t.steps[i]
		if st.to <= n {
			break
		}
		if st.all {
			return nil, 0, false
		}
		for _, id := range st.apps {
			if !seen[id] {
				seen[id] = true
				apps = append(apps, id)
			}
		}
		if st.from <= n {
			covered = true
			break
		}
	}
	if !covered {
		return nil, 0, false
	}
	sort.Strings(apps)
	return apps, t.index, true
}

// appsView is the apps page of one token at one store index. It is never
// modified once made.
type appsView struct {
	index   uint64    // the store index the rows are at (or newer)
	base    uint64    // changed reaches back to this index
	at      time.Time // when it was read (a Delayed app changes with time)
	delayed bool
	rows    []appRow          // sorted by id
	changed map[string]uint64 // app id → index at which its row last changed or went, since base

	mu    sync.Mutex
	mains map[string][]byte // the rendered <main> by query and whether the token may create; the rest of the rows by query and first id
}

// tokenView is where one token's current view is kept.
type tokenView struct {
	mu  sync.Mutex
	cur *appsView
}

const (
	maxViews        = 16          // tokens whose apps page is kept
	maxMainsPerView = 32          // queries kept per token
	maxChanged      = 4096        // row changes remembered per token
	delayedViewTTL  = time.Second // how long a view with a Delayed app is good for
)

func mainKey(rawQuery string, canCreate bool) string {
	if canCreate {
		return "w" + rawQuery
	}
	return "r" + rawQuery
}

func (v *appsView) main(key string) []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mains[key]
}

func (v *appsView) keepMain(key string, b []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mains == nil || len(v.mains) >= maxMainsPerView {
		v.mains = map[string][]byte{}
	}
	v.mains[key] = b
}

// appsView returns the token's apps at the store's current index: kept,
// brought up to date from the rows a change touched, or read whole.
func (u *UI) appsView(ctx context.Context, s *session) (*appsView, error) {
	if u.cfg.Index == nil {
		return u.readView(ctx, s, nil, 0)
	}
	u.viewsMu.Lock()
	tv := u.views[s.Token]
	if tv == nil {
		if u.views == nil || len(u.views) >= maxViews {
			u.views = map[string]*tokenView{}
		}
		tv = &tokenView{}
		u.views[s.Token] = tv
	}
	u.viewsMu.Unlock()

	tv.mu.Lock()
	defer tv.mu.Unlock()
	old := tv.cur
	index := u.cfg.Index()
	expired := old != nil && old.delayed && u.cfg.Now().Sub(old.at) > delayedViewTTL
	if old != nil && old.index == index && !expired {
		return old, nil
	}
	if old != nil && u.cfg.Changes != nil {
		if touched, upTo, ok := u.track.since(old.index, u.cfg.Changes, u.cfg.Index); ok && len(touched) <= maxTouched {
			v, err := u.patchView(ctx, s, old, upTo, touched, expired)
			if err == nil {
				tv.cur = v
				return v, nil
			}
			u.log.Debug("apps page: re-reading every app", "err", err)
		}
	}
	if u.cfg.Changes != nil {
		// The tracker at or past index, so this view's changes can be
		// followed from it.
		index = u.track.sync(u.cfg.Changes, u.cfg.Index)
	}
	v, err := u.readView(ctx, s, old, index)
	if err != nil {
		return nil, err
	}
	tv.cur = v
	return v, nil
}

// readQueue reads GET /v2/queue by app id; nil when the token may not.
func (u *UI) readQueue(ctx context.Context, s *session) map[string]queueEntry {
	code, body := u.call(ctx, s, http.MethodGet, "/v2/queue", nil)
	if code != http.StatusOK {
		return nil // a token may read apps but not the queue
	}
	var queue struct {
		Queue []queueEntry `json:"queue"`
	}
	_ = json.Unmarshal(body, &queue)
	out := make(map[string]queueEntry, len(queue.Queue))
	for _, q := range queue.Queue {
		out[q.App.ID] = q
	}
	return out
}

// readView reads every app the token may see (GET /v2/apps), as rows;
// rows that differ from old's are marked changed at index.
func (u *UI) readView(ctx context.Context, s *session, old *appsView, index uint64) (*appsView, error) {
	code, body := u.call(ctx, s, http.MethodGet, "/v2/apps", nil)
	if code != http.StatusOK {
		return nil, apiErr("/v2/apps", code, body)
	}
	queue := u.readQueue(ctx, s)
	var apps struct {
		Apps []listApp `json:"apps"`
	}
	if err := json.Unmarshal(body, &apps); err != nil {
		return nil, fmt.Errorf("decoding /v2/apps: %w", err)
	}
	sort.Slice(apps.Apps, func(i, j int) bool { return apps.Apps[i].ID < apps.Apps[j].ID })
	rows := make([]appRow, len(apps.Apps))
	for i := range apps.Apps {
		rows[i] = makeRow(&apps.Apps[i], queue)
	}
	return u.mergeView(old, index, rows), nil
}

// patchView brings old up to index by reading again the apps touched
// since old.index, and the queue when a touched app may be in it (it
// has fewer tasks running than instances, or was queued) or a Delayed
// app's second is up: GET /v2/queue weighs every app's tasks, and most
// changes (a label, a task back to running) cannot move it.
func (u *UI) patchView(ctx context.Context, s *session, old *appsView, index uint64, touched []string, expired bool) (*appsView, error) {
	fresh := map[string]*listApp{}
	needQueue := expired
	for _, id := range touched {
		if i := sort.Search(len(old.rows), func(i int) bool { return old.rows[i].ID >= id }); i < len(old.rows) && old.rows[i].ID == id {
			needQueue = needQueue || old.rows[i].queued
		}
		code, body := u.call(ctx, s, http.MethodGet, "/v2/apps"+pathEscape(id), nil)
		switch code {
		case http.StatusOK:
			var one struct {
				App listApp `json:"app"`
			}
			if err := json.Unmarshal(body, &one); err != nil {
				return nil, fmt.Errorf("decoding /v2/apps%s: %w", id, err)
			}
			fresh[id] = &one.App
			needQueue = needQueue || one.App.Instances > one.App.TasksRunning
		case http.StatusNotFound, http.StatusForbidden:
			fresh[id] = nil // gone, or not this token's to read
		default:
			return nil, apiErr("/v2/apps"+id, code, body)
		}
	}
	var queue map[string]queueEntry
	if needQueue {
		queue = u.readQueue(ctx, s)
	} else {
		queue = map[string]queueEntry{} // as it was, for the apps not touched
		for i := range old.rows {
			if r := &old.rows[i]; r.queued {
				queue[r.ID] = r.queue
			}
		}
	}
	rows := make([]appRow, 0, len(old.rows)+len(fresh))
	for i := range old.rows {
		r := &old.rows[i]
		if _, ok := fresh[r.ID]; ok {
			continue
		}
		// The queue alone may change a row's status (a launch delay ran out).
		if q, had := queue[r.ID]; (had || r.queued) && (q != r.queue || had != r.queued) {
			src := r.src
			rows = append(rows, makeRow(&src, queue))
			continue
		}
		rows = append(rows, *r)
	}
	for _, a := range fresh {
		if a != nil {
			rows = append(rows, makeRow(a, queue))
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return u.mergeView(old, index, rows), nil
}

// makeRow builds an app's row, rendered.
func makeRow(a *listApp, queue map[string]queueEntry) appRow {
	q, queued := queue[a.ID]
	var qp *queueEntry
	if queued {
		qp = &q
	}
	r := appRow{
		ID: a.ID, Status: appStatus(a, qp), Instances: a.Instances, Running: a.TasksRunning, Cpus: a.Cpus, Mem: a.Mem, Labels: a.Labels,
		Bar: healthBar(a.Instances, a.TasksStaged, a.TasksRunning, a.TasksHealthy, a.TasksUnhealthy, len(a.HealthChecks) > 0),
		src: *a, queue: q, queued: queued,
	}
	r.src.HealthChecks = nil
	r.src.Deployments = append([]api.DeploymentRef(nil), a.Deployments...)
	if len(a.HealthChecks) > 0 {
		r.src.HealthChecks = a.HealthChecks[:1]
	}
	var b strings.Builder
	writeRow(&b, &r)
	r.HTML = b.String()
	return r
}

// mergeView makes the view at index from rows (sorted), marking the rows
// that differ from old's (added, changed or gone) as changed at index.
func (u *UI) mergeView(old *appsView, index uint64, rows []appRow) *appsView {
	v := &appsView{index: index, base: index, at: u.cfg.Now(), rows: rows, changed: map[string]uint64{}}
	for i := range rows {
		v.delayed = v.delayed || rows[i].Status == StatusDelayed
	}
	if old == nil || index == 0 || old.index > index || len(old.changed) > maxChanged {
		return v
	}
	v.base = old.base
	for k, at := range old.changed {
		v.changed[k] = at
	}
	i, j := 0, 0
	for i < len(old.rows) || j < len(rows) {
		switch {
		case j == len(rows) || (i < len(old.rows) && old.rows[i].ID < rows[j].ID):
			v.changed[old.rows[i].ID] = index // gone
			i++
		case i == len(old.rows) || rows[j].ID < old.rows[i].ID:
			v.changed[rows[j].ID] = index // new
			j++
		default:
			if old.rows[i].HTML != rows[j].HTML {
				v.changed[rows[j].ID] = index
			}
			i++
			j++
		}
	}
	return v
}

// rowUpdate is one row of an apps page delta: its HTML, and the id of
// the row it follows ("" for the first).
type rowUpdate struct {
	ID    string `json:"id"`
	HTML  string `json:"html"`
	After string `json:"after"`
}

// appsDelta is what an open apps page at index Since needs to be at
// Index: the rows that changed (in order) and the ids of the rows that
// left it, with the side panel and the count again. Full, when set, is
// the whole <main> instead (the page is older than what is remembered).
type appsDelta struct {
	Index   uint64      `json:"index,string"`
	Full    string      `json:"full,omitempty"`
	Rows    []rowUpdate `json:"rows"`
	Removed []string    `json:"removed"`
	Aside   string      `json:"aside,omitempty"`
	Count   string      `json:"count,omitempty"`
}

// delta works out the rows of d (a filtered page of v) that changed
// after index since; ok is false when v does not reach back that far.
func (v *appsView) delta(d *appsData, since uint64) (rows []rowUpdate, removed []string, ok bool) {
	if since < v.base || since > v.index {
		return nil, nil, false
	}
	shown := make(map[string]int, len(d.Rows))
	for i := range d.Rows {
		shown[d.Rows[i].ID] = i
	}
	var ids []string
	for id, at := range v.changed {
		if at > since {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	rows, removed = []rowUpdate{}, []string{}
	for _, id := range ids {
		i, ok := shown[id]
		if !ok {
			removed = append(removed, id)
			continue
		}
		after := ""
		if i > 0 {
			after = d.Rows[i-1].ID
		}
		rows = append(rows, rowUpdate{ID: id, HTML: d.Rows[i].HTML, After: after})
	}
	return rows, removed, true
}
