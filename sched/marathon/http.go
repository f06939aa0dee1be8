package marathon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

type handler func(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError

// Routes implements sched.Framework: Marathon's /v2/apps, /v2/tasks,
// /v2/deployments, /v2/groups and /v2/queue. (/v2/events, /v2/info,
// /v2/leader, /ping and /metrics belong to the master.)
func (f *Framework) Routes(mux *http.ServeMux, m sched.MasterHandle) {
	f.setMaster(m)
	mux.HandleFunc("/v2/apps", f.wrap(f.serveApps))
	mux.HandleFunc("/v2/apps/", f.wrap(f.serveApp))
	mux.HandleFunc("/v2/tasks", f.wrap(f.serveTasks))
	mux.HandleFunc("/v2/tasks/", f.wrap(f.serveTasksDelete))
	mux.HandleFunc("/v2/deployments", f.wrap(f.serveDeployments))
	mux.HandleFunc("/v2/deployments/", f.wrap(f.serveDeployment))
	mux.HandleFunc("/v2/groups", f.wrap(f.serveGroups))
	mux.HandleFunc("/v2/groups/", f.wrap(f.serveGroups))
	mux.HandleFunc("/v2/queue", f.wrap(f.serveQueue))
	mux.HandleFunc("/v2/queue/", f.wrap(f.serveQueueDelay))
	mux.HandleFunc("/v1/deployments/", f.wrap(f.serveOutcome))
	mux.HandleFunc("/v1/apps/problems", f.wrap(f.serveAppProblems))
	f.podRoutes(mux)
}

// Handler serves the framework's routes alone (tests, embedding).
func (f *Framework) Handler(m sched.MasterHandle) http.Handler {
	mux := http.NewServeMux()
	f.Routes(mux, m)
	return mux
}

func (f *Framework) wrap(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				f.log.Error("marathon API handler panicked", "path", r.URL.Path, "panic", p)
				writeJSON(w, http.StatusInternalServerError, api.ErrorBody{Message: fmt.Sprintf("internal error: %v", p)})
			}
		}()
		m := f.master()
		if m == nil {
			writeJSON(w, http.StatusServiceUnavailable, api.ErrorBody{Message: "marathon is not started yet"})
			return
		}
		if encodedSlash(r) {
			aerr := notValid(api.ErrorDetail{Path: "/id", Errors: []string{msgEncodedSlash}})
			writeJSON(w, aerr.Status, aerr.Body)
			return
		}
		var body []byte
		if r.Body != nil && r.Method != http.MethodGet {
			b, aerr := readBody(r)
			if aerr != nil {
				writeJSON(w, aerr.Status, aerr.Body)
				return
			}
			body = b
		}
		for attempt := 0; ; attempt++ {
			r.Body = io.NopCloser(bytes.NewReader(body))
			err := h(w, r, m)
			if err == nil {
				return
			}
			if err.retry && attempt < 8 {
				time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
				continue
			}
			writeJSON(w, err.Status, err.Body)
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func methodNotAllowed() *apiError { return errMsg(405, "HTTP 405 Method Not Allowed") }

func storeError(err error) *apiError {
	switch {
	case errors.Is(err, sched.ErrNotLeader):
		return errMsg(503, "There is no leader: the store is not writable here; retry")
	case errors.Is(err, sched.ErrConflict):
		e := errMsg(409, "the app changed while this request was applied; retry")
		e.retry = true
		return e
	}
	return errMsg(503, "could not commit the change: %v", err)
}

func readBody(r *http.Request) ([]byte, *apiError) {
	limit := bodyLimit(r.URL.Path)
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.invalid.json: " + err.Error()}})
	}
	if len(b) > limit {
		return nil, errMsg(413, "Request body is larger than %d bytes, the limit of %s (see docs/limits.md)", limit, r.URL.Path)
	}
	return b, nil
}

func boolParam(r *http.Request, name string) bool {
	v := strings.ToLower(r.URL.Query().Get(name))
	return v == "true" || v == "1"
}

func embeds(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, e := range r.URL.Query()["embed"] {
		for _, x := range strings.Split(e, ",") {
			x = strings.TrimSpace(x)
			out[x] = true
			// app.tasks, apps.tasks and group.apps.tasks name the same
			// thing (Marathon's InfoEmbedResolver).
			for _, p := range []string{"group.apps.", "apps.", "app."} {
				if rest, ok := strings.CutPrefix(x, p); ok {
					out[rest] = true
					break
				}
			}
		}
	}
	return out
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ---- app info ----

// apiTask is a task as Marathon shows it (task.raml): weft's own facts
// (framework, job name, site, status message, exit status, readiness) are
// left out, since strict Marathon clients fail on keys Marathon never
// sends. weft's /v1/state carries them.
func apiTask(rec *sched.TaskRecord) api.Task {
	t := rec.Task
	t.Framework, t.Name, t.Site, t.Message = "", "", "", ""
	t.ExitStatus, t.Ready = nil, nil
	if t.Ports == nil {
		t.Ports = []int{}
	}
	if t.ServicePorts == nil {
		t.ServicePorts = []int{}
	}
	if t.IPAddresses == nil {
		t.IPAddresses = []api.IPAddress{}
	}
	if t.HealthCheckResults == nil {
		t.HealthCheckResults = []api.HealthCheckResult{}
	}
	return t
}

func (f *Framework) appInfo(v *view, st *sched.Store, app *api.App, emb map[string]bool, tasks, failure bool) api.AppInfo {
	info := api.AppInfo{App: *app, Deployments: v.deploymentsOf(app.ID)}
	var list []api.Task
	var ready []api.ReadinessResult
	for _, te := range v.tasks[app.ID] {
		t := te.rec.Task
		if !countTask(&info, &t) {
			continue
		}
		list = append(list, apiTask(te.rec))
		if t.Ready != nil {
			ready = append(ready, api.ReadinessResult{Name: "readinessCheck", TaskID: t.ID, Ready: *t.Ready})
		}
	}
	if tasks || emb["tasks"] {
		if list == nil {
			list = []api.Task{}
		}
		info.Tasks = list
	}
	if failure || emb["lastTaskFailure"] {
		info.LastTaskFailure = lastFailure(st, app.ID)
	}
	if emb["readiness"] {
		info.Readiness = append([]api.ReadinessResult{}, ready...)
	}
	if emb["taskStats"] {
		info.TaskStats = map[string]any{}
	}
	return info
}

// appInfoTasks is an AppInfo whose tasks are always present, [] when none
// (api.AppInfo omits an empty list).
type appInfoTasks struct {
	api.AppInfo
	Tasks []api.Task `json:"tasks"`
}

func withTasks(a api.AppInfo) appInfoTasks {
	t := a.Tasks
	if t == nil {
		t = []api.Task{}
	}
	return appInfoTasks{AppInfo: a, Tasks: t}
}

// ---- /v2/apps ----

func (f *Framework) serveApps(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	switch r.Method {
	case http.MethodGet:
		return f.listApps(w, r, m)
	case http.MethodPost:
		return f.createApp(w, r, m)
	case http.MethodPut, http.MethodPatch:
		return f.updateApps(w, r, m)
	}
	return methodNotAllowed()
}

func labelSelectorMatch(sel string, labels map[string]string) bool {
	for _, part := range strings.Split(sel, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		switch {
		case strings.Contains(part, "!="):
			kv := strings.SplitN(part, "!=", 2)
			if v, ok := labels[strings.TrimSpace(kv[0])]; ok && v == strings.TrimSpace(kv[1]) {
				return false
			}
		case strings.Contains(part, "=="):
			kv := strings.SplitN(part, "==", 2)
			if labels[strings.TrimSpace(kv[0])] != strings.TrimSpace(kv[1]) {
				return false
			}
		default:
			if _, ok := labels[part]; !ok {
				return false
			}
		}
	}
	return true
}

// cached answers a GET from the encoded answer computed at the same store
// index, if any (marathon-lb and UIs poll the same lists over and over).
func (f *Framework) cached(w http.ResponseWriter, r *http.Request, index uint64) bool {
	f.cacheMu.Lock()
	b, ok := f.cache[cacheKey(r)]
	ok = ok && f.cacheIndex == index
	f.cacheMu.Unlock()
	if !ok {
		return false
	}
	b.write(w)
	return true
}

// body is an encoded answer in pieces, never modified once made: a
// listing is mostly the kept renderings of apps that did not change, and
// writing them as they are spares copying megabytes into one buffer.
type body struct {
	pieces [][]byte
	size   int
}

func (b *body) add(p []byte) {
	b.pieces = append(b.pieces, p)
	b.size += len(p)
}

// copyBufs are the buffers pieces are gathered in on their way out.
var copyBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func (b *body) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.size))
	w.WriteHeader(200)
	if len(b.pieces) == 1 {
		_, _ = w.Write(b.pieces[0])
		return
	}
	bw := copyBufs.Get().(*bufio.Writer)
	bw.Reset(w)
	for _, p := range b.pieces {
		if _, err := bw.Write(p); err != nil {
			break
		}
	}
	_ = bw.Flush()
	bw.Reset(nil)
	copyBufs.Put(bw)
}

// writeCached encodes v, answers with it and keeps it for index.
func (f *Framework) writeCached(w http.ResponseWriter, r *http.Request, index uint64, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeJSON(w, 500, api.ErrorBody{Message: err.Error()})
		return
	}
	f.writeRaw(w, r, index, &body{pieces: [][]byte{append(b, '\n')}, size: len(b) + 1})
}

// appendAppInfo appends an app's AppInfo JSON (the definition, counts,
// deployments and the embedded tasks and last failure) to buf. The
// rendering up to the last failure is kept per app with what it was made
// from — the app's store index, its tasks' store indexes, its deployments
// and whether tasks are embedded — so after one task changes only that
// task's app is rendered again; the others are copied. When an app is
// rendered, the encodings of its definition and of each task are reused
// while their store index is unchanged. The caller holds encMu.
func (f *Framework) appendAppInfo(out *body, v *view, st *sched.Store, app *api.App, emb map[string]bool) {
	withTasks := emb["tasks"]
	deps := v.deploymentsOf(app.ID)
	key := "f0" + app.ID
	if withTasks {
		key = "f1" + app.ID
	}
	appIdx := v.appIdx[app.ID]
	tasks := v.tasks[app.ID]
	if fr, ok := f.frags[key]; ok && fr.appIdx == appIdx && appIdx != 0 && fr.sameTasks(tasks) && fr.sameDeps(deps) {
		fr.gen = f.encGen
		out.add(fr.b)
	} else {
		b := f.renderAppInfo(nil, v, app, tasks, deps, withTasks)
		fr := &fragment{appIdx: appIdx, gen: f.encGen, b: b}
		fr.taskIdx = make([]uint64, len(tasks))
		for i, te := range tasks {
			fr.taskIdx[i] = te.idx
		}
		fr.deps = make([]string, len(deps))
		for i, d := range deps {
			fr.deps[i] = d.ID
		}
		if f.frags == nil {
			f.frags = map[string]*fragment{}
		}
		f.frags[key] = fr
		out.add(b)
	}
	if emb["lastTaskFailure"] {
		if lf := lastFailure(st, app.ID); lf != nil {
			b, _ := json.Marshal(lf)
			out.add(append([]byte(`,"lastTaskFailure":`), b...))
		}
	}
	out.add(closeBrace)
}

var (
	closeBrace = []byte("}")
	comma      = []byte(",")
)

// fragment is an app's rendered AppInfo without its last failure and
// closing brace, and what it was rendered from.
type fragment struct {
	appIdx  uint64
	taskIdx []uint64 // store indexes of the app's tasks, in the view's order
	deps    []string // ids of the deployments touching the app
	gen     uint64   // listing that last used it
	b       []byte
}

func (fr *fragment) sameTasks(tasks []taskEntry) bool {
	if len(fr.taskIdx) != len(tasks) {
		return false
	}
	for i, te := range tasks {
		// A store index names one write: equal indexes, equal records.
		if fr.taskIdx[i] != te.idx || te.idx == 0 {
			return false
		}
	}
	return true
}

func (fr *fragment) sameDeps(deps []api.DeploymentRef) bool {
	if len(fr.deps) != len(deps) {
		return false
	}
	for i, d := range deps {
		if fr.deps[i] != d.ID {
			return false
		}
	}
	return true
}

// renderAppInfo appends an app's AppInfo JSON without the last failure
// and the closing brace.
func (f *Framework) renderAppInfo(buf []byte, v *view, app *api.App, tasks []taskEntry, deps []api.DeploymentRef, withTasks bool) []byte {
	enc := func(key string, idx uint64, val func() any) []byte {
		if e, ok := f.enc[key]; ok && e.idx == idx && idx != 0 {
			if e.gen != f.encGen {
				e.gen = f.encGen
				f.enc[key] = e
			}
			return e.b
		}
		b, _ := json.Marshal(val())
		f.enc[key] = encoded{idx: idx, gen: f.encGen, b: b}
		return b
	}
	ab := enc("a"+app.ID, v.appIdx[app.ID], func() any { return app })
	info := api.AppInfo{Deployments: deps}
	var taskJSON [][]byte
	for _, te := range tasks {
		t := &te.rec.Task
		if !countTask(&info, t) {
			continue
		}
		if withTasks {
			rec := te.rec
			taskJSON = append(taskJSON, enc("t"+t.ID, te.idx, func() any { return apiTask(rec) }))
		}
	}
	buf = append(buf, ab[:len(ab)-1]...) // without the closing brace
	buf = append(buf, `,"tasksStaged":`...)
	buf = strconv.AppendInt(buf, int64(info.TasksStaged), 10)
	buf = append(buf, `,"tasksRunning":`...)
	buf = strconv.AppendInt(buf, int64(info.TasksRunning), 10)
	buf = append(buf, `,"tasksHealthy":`...)
	buf = strconv.AppendInt(buf, int64(info.TasksHealthy), 10)
	buf = append(buf, `,"tasksUnhealthy":`...)
	buf = strconv.AppendInt(buf, int64(info.TasksUnhealthy), 10)
	db, _ := json.Marshal(info.Deployments)
	buf = append(buf, `,"deployments":`...)
	buf = append(buf, db...)
	if withTasks {
		buf = append(buf, `,"tasks":[`...)
		for i, b := range taskJSON {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, b...)
		}
		buf = append(buf, ']')
	}
	return buf
}

// writeRaw answers with b and keeps it for index.
// dropStaleAnswers forgets the kept answers once the store has moved past
// their index: they would never be served again, and a listing that held
// an app with labels near their limit would otherwise stay in memory until
// the next listing.
func (f *Framework) dropStaleAnswers(index uint64) {
	f.cacheMu.Lock()
	if f.cache != nil && f.cacheIndex != index {
		f.cache = nil
	}
	f.cacheMu.Unlock()
}

func (f *Framework) writeRaw(w http.ResponseWriter, r *http.Request, index uint64, b *body) {
	f.cacheMu.Lock()
	if f.cacheIndex != index || f.cache == nil || len(f.cache) > 32 {
		f.cache = map[string]*body{}
		f.cacheIndex = index
	}
	f.cache[cacheKey(r)] = b
	f.cacheMu.Unlock()
	b.write(w)
}

func (f *Framework) listApps(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	st := m.Store()
	if f.cached(w, r, st.Index()) {
		return nil
	}
	v := readView(st)
	emb := embeds(r)
	q := r.URL.Query()
	fast := !emb["readiness"] && !emb["taskStats"]
	var buf *body
	if fast {
		// One listing at a time reuses and refreshes the encodings.
		f.encMu.Lock()
		defer f.encMu.Unlock()
		if f.enc == nil {
			f.enc = map[string]encoded{}
		}
		f.encGen++
		buf = &body{pieces: make([][]byte, 0, f.encPieces+8)}
		buf.add([]byte(`{"apps":[`))
	}
	out := []api.AppInfo{}
	first := true
	authz := sched.AuthzFrom(r.Context())
	for _, id := range v.appIDs {
		app := v.apps[id]
		if !authz.CanReadApp(id) || app.Pod != nil {
			continue
		}
		if c := q.Get("cmd"); c != "" && (app.Cmd == nil || !strings.Contains(*app.Cmd, c)) {
			continue
		}
		if s := q.Get("id"); s != "" && !strings.Contains(id, s) {
			continue
		}
		if l := q.Get("label"); l != "" && !labelSelectorMatch(l, app.Labels) {
			continue
		}
		if fast {
			if !first {
				buf.add(comma)
			}
			first = false
			f.appendAppInfo(buf, v, st, app, emb)
			continue
		}
		out = append(out, f.appInfo(v, st, app, emb, false, false))
	}
	if fast {
		buf.add([]byte("]}\n"))
		f.encPieces = len(buf.pieces)
		pruneUnused(f.enc, f.encGen, 1024, func(e encoded) uint64 { return e.gen }, func(e encoded) int { return len(e.b) })
		pruneUnused(f.frags, f.encGen, 256, func(fr *fragment) uint64 { return fr.gen }, func(fr *fragment) int { return len(fr.b) })
		f.writeRaw(w, r, v.index, buf)
		return nil
	}
	f.writeCached(w, r, v.index, map[string]any{"apps": out})
	return nil
}

// prepare decodes, merges, normalizes and validates an app definition.
// claimed holds the service ports given to earlier apps of the same
// request (an array PUT, a group), by app id; prepare adds the ports it
// gives this app, so two apps of one request never share a port. It may
// be nil for a request of one app.
func (f *Framework) prepare(v *view, existing *api.App, keys map[string]json.RawMessage, id, prefix string, partial bool, now time.Time, claimed map[int]string) (*api.App, *apiError) {
	base := existing
	if !partial {
		base = nil
	}
	if existing != nil && existing.Pod != nil {
		return nil, errMsg(409, "'%s' is a pod: change it through /v2/pods", id)
	}
	if _, ok := keys["pod"]; ok {
		return nil, notValid(api.ErrorDetail{Path: prefix + "/pod", Errors: []string{"error.unknown.property: an app has no pod; pods are created at /v2/pods"}})
	}
	app, present, aerr := mergeApp(&f.cfg, base, keys, prefix)
	if aerr != nil {
		return nil, aerr
	}
	app.ID = id
	normalizeApp(app, present)
	normalizeResident(app, present)
	details := validateApp(app, prefix)
	if existing == nil {
		if msg := pathClash(v, id); msg != "" {
			details = append(details, api.ErrorDetail{Path: prefix + "/id", Errors: []string{msg}})
		}
	}
	var prev []int
	if existing != nil {
		prev = servicePorts(existing)
	}
	usedBy := otherServicePorts(v, id, prev, claimed)
	if len(details) == 0 {
		for _, d := range assignServicePortsBy(app, usedBy, func(p int) int { return v.skipHeld(p, id) }, f.cfg.ReservedServicePorts, prev, f.cfg.ServicePortMin, f.cfg.ServicePortMax) {
			d.Path = prefix + d.Path
			details = append(details, d)
		}
	}
	if len(details) > 0 {
		return nil, notValid(details...)
	}
	if claimed != nil {
		for _, p := range servicePorts(app) {
			if p != 0 {
				claimed[p] = id
			}
		}
	}
	prevVersion := ""
	if existing != nil {
		prevVersion = existing.Version
	}
	ver := newVersion(now, prevVersion)
	app.Version = ver
	if existing != nil && sameConfig(existing, app) {
		lc := configVersion(existing)
		app.VersionInfo = &api.VersionInfo{LastScalingAt: ver, LastConfigChangeAt: lc}
	} else {
		app.VersionInfo = &api.VersionInfo{LastScalingAt: ver, LastConfigChangeAt: ver}
	}
	return app, nil
}

// otherServicePorts tells which app other than id holds a service port:
// the apps of the view (by port, not gathered from every app for each
// request), overridden by the ports given to earlier apps of the same
// request (claimed); prev are id's own ports before this change.
func otherServicePorts(v *view, id string, prev []int, claimed map[int]string) func(int) (string, bool) {
	return func(p int) (string, bool) {
		if p == 0 {
			return "", false
		}
		oid, inRequest := claimed[p]
		// A port the app already holds stays its own, even where an older
		// weft gave the same port to another app too: scaling or updating
		// such an app must not fail on a clash it did not ask for.
		if !inRequest && slices.Contains(prev, p) {
			return "", false
		}
		if inRequest && oid != id {
			return oid, true
		}
		return v.serviceOwner(p, id)
	}
}

// pathClash says why id cannot name a new app: an app may not share its id
// with a group, nor live inside another app.
func pathClash(v *view, id string) string {
	for p := parentID(id); p != "/"; p = parentID(p) {
		if _, ok := v.apps[p]; ok {
			return fmt.Sprintf("%s is an app, so it cannot be the group of %s", p, id)
		}
	}
	// The apps inside id, if any, come first at id+"/" in the sorted ids.
	if i := sort.SearchStrings(v.appIDs, id+"/"); i < len(v.appIDs) && strings.HasPrefix(v.appIDs[i], id+"/") {
		return fmt.Sprintf("%s is a group (it holds %s); an app cannot have the same id", id, v.appIDs[i])
	}
	return ""
}

func appOps(c change) []sched.Op {
	var ops []sched.Op
	if c.To != nil {
		ops = append(ops, sched.Put(sched.TableApps, c.To.ID, c.To), sched.Put(sched.TableAppVersions, c.To.ID+"@"+c.To.Version, c.To))
	}
	return ops
}

func (f *Framework) createApp(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	keys, aerr := parseObject(body, reflect.TypeOf(api.App{}), "")
	if aerr != nil {
		return aerr
	}
	var raw struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &raw)
	id, probs := canonicalID(raw.ID, "/")
	if raw.ID == "" {
		return notValid(api.ErrorDetail{Path: "/id", Errors: []string{"error.path.missing"}})
	}
	if len(probs) > 0 {
		return notValid(api.ErrorDetail{Path: "/id", Errors: probs})
	}
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	st := m.Store()
	v := readView(st)
	if _, ok := v.apps[id]; ok {
		return errMsg(409, "An app with id [%s] already exists.", id)
	}
	app, aerr := f.prepare(v, nil, keys, id, "", false, m.Now(), nil)
	if aerr != nil {
		return aerr
	}
	c := change{To: app}
	ops := append([]sched.Op{sched.Check(sched.TableApps, id, 0)}, appOps(c)...)
	ev := api.NewEvent(api.EventAPIPost, map[string]any{"clientIp": clientIP(r), "uri": r.URL.Path, "appDefinition": app})
	res, aerr := f.deploy(r.Context(), m, v, []change{c}, boolParam(r, "force"), ops, ev)
	if aerr != nil {
		if aerr.Status == 409 && aerr.Body.Deployments == nil {
			return errMsg(409, "An app with id [%s] already exists.", id)
		}
		return aerr
	}
	info := api.AppInfo{App: *app, Deployments: []api.DeploymentRef{{ID: res.DeploymentID}}}
	w.Header().Set("Location", "/v2/apps"+id)
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	writeJSON(w, 201, withTasks(info))
	return nil
}

// updateApps is PUT/PATCH /v2/apps with an array of (partial) apps: one
// deployment for all.
func (f *Framework) updateApps(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		return invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.expected.jsarray"}})
	}
	st := m.Store()
	v := readView(st)
	now := m.Now()
	partial := r.Method == http.MethodPatch || r.URL.Query().Get("partialUpdate") != "false"
	var (
		changes []change
		ops     []sched.Op
		details []api.ErrorDetail
		evs     []api.Event
	)
	seen := map[string]bool{}
	claimed := map[int]string{}
	for i, e := range elems {
		prefix := "(" + strconv.Itoa(i) + ")"
		keys, aerr := parseObject(e, reflect.TypeOf(api.App{}), prefix)
		if aerr != nil {
			return aerr
		}
		var raw struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(e, &raw)
		if raw.ID == "" {
			details = append(details, api.ErrorDetail{Path: prefix + "/id", Errors: []string{"error.path.missing"}})
			continue
		}
		id, probs := canonicalID(raw.ID, "/")
		if len(probs) > 0 {
			details = append(details, api.ErrorDetail{Path: prefix + "/id", Errors: probs})
			continue
		}
		if seen[id] {
			details = append(details, api.ErrorDetail{Path: prefix + "/id", Errors: []string{"id " + id + " appears more than once"}})
			continue
		}
		seen[id] = true
		existing := v.apps[id]
		app, aerr := f.prepare(v, existing, keys, id, prefix, partial, now, claimed)
		if aerr != nil {
			if aerr.Status == 422 {
				details = append(details, aerr.Body.Details...)
				continue
			}
			return aerr
		}
		idx := uint64(0)
		if existing != nil {
			e, _ := st.Get(sched.TableApps, id)
			idx = e.ModifyIndex
		}
		c := change{From: existing, To: app}
		changes = append(changes, c)
		ops = append(ops, sched.Check(sched.TableApps, id, idx))
		ops = append(ops, appOps(c)...)
		evs = append(evs, api.NewEvent(api.EventAPIPost, map[string]any{"clientIp": clientIP(r), "uri": r.URL.Path, "appDefinition": app}))
	}
	if len(details) > 0 {
		return notValid(details...)
	}
	if len(changes) == 0 {
		return notValid(api.ErrorDetail{Path: "/", Errors: []string{"no apps given"}})
	}
	res, aerr := f.deploy(r.Context(), m, v, changes, boolParam(r, "force"), ops, evs...)
	if aerr != nil {
		return aerr
	}
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	writeJSON(w, 200, res)
	return nil
}

// deploy commits ops together with a new deployment for changes. An app
// locked by another deployment is a 409 unless force, which cancels that
// deployment.
func (f *Framework) deploy(ctx context.Context, m sched.MasterHandle, v *view, changes []change, force bool, ops []sched.Op, events ...api.Event) (api.DeploymentResult, *apiError) {
	return f.deployOver(ctx, m, v, changes, force, "", ops, events...)
}

// deployOver is deploy for a rollback of deployment rollbackOf (or ""),
// which ends that deployment as rolled back rather than superseded.
func (f *Framework) deployOver(ctx context.Context, m sched.MasterHandle, v *view, changes []change, force bool, rollbackOf string, ops []sched.Op, events ...api.Event) (api.DeploymentResult, *apiError) {
	if aerr := authorizeChanges(ctx, m, changes); aerr != nil {
		return api.DeploymentResult{}, aerr
	}
	locked := map[string]depEntry{}
	finished := map[string]bool{}
	for _, c := range changes {
		for _, de := range v.deployments {
			for _, a := range de.d.AffectedApps {
				if a != c.id() || finished[de.d.ID] {
					continue
				}
				if _, ok := locked[de.d.ID]; ok {
					continue
				}
				// A deployment whose goal is reached but that Run has not
				// closed yet (the last status update just landed) does not
				// lock: it is finished here, in the same commit.
				if dops, devs, done := progressDone(v, de, m.Now()); done {
					finished[de.d.ID] = true
					ops = append(ops, dops...)
					events = append(events, devs...)
					continue
				}
				locked[de.d.ID] = de
			}
		}
	}
	if len(locked) > 0 && !force {
		refs := []api.DeploymentRef{}
		for id := range locked {
			refs = append(refs, api.DeploymentRef{ID: id})
		}
		sort.Slice(refs, func(i, j int) bool { return refs[i].ID < refs[j].ID })
		return api.DeploymentResult{}, &apiError{Status: 409, Body: api.ErrorBody{
			Message: fmt.Sprintf("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/%s'.",
				refs[0].ID),
			Deployments: refs}}
	}
	for _, de := range locked {
		reason := "canceled by a forced change"
		if rollbackOf != "" && de.d.ID == rollbackOf {
			reason = "rolled back by DELETE /v2/deployments/" + rollbackOf
		}
		ops = append(ops, sched.Check(sched.TableDeployments, de.d.ID, de.idx), sched.Delete(sched.TableDeployments, de.d.ID),
			sched.Delete(sched.TableMeta, metaRollback+de.d.ID), outcomeOp(de.d.ID, api.DeploymentFailed, reason, m.Now(), de.d.AffectedApps...))
		// Marathon's deployment_failed has no reason; GET /v1/deployments/{id} has it.
		events = append(events, api.NewEvent(api.EventDeploymentFailed, map[string]any{
			"id": de.d.ID, "plan": planEventJSON(de.d)}))
	}
	version := api.Timestamp(m.Now())
	for _, c := range changes {
		if c.To != nil && c.To.Version > version {
			version = c.To.Version
		}
	}
	id := uuid.NewString()
	groups := readGroups(m.Store())
	for i := range changes {
		if changes[i].groupDeps == nil { // a group write gives its own
			changes[i].groupDeps = inheritedDeps(changes[i].id(), groups)
		}
	}
	d := buildPlan(id, version, changes)
	rollback := map[string]*api.App{}
	for _, c := range changes {
		rollback[c.id()] = c.From
	}
	ops = append(ops, sched.Check(sched.TableDeployments, id, 0), sched.Put(sched.TableDeployments, id, &d),
		sched.Put(sched.TableMeta, metaRollback+id, rollback))
	var cur any = map[string]any{"actions": []any{}}
	if len(d.Steps) > 0 {
		cur = marathonStep(&d, d.Steps[0])
	}
	events = append(events, api.NewEvent(api.EventDeploymentInfo, map[string]any{"plan": planEventJSON(&d), "currentStep": cur}),
		api.NewEvent(api.EventGroupChangeSuccess, map[string]any{"groupId": "/", "version": version}))
	actx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := m.Store().Apply(actx, ops, events...); err != nil {
		return api.DeploymentResult{}, storeError(err)
	}
	m.Revive()
	return api.DeploymentResult{DeploymentID: id, Version: version}, nil
}

func writeDeployment(w http.ResponseWriter, status int, res api.DeploymentResult) {
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	writeJSON(w, status, res)
}

// ---- /v2/apps/{id}[/...] ----

func (f *Framework) serveApp(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	rest := strings.TrimPrefix(r.URL.Path, "/v2/apps/")
	segs := splitID(rest)
	n := len(segs)
	if a := sched.AuthzFrom(r.Context()); !a.Full() && n > 0 {
		// Writes are checked on what they change (authorizeChanges,
		// killTasks); reads here.
		if id := appPathOf(segs); id != "" && r.Method == http.MethodGet && id != "/"+rest {
			if cid, _ := canonicalID(id, "/"); !a.CanReadApp(cid) {
				return forbidden(a, sched.AccessRead, cid)
			}
		}
	}
	switch {
	case n == 0:
		return f.serveApps(w, r, m)
	case segs[n-1] == "*":
		if r.Method != http.MethodGet {
			return methodNotAllowed()
		}
		return f.groupApps(w, r, m, "/"+strings.Join(segs[:n-1], "/"))
	case n >= 2 && segs[n-1] == "restart":
		if r.Method != http.MethodPost {
			return methodNotAllowed()
		}
		return f.restartApp(w, r, m, "/"+strings.Join(segs[:n-1], "/"))
	case n >= 2 && segs[n-1] == "tasks":
		return f.appTasks(w, r, m, "/"+strings.Join(segs[:n-1], "/"))
	case n >= 3 && segs[n-2] == "tasks":
		if r.Method != http.MethodDelete {
			return methodNotAllowed()
		}
		return f.killAppTask(w, r, m, "/"+strings.Join(segs[:n-2], "/"), segs[n-1])
	case n >= 2 && segs[n-1] == "versions":
		if r.Method != http.MethodGet {
			return methodNotAllowed()
		}
		return f.appVersions(w, r, m, "/"+strings.Join(segs[:n-1], "/"), "")
	case n >= 3 && segs[n-2] == "versions":
		if r.Method != http.MethodGet {
			return methodNotAllowed()
		}
		return f.appVersions(w, r, m, "/"+strings.Join(segs[:n-2], "/"), segs[n-1])
	}
	switch r.Method {
	case http.MethodGet:
		id, _ := canonicalID(rest, "/")
		if a := sched.AuthzFrom(r.Context()); !a.CanReadApp(id) {
			return forbidden(a, sched.AccessRead, id)
		}
		st := m.Store()
		v := readView(st)
		app := v.apps[id]
		if app == nil || app.Pod != nil {
			return appNotFound(id)
		}
		writeJSON(w, 200, map[string]any{"app": withTasks(f.appInfo(v, st, app, embeds(r), true, true))})
		return nil
	case http.MethodPut, http.MethodPatch:
		return f.putApp(w, r, m, rest)
	case http.MethodDelete:
		return f.deleteApp(w, r, m, rest)
	}
	return methodNotAllowed()
}

func (f *Framework) putApp(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, probs := canonicalID(rawID, "/")
	if len(probs) > 0 {
		return notValid(api.ErrorDetail{Path: "/id", Errors: probs})
	}
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	keys, aerr := parseObject(body, reflect.TypeOf(api.App{}), "")
	if aerr != nil {
		return aerr
	}
	st := m.Store()
	v := readView(st)
	existing := v.apps[id]
	if existing == nil && r.Method == http.MethodPatch {
		return appNotFound(id)
	}
	partial := r.Method == http.MethodPatch || r.URL.Query().Get("partialUpdate") != "false"
	app, aerr := f.prepare(v, existing, keys, id, "", partial, m.Now(), nil)
	if aerr != nil {
		return aerr
	}
	idx := uint64(0)
	if existing != nil {
		e, _ := st.Get(sched.TableApps, id)
		idx = e.ModifyIndex
	}
	c := change{From: existing, To: app}
	ops := append([]sched.Op{sched.Check(sched.TableApps, id, idx)}, appOps(c)...)
	ev := api.NewEvent(api.EventAPIPost, map[string]any{"clientIp": clientIP(r), "uri": r.URL.Path, "appDefinition": app})
	res, aerr := f.deploy(r.Context(), m, v, []change{c}, boolParam(r, "force"), ops, ev)
	if aerr != nil {
		return aerr
	}
	status := 200
	if existing == nil {
		status = 201
		w.Header().Set("Location", "/v2/apps"+id)
	}
	writeDeployment(w, status, res)
	return nil
}

func (f *Framework) deleteApp(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	st := m.Store()
	v := readView(st)
	app := v.apps[id]
	if app == nil || app.Pod != nil {
		return appNotFound(id)
	}
	e, _ := st.Get(sched.TableApps, id)
	ops := []sched.Op{sched.Check(sched.TableApps, id, e.ModifyIndex), sched.Delete(sched.TableApps, id),
		sched.Delete(sched.TableMeta, metaLastFailure+id)}
	for _, ve := range st.ListPrefix(sched.TableAppVersions, id+"@") {
		ops = append(ops, sched.Delete(sched.TableAppVersions, ve.Key))
	}
	res, aerr := f.deploy(r.Context(), m, v, []change{{From: app}}, boolParam(r, "force"), ops)
	if aerr != nil {
		return aerr
	}
	f.resetDelay(id)
	writeDeployment(w, 200, res)
	return nil
}

func (f *Framework) restartApp(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	st := m.Store()
	v := readView(st)
	old := v.apps[id]
	if old == nil {
		return appNotFound(id)
	}
	app := cloneApp(old)
	app.Version = newVersion(m.Now(), old.Version)
	app.VersionInfo = &api.VersionInfo{LastScalingAt: app.Version, LastConfigChangeAt: app.Version}
	e, _ := st.Get(sched.TableApps, id)
	c := change{From: old, To: app}
	ops := append([]sched.Op{sched.Check(sched.TableApps, id, e.ModifyIndex)}, appOps(c)...)
	res, aerr := f.deploy(r.Context(), m, v, []change{c}, boolParam(r, "force"), ops)
	if aerr != nil {
		return aerr
	}
	writeDeployment(w, 200, res)
	return nil
}

func (f *Framework) groupApps(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, group string) *apiError {
	gid, _ := canonicalID(group, "/")
	st := m.Store()
	v := readView(st)
	out := []appInfoTasks{}
	for _, id := range v.appIDs {
		if (gid == "/" || strings.HasPrefix(id, gid+"/")) && canRead(r.Context(), id) && v.apps[id].Pod == nil {
			out = append(out, withTasks(f.appInfo(v, st, v.apps[id], embeds(r), true, true)))
		}
	}
	writeJSON(w, 200, map[string]any{"*": out})
	return nil
}

func (f *Framework) appVersions(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID, version string) *apiError {
	id, _ := canonicalID(rawID, "/")
	st := m.Store()
	if _, ok := st.Get(sched.TableApps, id); !ok {
		return appNotFound(id)
	}
	if version != "" {
		e, ok := st.Get(sched.TableAppVersions, id+"@"+version)
		if !ok {
			return errMsg(404, "App '%s' does not exist in version %s", id, version)
		}
		writeJSON(w, 200, e.Value)
		return nil
	}
	vs := []string{}
	for _, e := range st.ListPrefix(sched.TableAppVersions, id+"@") {
		vs = append(vs, strings.TrimPrefix(e.Key, id+"@"))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(vs)))
	writeJSON(w, 200, map[string]any{"versions": vs})
	return nil
}

// ---- tasks ----

func (f *Framework) appTasks(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	st := m.Store()
	v := readView(st)
	if v.apps[id] == nil {
		return appNotFound(id)
	}
	switch r.Method {
	case http.MethodGet:
		out := []any{}
		for _, te := range v.tasks[id] {
			if !api.Terminal(te.rec.Task.State) {
				out = append(out, apiTask(te.rec))
			}
		}
		if isResident(v.apps[id]) {
			for _, rt := range reservedTasks(st, id, v.tasks[id]) {
				out = append(out, rt)
			}
		}
		writeJSON(w, 200, map[string]any{"tasks": out})
		return nil
	case http.MethodDelete:
		host := r.URL.Query().Get("host")
		var sel []taskEntry
		for _, te := range v.tasks[id] {
			t := te.rec.Task
			if api.Terminal(t.State) || te.rec.Goal == api.GoalKill {
				continue
			}
			if host != "" && host != "*" && t.Host != host {
				continue
			}
			sel = append(sel, te)
		}
		return f.killTasks(w, r, m, v, sel, boolParam(r, "scale"), false)
	}
	return methodNotAllowed()
}

func (f *Framework) killAppTask(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID, taskID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	st := m.Store()
	v := readView(st)
	if v.apps[id] == nil {
		return appNotFound(id)
	}
	for _, te := range v.tasks[id] {
		if te.rec.Task.ID == taskID && !api.Terminal(te.rec.Task.State) {
			return f.killTasks(w, r, m, v, []taskEntry{te}, boolParam(r, "scale"), true)
		}
	}
	// A resident instance whose task has ended: wipe=true releases its
	// reservation (Marathon's suspended task).
	for _, rt := range reservedTasks(st, id, v.tasks[id]) {
		if rt.ID != taskID {
			continue
		}
		if !boolParam(r, "wipe") {
			return errMsg(409, "Task '%s' is a suspended resident task: add wipe=true to release its reservation", taskID)
		}
		if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
			return forbidden(a, sched.AccessWrite, id)
		}
		ops := wipeOps(st, map[string]bool{taskID: true})
		for _, e := range st.List(sched.TableReservations) {
			if e.Key == taskID {
				ops = append(ops, sched.Check(sched.TableReservations, e.Key, e.ModifyIndex), sched.Delete(sched.TableReservations, e.Key))
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		if _, err := st.Apply(ctx, ops); err != nil {
			return storeError(err)
		}
		m.Revive()
		writeJSON(w, 200, map[string]any{"task": rt})
		return nil
	}
	return errMsg(404, "Task '%s' does not exist", taskID)
}

// killTasks sets the kill goal on tasks; with scale the apps' instances go
// down by as many (a deployment), else they are replaced.
func (f *Framework) killTasks(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, v *view, sel []taskEntry, scale, single bool) *apiError {
	st := m.Store()
	a := sched.AuthzFrom(r.Context())
	for _, te := range sel {
		if !a.CanWriteApp(te.rec.Task.AppID) {
			return forbidden(a, sched.AccessWrite, te.rec.Task.AppID)
		}
	}
	var ops []sched.Op
	byApp := map[string]int{}
	out := []api.Task{}
	for _, te := range sel {
		ops = append(ops, sched.Check(sched.TableTasks, te.rec.Task.ID, te.idx),
			sched.Put(sched.TableTasks, te.rec.Task.ID, killed(te.rec, "killed through the API")))
		byApp[te.rec.Task.AppID]++
		out = append(out, apiTask(te.rec))
	}
	if boolParam(r, "wipe") {
		ids := map[string]bool{}
		for _, te := range sel {
			ids[te.rec.Task.ID] = true
		}
		ops = append(ops, wipeOps(st, ids)...)
	}
	if scale {
		var changes []change
		for _, id := range sortedKeys(byApp) {
			old := v.apps[id]
			if old == nil {
				continue
			}
			app := cloneApp(old)
			app.Instances -= byApp[id]
			if app.Instances < 0 {
				app.Instances = 0
			}
			app.Version = newVersion(m.Now(), old.Version)
			app.VersionInfo = &api.VersionInfo{LastScalingAt: app.Version, LastConfigChangeAt: configVersion(old)}
			e, _ := st.Get(sched.TableApps, id)
			c := change{From: old, To: app}
			ops = append(ops, sched.Check(sched.TableApps, id, e.ModifyIndex))
			ops = append(ops, appOps(c)...)
			changes = append(changes, c)
		}
		if len(changes) > 0 {
			res, aerr := f.deploy(r.Context(), m, v, changes, boolParam(r, "force"), ops)
			if aerr != nil {
				return aerr
			}
			writeDeployment(w, 200, res)
			return nil
		}
	}
	if len(ops) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		if _, err := st.Apply(ctx, ops); err != nil {
			return storeError(err)
		}
		m.Revive()
	}
	if single {
		writeJSON(w, 200, map[string]any{"task": out[0]})
		return nil
	}
	writeJSON(w, 200, map[string]any{"tasks": out})
	return nil
}

func (f *Framework) serveTasks(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
	}
	if accept := r.Header.Get("Accept"); strings.Contains(accept, "text/plain") && !strings.Contains(accept, "json") {
		f.tasksText(w, r, m)
		return nil
	}
	if f.cached(w, r, m.Store().Index()) {
		return nil
	}
	v := readView(m.Store())
	want := map[string]bool{}
	for _, s := range r.URL.Query()["status"] {
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				want["TASK_"+strings.ToUpper(strings.TrimPrefix(strings.ToUpper(x), "TASK_"))] = true
			}
		}
	}
	out := []api.Task{}
	ids := sortedKeys(v.tasks)
	for _, id := range ids {
		for _, te := range v.tasks[id] {
			t := te.rec.Task
			if api.Terminal(t.State) || (len(want) > 0 && !want[t.State]) || !canRead(r.Context(), t.AppID) {
				continue
			}
			out = append(out, apiTask(te.rec))
		}
	}
	f.writeCached(w, r, v.index, map[string]any{"tasks": out})
	return nil
}

// tasksText is GET /v2/tasks with Accept: text/plain, the format of
// Marathon's haproxy-marathon-bridge: per app and service port one line
// "app_id<TAB>servicePort<TAB>host:port<TAB>...", running tasks only.
func (f *Framework) tasksText(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) {
	v := readView(m.Store())
	var b strings.Builder
	for _, id := range v.appIDs {
		if !canRead(r.Context(), id) {
			continue
		}
		app := v.apps[id]
		var running []*api.Task
		for _, te := range v.tasks[id] {
			if te.rec.Task.State == api.TaskRunning {
				running = append(running, &te.rec.Task)
			}
		}
		sps := servicePorts(app)
		if len(sps) == 0 {
			b.WriteString(taskIDPrefix(id) + "\t \t")
			for _, t := range running {
				b.WriteString(t.Host + "\t")
			}
			b.WriteString("\n")
			continue
		}
		for i, sp := range sps {
			b.WriteString(taskIDPrefix(id) + "\t" + strconv.Itoa(sp) + "\t")
			for _, t := range running {
				if i < len(t.Ports) {
					b.WriteString(t.Host + ":" + strconv.Itoa(t.Ports[i]) + "\t")
				}
			}
			b.WriteString("\n")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

func (f *Framework) serveTasksDelete(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	if r.URL.Path != "/v2/tasks/delete" {
		return errMsg(404, "%s %s: no such Marathon API path", r.Method, r.URL.Path)
	}
	if r.Method != http.MethodPost {
		return methodNotAllowed()
	}
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	keys, aerr := parseObject(body, reflect.TypeOf(req), "")
	if aerr != nil {
		return aerr
	}
	if _, ok := keys["ids"]; !ok {
		return invalidJSON(api.ErrorDetail{Path: "/ids", Errors: []string{"error.path.missing"}})
	}
	_ = json.Unmarshal(body, &req)
	v := readView(m.Store())
	byID := map[string]taskEntry{}
	for _, ts := range v.tasks {
		for _, te := range ts {
			byID[te.rec.Task.ID] = te
		}
	}
	var sel []taskEntry
	var unknown []string
	for _, id := range req.IDs {
		te, ok := byID[id]
		if !ok || api.Terminal(te.rec.Task.State) {
			unknown = append(unknown, id)
			continue
		}
		if te.rec.Goal != api.GoalKill {
			sel = append(sel, te)
		}
	}
	if len(unknown) > 0 {
		return errMsg(400, "Unknown task ids: %s", strings.Join(unknown, ", "))
	}
	return f.killTasks(w, r, m, v, sel, boolParam(r, "scale"), false)
}

// ---- deployments ----

func (f *Framework) serveDeployments(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
	}
	v := readView(m.Store())
	out := []api.Deployment{}
	a := sched.AuthzFrom(r.Context())
	for _, de := range v.deployments {
		if deniedApp(a, sched.AccessRead, de.d.AffectedApps) != "" {
			continue
		}
		d := *de.d
		// Readiness of the tasks the current actions wait for.
		d.CurrentActions = append([]api.DeploymentAction(nil), d.CurrentActions...)
		for i, a := range d.CurrentActions {
			app := v.apps[a.App]
			if app == nil || len(app.ReadinessChecks) == 0 {
				continue
			}
			for _, te := range v.tasks[a.App] {
				t := te.rec.Task
				if !api.Terminal(t.State) && te.rec.Goal == api.GoalRun && t.Version >= configVersion(app) {
					d.CurrentActions[i].ReadinessCheckResults = append(d.CurrentActions[i].ReadinessCheckResults,
						api.ReadinessResult{Name: app.ReadinessChecks[0].Name, TaskID: t.ID, Ready: t.Ready != nil && *t.Ready})
				}
			}
		}
		out = append(out, marathonDeployment(d))
	}
	writeJSON(w, 200, out)
	return nil
}

func (f *Framework) serveDeployment(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v2/deployments/"), "/")
	st := m.Store()
	v := readView(st)
	var de *depEntry
	for i := range v.deployments {
		if v.deployments[i].d.ID == id {
			de = &v.deployments[i]
		}
	}
	if de == nil {
		return errMsg(404, "DeploymentPlan %s does not exist", id)
	}
	want := sched.AccessWrite
	if r.Method == http.MethodGet {
		want = sched.AccessRead
	}
	if a := sched.AuthzFrom(r.Context()); !a.Full() {
		if app := deniedApp(a, want, de.d.AffectedApps); app != "" {
			return forbidden(a, want, app)
		}
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, 200, marathonDeployment(*de.d))
		return nil
	case http.MethodDelete:
	default:
		return methodNotAllowed()
	}
	if boolParam(r, "force") {
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		_, err := st.Apply(ctx, []sched.Op{sched.Check(sched.TableDeployments, id, de.idx), sched.Delete(sched.TableDeployments, id),
			sched.Delete(sched.TableMeta, metaRollback+id), outcomeOp(id, api.DeploymentFailed, "stopped by DELETE /v2/deployments?force=true", m.Now(), de.d.AffectedApps...)},
			api.NewEvent(api.EventDeploymentFailed, map[string]any{"id": id, "plan": planEventJSON(de.d)}))
		if err != nil {
			return storeError(err)
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	// Roll back: a new deployment from the current state to the one before.
	prev := map[string]*api.App{}
	if e, ok := st.Get(sched.TableMeta, metaRollback+id); ok {
		if raw, ok := e.Value.(*json.RawMessage); ok && raw != nil {
			_ = json.Unmarshal(*raw, &prev)
		}
	}
	var (
		changes []change
		ops     []sched.Op
	)
	for _, appID := range de.d.AffectedApps {
		cur := v.apps[appID]
		old := prev[appID]
		curIdx := uint64(0)
		if cur != nil {
			e, _ := st.Get(sched.TableApps, appID)
			curIdx = e.ModifyIndex
		}
		switch {
		case old == nil && cur == nil:
			continue
		case old == nil:
			ops = append(ops, sched.Check(sched.TableApps, appID, curIdx), sched.Delete(sched.TableApps, appID))
			for _, ve := range st.ListPrefix(sched.TableAppVersions, appID+"@") {
				ops = append(ops, sched.Delete(sched.TableAppVersions, ve.Key))
			}
			changes = append(changes, change{From: cur})
		default:
			// Marathon's revert: the app as it was, with its version.
			app := cloneApp(old)
			c := change{From: cur, To: app}
			ops = append(ops, sched.Check(sched.TableApps, appID, curIdx))
			ops = append(ops, appOps(c)...)
			changes = append(changes, c)
		}
	}
	if len(changes) == 0 {
		return errMsg(409, "nothing to roll back for deployment %s", id)
	}
	res, aerr := f.deployOver(r.Context(), m, v, changes, true, id, ops)
	if aerr != nil {
		return aerr
	}
	writeDeployment(w, 200, res)
	return nil
}

// ---- groups ----

func (f *Framework) serveGroups(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	raw := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v2/groups"), "/")
	gid := "/"
	if raw != "" {
		id, probs := canonicalID(raw, "/")
		if len(probs) > 0 && id != "/" {
			return notValid(api.ErrorDetail{Path: "/id", Errors: probs})
		}
		gid = id
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return f.writeGroup(w, r, m, gid)
	default:
		return methodNotAllowed()
	}
	st := m.Store()
	v := readView(st)
	emb := embeds(r)
	ids := v.appIDs
	if a := sched.AuthzFrom(r.Context()); !a.Full() {
		ids = nil
		for _, id := range v.appIDs {
			if a.CanReadApp(id) {
				ids = append(ids, id)
			}
		}
		if gid != "/" && !a.CanReadApp(gid) && !hasPrefixed(ids, gid+"/") {
			return forbidden(a, sched.AccessRead, gid)
		}
	}
	var podIDs []string
	if len(r.URL.Query()["embed"]) == 0 || emb["group.pods"] {
		// Marathon embeds pods (their status) by default, and else only
		// when asked.
		for _, id := range ids {
			if podOf(v, id) != nil {
				podIDs = append(podIDs, id)
			}
		}
	}
	ids = withoutPods(v, ids)
	groups := readGroups(st)
	if a := sched.AuthzFrom(r.Context()); !a.Full() {
		for id := range groups {
			if !a.CanReadApp(id) && !hasPrefixed(ids, id+"/") {
				delete(groups, id)
			}
		}
	}
	now := m.Now()
	tree := buildGroups(ids, podIDs, groups, func(id string) api.AppInfo {
		return f.appInfo(v, st, v.apps[id], emb, false, false)
	}, func(id string) api.PodStatus {
		return buildPodStatus(v, v.apps[id], now)
	})
	g := findGroup(&tree, gid)
	if g == nil {
		return errMsg(404, "Group '%s' does not exist", gid)
	}
	if len(r.URL.Query()["embed"]) > 0 {
		// Marathon lists apps, subgroups and pods by default, and else
		// only those the embed names: the keys of the others are left
		// out, and without group.groups the group's subgroups too.
		embedGroup(g, emb["group.apps"], emb["group.groups"], emb["group.pods"])
	}
	writeJSON(w, 200, g)
	return nil
}

// embedGroup leaves out of g, and of the subgroups it keeps, the lists
// the embed did not ask for.
func embedGroup(g *api.Group, apps, groups, pods bool) {
	if !apps {
		g.Apps = nil
	}
	if !pods {
		g.Pods = nil
	}
	if !groups {
		g.Groups = nil
	}
	for i := range g.Groups {
		embedGroup(&g.Groups[i], apps, groups, pods)
	}
}

// buildGroups makes Marathon's group tree from app and pod ids: every id's
// parent path is a group; info and pod give what the group lists of an
// app and of a pod. Pure.
func buildGroups(appIDs, podIDs []string, groups map[string]groupRecord, info func(id string) api.AppInfo,
	pod func(id string) api.PodStatus) api.Group {
	root := api.Group{ID: "/", Apps: []api.AppInfo{}, Groups: []api.Group{}, Pods: []api.PodStatus{}, Dependencies: []string{}}
	var ensure func(g *api.Group, segs []string, depth int) *api.Group
	ensure = func(g *api.Group, segs []string, depth int) *api.Group {
		if depth == len(segs) {
			return g
		}
		id := "/" + strings.Join(segs[:depth+1], "/")
		for i := range g.Groups {
			if g.Groups[i].ID == id {
				return ensure(&g.Groups[i], segs, depth+1)
			}
		}
		g.Groups = append(g.Groups, api.Group{ID: id, Apps: []api.AppInfo{}, Groups: []api.Group{}, Pods: []api.PodStatus{}, Dependencies: []string{}})
		return ensure(&g.Groups[len(g.Groups)-1], segs, depth+1)
	}
	gids := make([]string, 0, len(groups))
	for id := range groups {
		gids = append(gids, id)
	}
	sort.Strings(gids)
	for _, id := range gids {
		g := ensure(&root, splitID(id), 0)
		if deps := groups[id].Dependencies; len(deps) > 0 {
			g.Dependencies = deps
		}
	}
	for _, id := range appIDs {
		segs := splitID(id)
		g := ensure(&root, segs[:len(segs)-1], 0)
		a := info(id)
		g.Apps = append(g.Apps, a)
	}
	for _, id := range podIDs {
		segs := splitID(id)
		g := ensure(&root, segs[:len(segs)-1], 0)
		g.Pods = append(g.Pods, pod(id))
	}
	var version func(g *api.Group) string
	version = func(g *api.Group) string {
		v := ""
		for _, a := range g.Apps {
			if a.Version > v {
				v = a.Version
			}
		}
		for _, p := range g.Pods {
			if p.Spec != nil && p.Spec.Version > v {
				v = p.Spec.Version
			}
		}
		for i := range g.Groups {
			if gv := version(&g.Groups[i]); gv > v {
				v = gv
			}
		}
		g.Version = v
		return v
	}
	version(&root)
	return root
}

func findGroup(g *api.Group, id string) *api.Group {
	if g.ID == id {
		return g
	}
	for i := range g.Groups {
		if strings.HasPrefix(id+"/", g.Groups[i].ID+"/") {
			return findGroup(&g.Groups[i], id)
		}
	}
	return nil
}

// ---- queue ----

// queueItems lists apps waiting for launches, with their delay and why
// offers were declined.
func (f *Framework) queueItems(m sched.MasterHandle, withOffers bool) []api.QueueItem {
	st := m.Store()
	v := readView(st)
	now := m.Now()
	out := []api.QueueItem{}
	for _, id := range v.appIDs {
		app := v.apps[id]
		at := classify(app, v.tasks[id], func(r *sched.TaskRecord) bool { return inactive(app, r, now) })
		count := app.Instances - len(at.newActive)
		if count <= 0 {
			continue
		}
		left := f.delayLeft(app, now)
		f.mu.Lock()
		since, ok := f.since[id]
		if !ok {
			since = now
		}
		item := api.QueueItem{
			App:   *app,
			Count: count,
			Delay: api.QueueDelay{TimeLeftSeconds: left.Seconds(), Overdue: left == 0},
			Since: api.Timestamp(since),
		}
		pos := &api.ProcessedOffersSummary{RejectSummaryLastOffers: []api.DeclineReason{}, RejectSummaryLaunchAttempt: []api.DeclineReason{}}
		if s := f.stats[id]; s != nil {
			pos.ProcessedOffersCount = s.processed
			pos.UnusedOffersCount = s.unused
			if !s.lastUnused.IsZero() {
				pos.LastUnusedOfferAt = api.Timestamp(s.lastUnused)
			}
			if !s.lastOK.IsZero() {
				pos.LastUsedOfferAt = api.Timestamp(s.lastOK)
			}
			for _, r := range declineReasons {
				dr := api.DeclineReason{Reason: r, Declined: s.reasons[r], Processed: s.processed}
				pos.RejectSummaryLastOffers = append(pos.RejectSummaryLastOffers, dr)
				pos.RejectSummaryLaunchAttempt = append(pos.RejectSummaryLaunchAttempt, dr)
			}
			if withOffers {
				item.LastUnusedOffers = append([]api.UnusedOffer(nil), s.last...)
			}
		} else {
			for _, r := range declineReasons {
				dr := api.DeclineReason{Reason: r}
				pos.RejectSummaryLastOffers = append(pos.RejectSummaryLastOffers, dr)
				pos.RejectSummaryLaunchAttempt = append(pos.RejectSummaryLaunchAttempt, dr)
			}
		}
		f.mu.Unlock()
		item.ProcessedOffersSummary = pos
		out = append(out, item)
	}
	return out
}

// declineReasons are Marathon's reasons in the order its UI lists them.
var declineReasons = []string{"UnfulfilledRole", "UnfulfilledConstraint", "NoCapability", "InsufficientCpus",
	"InsufficientMemory", "InsufficientDisk", "InsufficientGpus", "InsufficientPorts"}

func (f *Framework) serveQueue(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
	}
	items := f.queueItems(m, embeds(r)["lastUnusedOffers"])
	if a := sched.AuthzFrom(r.Context()); !a.Full() {
		kept := items[:0]
		for _, it := range items {
			if a.CanReadApp(it.App.ID) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	writeJSON(w, 200, map[string]any{"queue": items})
	return nil
}

func (f *Framework) serveQueueDelay(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	rest := strings.TrimPrefix(r.URL.Path, "/v2/queue/")
	segs := splitID(rest)
	if len(segs) < 2 || segs[len(segs)-1] != "delay" {
		return errMsg(404, "%s %s: no such Marathon API path", r.Method, r.URL.Path)
	}
	if r.Method != http.MethodDelete {
		return methodNotAllowed()
	}
	id, _ := canonicalID(strings.Join(segs[:len(segs)-1], "/"), "/")
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	if _, ok := m.Store().Get(sched.TableApps, id); !ok {
		return errMsg(404, "Application %s not found in tasks queue.", id)
	}
	f.resetDelay(id)
	m.Revive()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// countTask adds a task to the app's staged/running/healthy counts; it
// reports false for an ended task, which counts nowhere and is not listed.
func countTask(info *api.AppInfo, t *api.Task) bool {
	if api.Terminal(t.State) {
		return false
	}
	switch t.State {
	case api.TaskStaging, api.TaskStarting:
		info.TasksStaged++
	case api.TaskRunning:
		info.TasksRunning++
	}
	if h, ok := t.Healthy(); ok {
		if h {
			info.TasksHealthy++
		} else {
			info.TasksUnhealthy++
		}
	}
	return true
}

// pruneUnused drops the entries of a listing cache that the latest listing
// (gen) did not use, once they outnumber the used ones by more than slack
// or hold more than maxUnusedBytes: the renderings of a deleted app with
// labels near their limit are megabytes that no listing will ask for again.
func pruneUnused[V any](m map[string]V, gen uint64, slack int, genOf func(V) uint64, sizeOf func(V) int) {
	used, unusedBytes := 0, 0
	for _, v := range m {
		if genOf(v) == gen {
			used++
		} else {
			unusedBytes += sizeOf(v)
		}
	}
	if len(m) <= 2*used+slack && unusedBytes <= maxUnusedBytes {
		return
	}
	for k, v := range m {
		if genOf(v) != gen {
			delete(m, k)
		}
	}
}

// maxUnusedBytes bounds what a listing cache keeps that the latest
// listing did not use.
const maxUnusedBytes = 1 << 20
