package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Name is the framework's name: tasks carry it in Task.Framework.
const Name = "marathon"

// meta table keys.
const (
	metaLastFailure = "marathon/lastTaskFailure/" // + app id
	metaRollback    = "marathon/rollback/"        // + deployment id → map[appID]*api.App (nil: did not exist)
)

// Framework is the marathon framework. Create it with New; cmd/weft hands
// it to the master, which calls Routes once and Run while it leads.
type Framework struct {
	cfg Config
	log *slog.Logger

	handle atomic.Pointer[handleBox]
	wants  atomic.Bool

	mu             sync.Mutex
	outcomesPruned time.Time                // guarded by mu
	backoff        map[string]*backoffState // app id →
	stats          map[string]*offerStats   // app id → why offers were declined
	since          map[string]time.Time     // app id → waiting for launches since
	doomed         map[string]time.Time     // task id → found unhealthy at
	ended          map[string]bool          // task ids whose end was counted in the backoff
	failures       map[string][]int         // task id → consecutive failures per check, as last seen
	tokens         float64                  // health-kill bucket
	refilled       time.Time
	agents         map[string]facts // agent id → constraint facts, learned from offers and Nodes
	appWants       map[string]bool  // apps that missed instances at the last pass (nil before the first)

	reconMu sync.Mutex
	recon   reconState // what the last pass looked at; written under reconMu and mu

	cacheMu    sync.Mutex
	cacheIndex uint64
	cache      map[string]*body // GET path+query → encoded answer at cacheIndex

	encMu     sync.Mutex
	enc       map[string]encoded   // "a"+app id / "t"+task id → JSON at a modify index
	encGen    uint64               // listings so far; entries unused lately are pruned
	encPieces int                  // pieces of the last listing, to size the next
	frags     map[string]*fragment // "f0"/"f1" (tasks embedded) + app id → rendered AppInfo
}

type encoded struct {
	idx, gen uint64
	b        []byte
}

type handleBox struct{ m sched.MasterHandle }

type backoffState struct {
	delay     time.Duration
	notBefore time.Time
	version   string
}

type offerStats struct {
	processed, unused  int
	reasons            map[string]int
	lastUnused, lastOK time.Time
	last               []api.UnusedOffer
}

var _ sched.Framework = (*Framework)(nil)

// New returns the marathon framework.
func New(cfg Config) *Framework {
	cfg.fill()
	return &Framework{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "marathon"),
		backoff:  map[string]*backoffState{},
		stats:    map[string]*offerStats{},
		since:    map[string]time.Time{},
		doomed:   map[string]time.Time{},
		ended:    map[string]bool{},
		failures: map[string][]int{},
		agents:   map[string]facts{},
		tokens:   float64(cfg.HealthKillBurst),
	}
}

// Name implements sched.Framework.
func (f *Framework) Name() string { return Name }

// Wants implements sched.Framework: true while some app misses instances
// and is not held back by its launch delay or its deployment's order.
func (f *Framework) Wants() bool { return f.wants.Load() }

func (f *Framework) master() sched.MasterHandle {
	if b := f.handle.Load(); b != nil {
		return b.m
	}
	return nil
}

func (f *Framework) setMaster(m sched.MasterHandle) {
	if m != nil {
		f.handle.Store(&handleBox{m})
	}
}

func (f *Framework) now() time.Time { return f.cfg.Now() }

// Run implements sched.Framework: it watches the store and applies what
// the desired state says — expunge ended tasks (recording failures and
// growing the backoff), kill tasks of deleted apps, scale down, replace
// old versions within the upgrade strategy, kill unhealthy tasks, give up
// on unreachable ones, and move deployments along.
func (f *Framework) Run(ctx context.Context, m sched.MasterHandle) error {
	f.setMaster(m)
	st := m.Store()
	var after uint64
	for {
		if ctx.Err() != nil {
			return nil
		}
		f.refreshAgents(m)
		if err := f.reconcileChanged(ctx, st); err != nil && ctx.Err() == nil {
			if !errors.Is(err, sched.ErrConflict) {
				f.log.Warn("reconciling apps", "err", err)
			}
		}
		if f.Wants() {
			m.Revive()
		}
		if st.IsLeader() {
			f.pruneOutcomes(ctx, st, m.Now())
		}
		wctx, cancel := context.WithTimeout(ctx, f.cfg.Tick)
		idx, _ := st.Watch(wctx, after)
		cancel()
		after = idx
	}
}

// membership is implemented by masters that can list the nodes without
// summing what their tasks use (which refreshAgents does not need).
type membership interface {
	NodesWithoutUse() []api.Node
}

func (f *Framework) refreshAgents(m sched.MasterHandle) {
	var nodes []api.Node
	if mm, ok := m.(membership); ok {
		nodes = mm.NodesWithoutUse()
	} else {
		nodes = m.Nodes()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range nodes {
		if n.ID == "" {
			continue
		}
		// The same hostname offers carry (the node name, else its address):
		// several agents may share one address (weft up, test clusters).
		host := n.Name
		if host == "" {
			host = n.Address
		}
		role := n.AgentRole
		if role == "" {
			role = "*"
		}
		docker := false
		for _, c := range n.Capabilities {
			docker = docker || c == "docker"
		}
		f.agents[n.ID] = facts{Host: host, Site: n.Site, Attrs: n.Attributes,
			Agent: n.Role != api.RoleMaster && n.Status == sched.NodeAlive, Role: role, Docker: docker, Total: n.Resources}
	}
}

// taskEntry is a task record with its store index (for CAS writes).
type taskEntry struct {
	rec *sched.TaskRecord
	idx uint64
}

// view is one consistent read of what marathon needs from the store.
type view struct {
	index       uint64
	appIdx      map[string]uint64
	apps        map[string]*api.App
	appIDs      []string
	appsAt      uint64                 // index of the view apps, appIdx and appIDs were read at
	tasks       map[string][]taskEntry // by app id (also for apps that no longer exist)
	deployments []depEntry
	// ports counts, per agent, the non-terminal tasks holding each host
	// port. An agent's map is replaced when its tasks change, never modified.
	ports map[string]map[int]int
}

type depEntry struct {
	d   *api.Deployment
	idx uint64
}

// lastView caches the most recent view: it is a pure function of the
// store at one index, and the API handlers and the reconcile loop all ask
// for it after every change. Views are never modified after readView.
var lastView struct {
	sync.Mutex
	st *sched.Store
	v  *view
}

// builder makes views, one at a time, each from the one before: between
// two views of the same store only the tasks written since the older one
// (a store index names one write; entries not written since are the same
// records) and the apps they belong to are looked at again.
var builder struct {
	sync.Mutex
	st   *sched.Store
	base *view                // the last view built
	keys map[string]builtTask // tasks table key → what base holds of it
	log  []viewStep           // the last views built, oldest first
}

// viewStep says which apps' task lists changed from the view at index from
// to the one at index to (apps nil: built from nothing, unknown).
type viewStep struct {
	from, to uint64
	apps     map[string]bool
}

const maxViewSteps = 1024

// changedApps returns the apps whose task lists changed between the views
// of st at indexes from and to, or false when the views built do not say.
func changedApps(st *sched.Store, from, to uint64) (map[string]bool, bool) {
	builder.Lock()
	defer builder.Unlock()
	if builder.st != st {
		return nil, false
	}
	out := map[string]bool{}
	cur := to
	for i := len(builder.log) - 1; i >= 0 && cur != from; i-- {
		s := builder.log[i]
		if s.to != cur {
			continue
		}
		if s.apps == nil || s.from > s.to {
			return nil, false
		}
		for a := range s.apps {
			out[a] = true
		}
		cur = s.from
	}
	return out, cur == from
}

// builtTask is what a view holds of one tasks table entry.
type builtTask struct {
	rec      *sched.TaskRecord
	marathon bool // listed in view.tasks under rec.Task.AppID
}

func readView(st *sched.Store) *view {
	idx := st.Index()
	lastView.Lock()
	if lastView.st == st && lastView.v != nil && lastView.v.index == idx {
		v := lastView.v
		lastView.Unlock()
		return v
	}
	lastView.Unlock()
	builder.Lock()
	v := buildView(st)
	builder.Unlock()
	lastView.Lock()
	if lastView.st != st || lastView.v == nil || v.index >= lastView.v.index {
		lastView.st, lastView.v = st, v
	}
	lastView.Unlock()
	return v
}

// buildView reads a view of st, from builder.base when it is a view of st
// at an earlier index. The caller holds builder.
func buildView(st *sched.Store) *view {
	v := &view{apps: map[string]*api.App{}, appIdx: map[string]uint64{}}
	base := builder.base
	if builder.st != st {
		base = nil
	}
	same := false
	var after uint64
	if base != nil {
		after = base.index
	}
	var dirty map[string]bool
	appsSorted := false
	st.ReadChangedTables(after, func(index uint64, t map[string]map[string]*sched.Entry, keys map[string][]string, complete bool) {
		if base != nil && index == base.index {
			same = true
			return
		}
		if base != nil && (index < base.index || !complete) {
			base = nil
		}
		v.index = index
		if base != nil && len(keys[sched.TableApps]) == 0 {
			// No app was written: share base's (views are never modified).
			v.apps, v.appIdx, v.appIDs, v.appsAt = base.apps, base.appIdx, base.appIDs, base.appsAt
			appsSorted = true
		} else {
			v.appsAt = index
			v.appIDs = make([]string, 0, len(t[sched.TableApps]))
			for id, e := range t[sched.TableApps] {
				v.apps[id] = e.Value.(*api.App)
				v.appIdx[id] = e.ModifyIndex
				v.appIDs = append(v.appIDs, id)
			}
		}
		for _, e := range t[sched.TableDeployments] {
			v.deployments = append(v.deployments, depEntry{e.Value.(*api.Deployment), e.ModifyIndex})
		}
		if base == nil {
			v.tasks = allTasks(t[sched.TableTasks])
			v.ports = map[string]map[int]int{}
			for _, ts := range v.tasks {
				for _, te := range ts {
					countPorts(v.ports, te.rec, 1, nil)
				}
			}
		} else {
			var dropped map[*sched.TaskRecord]bool
			var added map[string][]taskEntry
			v.tasks, dirty, dropped, added = changedTasks(base, keys[sched.TableTasks], t[sched.TableTasks])
			v.ports = base.ports
			if len(dropped)+len(added) > 0 {
				v.ports = make(map[string]map[int]int, len(base.ports))
				for a, m := range base.ports {
					v.ports[a] = m
				}
				copied := map[string]bool{}
				for rec := range dropped {
					countPorts(v.ports, rec, -1, copied)
				}
				for _, ts := range added {
					for _, te := range ts {
						countPorts(v.ports, te.rec, 1, copied)
					}
				}
			}
		}
	})
	if same {
		return base
	}
	if builder.st != st {
		builder.log = nil
	}
	step := viewStep{to: v.index}
	if base != nil {
		step.from, step.apps = base.index, dirty
	}
	if len(builder.log) >= maxViewSteps {
		builder.log = append(builder.log[:0], builder.log[maxViewSteps/2:]...)
	}
	builder.log = append(builder.log, step)
	builder.st, builder.base = st, v
	if !appsSorted {
		sort.Strings(v.appIDs)
	}
	sort.Slice(v.deployments, func(i, j int) bool {
		a, b := v.deployments[i].d, v.deployments[j].d
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.ID < b.ID
	})
	return v
}

func sortTasks(ts []taskEntry) {
	slices.SortFunc(ts, func(a, b taskEntry) int { return strings.Compare(a.rec.Task.ID, b.rec.Task.ID) })
}

// allTasks groups every marathon task by app, sorted by id, and starts
// builder.keys afresh.
func allTasks(table map[string]*sched.Entry) map[string][]taskEntry {
	tasks := map[string][]taskEntry{}
	builder.keys = make(map[string]builtTask, len(table))
	for k, e := range table {
		rec := e.Value.(*sched.TaskRecord)
		m := isMarathonTask(rec)
		builder.keys[k] = builtTask{rec, m}
		if m {
			tasks[rec.Task.AppID] = append(tasks[rec.Task.AppID], taskEntry{rec, e.ModifyIndex})
		}
	}
	for _, ts := range tasks {
		sortTasks(ts)
	}
	return tasks
}

// changedTasks is allTasks from base and the keys written since it (in
// the order written, a key possibly more than once): the apps whose tasks
// were written or deleted get new lists, the others share base's. It
// updates builder.keys and returns the apps whose lists changed.
func changedTasks(base *view, keys []string, table map[string]*sched.Entry) (tasks map[string][]taskEntry, dirty map[string]bool, dropped map[*sched.TaskRecord]bool, added map[string][]taskEntry) {
	dropped = map[*sched.TaskRecord]bool{} // records base lists that are gone
	dirty = map[string]bool{}              // apps whose lists change
	added = map[string][]taskEntry{}       // by app
	done := make(map[string]bool, len(keys))
	for _, k := range keys {
		if done[k] {
			continue
		}
		done[k] = true
		if bt, ok := builder.keys[k]; ok && bt.marathon {
			dropped[bt.rec] = true
			dirty[bt.rec.Task.AppID] = true
		}
		e, ok := table[k]
		if !ok {
			delete(builder.keys, k)
			continue
		}
		rec := e.Value.(*sched.TaskRecord)
		m := isMarathonTask(rec)
		builder.keys[k] = builtTask{rec, m}
		if m {
			added[rec.Task.AppID] = append(added[rec.Task.AppID], taskEntry{rec, e.ModifyIndex})
			dirty[rec.Task.AppID] = true
		}
	}
	tasks = make(map[string][]taskEntry, len(base.tasks)+len(dirty))
	for app, ts := range base.tasks {
		if !dirty[app] {
			tasks[app] = ts
		}
	}
	for app := range dirty {
		var ts []taskEntry
		for _, te := range base.tasks[app] {
			if !dropped[te.rec] {
				ts = append(ts, te)
			}
		}
		ts = append(ts, added[app]...)
		if len(ts) > 0 {
			sortTasks(ts)
			tasks[app] = ts
		}
	}
	return tasks, dirty, dropped, added
}

// countPorts adds (n = 1) or takes away (n = -1) the host ports a
// non-terminal task holds on its agent. Inner maps not yet in copied are
// copied before they change (they may be shared with older views); copied
// nil changes them in place.
func countPorts(ports map[string]map[int]int, rec *sched.TaskRecord, n int, copied map[string]bool) {
	t := &rec.Task
	if t.SlaveID == "" || api.Terminal(t.State) || len(rec.Spec.Ports) == 0 {
		return
	}
	m := ports[t.SlaveID]
	if copied != nil && !copied[t.SlaveID] {
		c := make(map[int]int, len(m)+len(rec.Spec.Ports))
		for p, k := range m {
			c[p] = k
		}
		m = c
		copied[t.SlaveID] = true
		ports[t.SlaveID] = m
	}
	if m == nil {
		m = map[int]int{}
		ports[t.SlaveID] = m
	}
	for _, p := range rec.Spec.Ports {
		if m[p] += n; m[p] <= 0 {
			delete(m, p)
		}
	}
	if len(m) == 0 {
		delete(ports, t.SlaveID)
	}
}

func isMarathonTask(rec *sched.TaskRecord) bool {
	return rec.Task.Framework == Name || (rec.Task.Framework == "" && rec.Task.AppID != "")
}

// held reports whether an app waits for an earlier step of a deployment
// (its dependencies) before anything is launched or killed for it.
func (v *view) held(appID string) bool {
	for _, de := range v.deployments {
		d := de.d
		for i := d.CurrentStep; i < len(d.Steps); i++ { // steps after the current one
			if i < 0 {
				continue
			}
			for _, a := range d.Steps[i].Actions {
				if a.App == appID {
					return true
				}
			}
		}
	}
	return false
}

// deploymentsOf lists the deployments touching an app.
func (v *view) deploymentsOf(appID string) []api.DeploymentRef {
	out := []api.DeploymentRef{}
	for _, de := range v.deployments {
		for _, a := range de.d.AffectedApps {
			if a == appID {
				out = append(out, api.DeploymentRef{ID: de.d.ID})
				break
			}
		}
	}
	return out
}

// appTasks sorts an app's tasks into the groups the policies work on.
type appTasks struct {
	newActive, oldActive []taskEntry // goal run, not ended, not given up
	killing              []taskEntry // goal kill, not ended, reachable
	unhealthy            []taskEntry // active tasks past maxConsecutiveFailures
	newUp, oldUp         int
	oldNotUp             []taskEntry
}

func upTask(app *api.App, t *api.Task) bool {
	if t.State != api.TaskRunning {
		return false
	}
	if len(app.HealthChecks) > 0 {
		if h, ok := t.Healthy(); !ok || !h {
			return false
		}
	}
	if len(app.ReadinessChecks) > 0 && (t.Ready == nil || !*t.Ready) {
		return false
	}
	return true
}

// healthFailed reports whether a task failed a health check
// maxConsecutiveFailures times in a row (0 = never kill).
func healthFailed(app *api.App, t *api.Task) bool {
	if t.State != api.TaskRunning {
		return false
	}
	for i, r := range t.HealthCheckResults {
		if r.Alive || i >= len(app.HealthChecks) {
			continue
		}
		max := app.HealthChecks[i].MaxConsecutiveFailures
		if max > 0 && r.ConsecutiveFailures >= max {
			return true
		}
	}
	return false
}

func (f *Framework) inactive(app *api.App, rec *sched.TaskRecord, now time.Time) bool {
	if rec.Task.State != api.TaskUnreachable && rec.Task.State != api.TaskUnknown {
		return false
	}
	if app == nil || app.UnreachableStrategy.Disabled {
		return false
	}
	since, err := time.Parse(time.RFC3339Nano, rec.UpdatedAt)
	if err != nil {
		return true
	}
	return now.Sub(since) >= time.Duration(app.UnreachableStrategy.InactiveAfterSeconds*float64(time.Second))
}

func classify(app *api.App, tasks []taskEntry, inactive func(*sched.TaskRecord) bool) appTasks {
	var at appTasks
	cv := configVersion(app)
	for _, te := range tasks {
		t := &te.rec.Task
		if api.Terminal(t.State) {
			continue
		}
		if te.rec.Goal == api.GoalKill {
			if t.State != api.TaskUnreachable && t.State != api.TaskUnknown {
				at.killing = append(at.killing, te)
			}
			continue
		}
		if inactive(te.rec) {
			continue
		}
		if healthFailed(app, t) {
			at.unhealthy = append(at.unhealthy, te)
			continue
		}
		up := upTask(app, t)
		if t.Version >= cv && t.Version <= app.Version {
			at.newActive = append(at.newActive, te)
			if up {
				at.newUp++
			}
		} else {
			at.oldActive = append(at.oldActive, te)
			if up {
				at.oldUp++
			} else {
				at.oldNotUp = append(at.oldNotUp, te)
			}
		}
	}
	return at
}

// launchable is how many tasks of app may launch now, before the backoff.
func launchable(app *api.App, at appTasks) (launch int, kills []taskEntry) {
	n := app.Instances
	if len(at.oldActive) == 0 {
		launch = n - len(at.newActive)
		if launch < 0 {
			kills = entries(selectKills(records(at.newActive), -launch, app.KillSelection), at.newActive)
			launch = 0
		}
		return launch, kills
	}
	l, k := upgradeStep(n, len(at.newActive), len(at.oldActive), at.newUp, at.oldUp, len(at.oldNotUp), app.UpgradeStrategy)
	launch = l
	if extra := len(at.newActive) - n; extra > 0 {
		kills = entries(selectKills(records(at.newActive), extra, app.KillSelection), at.newActive)
	}
	if k > 0 {
		kills = append(kills, entries(selectKills(records(at.oldActive), k, app.KillSelection), at.oldActive)...)
	}
	return launch, kills
}

func records(es []taskEntry) []*sched.TaskRecord {
	out := make([]*sched.TaskRecord, len(es))
	for i, e := range es {
		out[i] = e.rec
	}
	return out
}

func entries(rs []*sched.TaskRecord, from []taskEntry) []taskEntry {
	byID := map[string]taskEntry{}
	for _, e := range from {
		byID[e.rec.Task.ID] = e
	}
	out := make([]taskEntry, 0, len(rs))
	for _, r := range rs {
		out = append(out, byID[r.Task.ID])
	}
	return out
}

// delayLeft is how long app's launches are still held by the backoff.
func (f *Framework) delayLeft(app *api.App, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.backoff[app.ID]
	if b == nil {
		return 0
	}
	if b.version != app.Version {
		delete(f.backoff, app.ID) // a new version resets the backoff
		return 0
	}
	if d := b.notBefore.Sub(now); d > 0 {
		return d
	}
	return 0
}

func (f *Framework) recordFailure(app *api.App, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.backoff[app.ID]
	if b == nil || b.version != app.Version {
		b = &backoffState{version: app.Version}
		f.backoff[app.ID] = b
	}
	b.delay = nextBackoff(b.delay, app)
	b.notBefore = now.Add(b.delay)
}

// ResetDelay forgets app's launch backoff (DELETE /v2/queue/{id}/delay).
func (f *Framework) resetDelay(appID string) {
	f.mu.Lock()
	delete(f.backoff, appID)
	f.mu.Unlock()
}

func killed(rec *sched.TaskRecord, msg string) *sched.TaskRecord {
	n := *rec
	n.Goal = api.GoalKill
	if msg != "" {
		n.Task.Message = msg
	}
	return &n
}

// reconcile is one full pass of Run: every app and task is looked at.
func (f *Framework) reconcile(ctx context.Context, st *sched.Store) error {
	return f.reconcilePass(ctx, st, true)
}

// reconcileChanged is the pass Run makes after a change: only the apps
// whose definition or tasks changed since the last pass are looked at,
// unless a full pass is due — every Tick (the timers: backoff expiry,
// unreachable and unhealthy tasks), while deployments are under way, and
// whenever the views built do not say what changed. A pass per task
// change then costs in proportion to the change, not to every task.
func (f *Framework) reconcileChanged(ctx context.Context, st *sched.Store) error {
	return f.reconcilePass(ctx, st, false)
}

// reconState is what the last pass looked at.
type reconState struct {
	st       *sched.Store
	index    uint64
	appIdx   map[string]uint64 // the view's, shared
	appsAt   uint64            // the view's
	deps     bool              // deployments were under way
	lastFull time.Time
	last     time.Time // of the last pass, full or not
}

// changedSince returns the apps to look at when a pass over the changes
// since the last pass is enough, or false when a full pass is due.
func (f *Framework) changedSince(st *sched.Store, v *view, now time.Time) (map[string]bool, bool) {
	f.mu.Lock()
	r := f.recon
	f.mu.Unlock()
	if now.Sub(r.lastFull) >= f.cfg.Tick || now.Before(r.lastFull) {
		return nil, false
	}
	apps, ok := changedAfter(st, v, r)
	if !ok {
		return nil, false
	}
	// Apps whose launch delay ran out since the last pass may launch again.
	f.mu.Lock()
	for id, b := range f.backoff {
		if b.notBefore.After(r.last) && !b.notBefore.After(now) {
			apps[id] = true
		}
	}
	f.mu.Unlock()
	return apps, true
}

// changedAfter returns the apps whose definition or tasks changed between
// the pass r and the view v, or false when that cannot be told (or
// deployments, which hold apps back, are under way).
func changedAfter(st *sched.Store, v *view, r reconState) (map[string]bool, bool) {
	if r.st != st || r.appIdx == nil || r.deps || len(v.deployments) > 0 || v.index < r.index {
		return nil, false
	}
	apps, ok := changedApps(st, r.index, v.index)
	if !ok {
		return nil, false
	}
	if r.appsAt == v.appsAt {
		return apps, true // the same apps, read at the same index
	}
	for id, idx := range v.appIdx {
		if r.appIdx[id] != idx {
			apps[id] = true
		}
	}
	for id := range r.appIdx {
		if _, ok := v.appIdx[id]; !ok {
			apps[id] = true
		}
	}
	return apps, true
}

func (f *Framework) reconcilePass(ctx context.Context, st *sched.Store, full bool) error {
	f.reconMu.Lock()
	defer f.reconMu.Unlock()
	now := f.now()
	v := readView(st)
	var only map[string]bool // the apps looked at; nil: all
	if !full {
		var ok bool
		if only, ok = f.changedSince(st, v, now); !ok {
			only, full = nil, true
		}
	}
	defer func() {
		f.mu.Lock()
		f.recon.st, f.recon.index, f.recon.appIdx, f.recon.appsAt, f.recon.deps = st, v.index, v.appIdx, v.appsAt, len(v.deployments) > 0
		f.recon.last = now
		if full {
			f.recon.lastFull = now
		}
		f.mu.Unlock()
	}()
	var (
		ops    []sched.Op
		events []api.Event
		errs   []error
	)
	flush := func() {
		if len(ops) == 0 && len(events) == 0 {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := st.Apply(actx, ops, events...)
		cancel()
		if errors.Is(err, sched.ErrConflict) {
			// A status update raced one of these tasks: apply each task's
			// change on its own so the others still go through.
			err = nil
			for _, unit := range splitUnits(ops) {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if _, e := st.Apply(actx, unit); e != nil && !errors.Is(e, sched.ErrConflict) {
					err = e
				}
				cancel()
			}
			if len(events) > 0 {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, _ = st.Apply(actx, nil, events...)
				cancel()
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
		ops, events = nil, nil
	}
	putTask := func(te taskEntry, rec *sched.TaskRecord) {
		ops = append(ops, sched.Check(sched.TableTasks, rec.Task.ID, te.idx), sched.Put(sched.TableTasks, rec.Task.ID, rec))
	}
	seen := map[string]bool{}
	// Tasks: expunge ended ones, kill those of deleted apps, give up on
	// unreachable ones.
	var appIDs []string
	if only == nil {
		appIDs = make([]string, 0, len(v.tasks))
		for id := range v.tasks {
			appIDs = append(appIDs, id)
		}
	} else {
		for id := range only {
			if _, ok := v.tasks[id]; ok {
				appIDs = append(appIDs, id)
			}
		}
	}
	sort.Strings(appIDs)
	// The apps to scale and upgrade, in id order.
	apps := v.appIDs
	if only != nil {
		apps = nil
		for id := range only {
			if v.apps[id] != nil {
				apps = append(apps, id)
			}
		}
		sort.Strings(apps)
	}
	for _, appID := range appIDs {
		app := v.apps[appID]
		for _, te := range v.tasks[appID] {
			rec := te.rec
			t := &rec.Task
			if full {
				seen[t.ID] = true
			}
			switch {
			case api.Terminal(t.State):
				f.mu.Lock()
				counted := f.ended[t.ID]
				f.ended[t.ID] = true
				f.mu.Unlock()
				if rec.Goal == api.GoalRun && app != nil && !counted && growsBackoff(t.State) {
					f.recordFailure(app, now)
				}
				if rec.Goal == api.GoalRun && t.State != api.TaskKilled {
					if app != nil {
						ops = append(ops, sched.Put(sched.TableMeta, metaLastFailure+appID, api.TaskFailure{
							AppID: appID, Host: t.Host, Message: t.Message, State: t.State, TaskID: t.ID,
							Timestamp: api.Timestamp(now), Version: t.Version, SlaveID: t.SlaveID,
						}))
					}
				}
				ops = append(ops, sched.Check(sched.TableTasks, t.ID, te.idx), sched.Delete(sched.TableTasks, t.ID))
			case app == nil && rec.Goal == api.GoalRun:
				putTask(te, killed(rec, "app "+appID+" was deleted"))
			case (t.State == api.TaskUnreachable || t.State == api.TaskUnknown):
				since, _ := time.Parse(time.RFC3339Nano, rec.UpdatedAt)
				if rec.Goal == api.GoalRun && f.inactive(app, rec, now) {
					// Replaced elsewhere; when its agent comes back it is told
					// to stop it, so no instance runs twice.
					putTask(te, killed(rec, "unreachable for longer than inactiveAfterSeconds; replaced"))
				} else if rec.Goal == api.GoalKill {
					exp := f.cfg.ExpungeAfter
					if app != nil && !app.UnreachableStrategy.Disabled {
						exp = time.Duration(app.UnreachableStrategy.ExpungeAfterSeconds * float64(time.Second))
					}
					if now.Sub(since) >= exp {
						ops = append(ops, sched.Check(sched.TableTasks, t.ID, te.idx), sched.Delete(sched.TableTasks, t.ID))
					}
				}
			}
			if len(ops) >= 256 {
				flush()
			}
		}
	}
	// Failed health checks: failed_health_check_event for each new failure
	// (not state: published, not logged).
	var failedChecks []api.Event
	f.mu.Lock()
	for _, appID := range appIDs {
		app := v.apps[appID]
		for _, te := range v.tasks[appID] {
			t := &te.rec.Task
			prev := f.failures[t.ID]
			cur := make([]int, len(t.HealthCheckResults))
			for i, r := range t.HealthCheckResults {
				cur[i] = r.ConsecutiveFailures
				if app != nil && i < len(app.HealthChecks) && r.ConsecutiveFailures > 0 && (i >= len(prev) || r.ConsecutiveFailures > prev[i]) {
					failedChecks = append(failedChecks, api.NewEvent(api.EventFailedHealthCheck, map[string]any{
						"appId": appID, "taskId": t.ID, "instanceId": t.ID, "version": t.Version,
						"healthCheck": app.HealthChecks[i], "cause": r.LastFailureCause,
					}))
				}
			}
			if len(cur) > 0 {
				f.failures[t.ID] = cur
			}
		}
	}
	if full {
		for id := range f.failures {
			if !seen[id] {
				delete(f.failures, id)
			}
		}
	}
	f.mu.Unlock()
	if len(failedChecks) > 0 {
		st.Publish(failedChecks...)
	}
	// Apps: scale, upgrade, health kills.
	appWants := map[string]bool{} // apps that miss instances and may launch now
	if !full {
		f.mu.Lock()
		for id := range f.appWants {
			if !only[id] {
				appWants[id] = true
			}
		}
		f.mu.Unlock()
	}
	for _, appID := range apps {
		app := v.apps[appID]
		if v.held(appID) {
			continue
		}
		at := classify(app, v.tasks[appID], func(r *sched.TaskRecord) bool { return f.inactive(app, r, now) })
		launch, kills := launchable(app, at)
		for _, te := range kills {
			putTask(te, killed(te.rec, ""))
		}
		// Unhealthy tasks: their replacements launch first (they do not
		// count as active); each is killed once the app is back to full
		// healthy strength or ReplaceTimeout has passed, rate-limited.
		for _, te := range at.unhealthy {
			t := &te.rec.Task
			f.mu.Lock()
			first, ok := f.doomed[t.ID]
			if !ok {
				first = now
				f.doomed[t.ID] = now
			}
			f.mu.Unlock()
			if at.newUp+at.oldUp < app.Instances && now.Sub(first) < f.cfg.ReplaceTimeout {
				continue
			}
			if !f.takeHealthToken(now) {
				continue
			}
			putTask(te, killed(te.rec, "killed: failed health checks"))
			events = append(events, api.NewEvent(api.EventUnhealthyKill, map[string]any{
				"appId": appID, "taskId": t.ID, "instanceId": t.ID, "version": t.Version,
				"reason": "HealthCheckFailed", "host": t.Host, "slaveId": t.SlaveID,
			}))
		}
		if launch > 0 {
			if f.delayLeft(app, now) == 0 {
				appWants[appID] = true
			}
			f.mu.Lock()
			if _, ok := f.since[appID]; !ok {
				f.since[appID] = now
			}
			f.mu.Unlock()
		} else {
			f.mu.Lock()
			delete(f.since, appID)
			delete(f.stats, appID)
			f.mu.Unlock()
		}
		if len(ops) >= 256 {
			flush()
		}
	}
	f.wants.Store(len(appWants) > 0)
	f.mu.Lock()
	f.appWants = appWants
	if full {
		for id := range f.doomed {
			if !seen[id] {
				delete(f.doomed, id)
			}
		}
		for id := range f.ended {
			if !seen[id] {
				delete(f.ended, id)
			}
		}
		for id := range f.backoff {
			if v.apps[id] == nil {
				delete(f.backoff, id)
			}
		}
	}
	f.mu.Unlock()
	flush()
	// Deployments.
	for _, de := range v.deployments {
		o, e := f.progress(v, de, now)
		ops = append(ops, o...)
		events = append(events, e...)
		flush()
	}
	return errors.Join(errs...)
}

// splitUnits cuts a batch of ops into units that each start with a Check
// and carry the ops guarded by it.
func splitUnits(ops []sched.Op) [][]sched.Op {
	var out [][]sched.Op
	for _, op := range ops {
		if op.Kind == sched.OpCheck || len(out) == 0 {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], op)
	}
	return out
}

func (f *Framework) takeHealthToken(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.refilled.IsZero() {
		f.tokens += now.Sub(f.refilled).Seconds() / f.cfg.HealthKillEvery.Seconds()
	}
	f.refilled = now
	if max := float64(f.cfg.HealthKillBurst); f.tokens > max {
		f.tokens = max
	}
	if f.tokens < 1 {
		return false
	}
	f.tokens--
	return true
}

// actionDone reports whether one action of a deployment has reached its
// goal: every instance of the current version up (running, healthy and
// ready as the app's checks require) and no old or dying task left; or,
// for a stop, no task left at all.
func (f *Framework) actionDone(v *view, a api.DeploymentAction, now time.Time) bool {
	app := v.apps[a.App]
	if a.Action == ActionStop || app == nil {
		if app != nil && a.Action == ActionStop {
			return false
		}
		for _, te := range v.tasks[a.App] {
			t := te.rec.Task
			if !api.Terminal(t.State) && t.State != api.TaskUnreachable && t.State != api.TaskUnknown {
				return false
			}
		}
		return true
	}
	at := classify(app, v.tasks[a.App], func(r *sched.TaskRecord) bool { return f.inactive(app, r, now) })
	return len(at.oldActive) == 0 && len(at.killing) == 0 && len(at.unhealthy) == 0 &&
		len(at.newActive) == app.Instances && at.newUp == app.Instances
}

// progress moves a deployment through its steps and finishes it.
func (f *Framework) progress(v *view, de depEntry, now time.Time) ([]sched.Op, []api.Event) {
	ops, evs, _ := f.progressDone(v, de, now)
	return ops, evs
}

// progressDone is progress that also says whether the deployment is over.
func (f *Framework) progressDone(v *view, de depEntry, now time.Time) ([]sched.Op, []api.Event, bool) {
	d := *de.d
	step := d.CurrentStep
	var events []api.Event
	for step >= 1 && step <= len(d.Steps) {
		done := true
		for _, a := range d.Steps[step-1].Actions {
			if !f.actionDone(v, a, now) {
				done = false
				break
			}
		}
		if !done {
			break
		}
		events = append(events, api.NewEvent(api.EventDeploymentStepOK, map[string]any{
			"plan": planEventJSON(&d), "currentStep": d.Steps[step-1]}))
		for _, a := range d.Steps[step-1].Actions {
			if a.Action == ActionStop {
				events = append(events, api.NewEvent(api.EventAppTerminated, map[string]any{"appId": a.App}))
			}
		}
		step++
	}
	if step > len(d.Steps) || step < 1 {
		events = append(events, api.NewEvent(api.EventDeploymentSuccess, map[string]any{"id": d.ID, "plan": planEventJSON(&d)}),
			api.NewEvent(api.EventGroupChangeSuccess, map[string]any{"groupId": "/", "version": d.Version}))
		return []sched.Op{sched.Check(sched.TableDeployments, d.ID, de.idx), sched.Delete(sched.TableDeployments, d.ID),
			sched.Delete(sched.TableMeta, metaRollback+d.ID), outcomeOp(d.ID, api.DeploymentSucceeded, "", now)}, events, true
	}
	if step == d.CurrentStep {
		return nil, nil, false
	}
	d.CurrentStep = step
	d.CurrentActions = d.Steps[step-1].Actions
	return []sched.Op{sched.Check(sched.TableDeployments, d.ID, de.idx), sched.Put(sched.TableDeployments, d.ID, &d)}, events, false
}

func planEventJSON(d *api.Deployment) map[string]any {
	return map[string]any{"id": d.ID, "version": d.Version, "steps": d.Steps, "affectedApps": d.AffectedApps}
}

// ResourceOffers implements sched.Framework: for every app that misses
// instances (and is not delayed), it fits tasks into the offers — role,
// capability, cpus, mem, disk, ports, constraints — spreading them over
// agents, and declines the rest with Marathon's reasons, which /v2/queue
// shows.
func (f *Framework) ResourceOffers(ctx context.Context, offers []api.Offer) sched.OfferResult {
	var res sched.OfferResult
	m := f.master()
	if m == nil || len(offers) == 0 {
		for _, o := range offers {
			res.Declines = append(res.Declines, sched.Decline{OfferID: o.ID, RefuseFor: f.cfg.RefuseFor})
		}
		return res
	}
	now := f.now()
	v := readView(m.Store())

	type offerLeft struct {
		o      *api.Offer
		left   api.Resources
		busy   map[int]bool
		taken  func(port int) bool
		f      facts
		used   bool
		reason map[string]bool
		all    map[string]bool
	}
	f.mu.Lock()
	left := make([]*offerLeft, len(offers))
	for i := range offers {
		o := &offers[i]
		role := o.Role
		if role == "" {
			role = "*"
		}
		fa := facts{Host: o.Hostname, Site: o.Site, Attrs: o.Attributes, Agent: true, Role: role,
			Docker: o.HasCapability("docker"), Total: o.Resources}
		if known, ok := f.agents[o.AgentID]; ok && known.Total.Cpus >= fa.Total.Cpus && known.Total.Mem >= fa.Total.Mem {
			fa.Total = known.Total
		}
		f.agents[o.AgentID] = fa
		left[i] = &offerLeft{o: o, left: o.Resources, busy: map[int]bool{}, f: fa, reason: map[string]bool{}, all: map[string]bool{}}
	}
	agents := make(map[string]facts, len(f.agents))
	for k, a := range f.agents {
		agents[k] = a
	}
	f.mu.Unlock()
	byAgent := map[string]*offerLeft{}
	for _, ol := range left {
		byAgent[ol.o.AgentID] = ol
	}
	// Ports held by tasks the store knows on the offered agents (the
	// view's count), and those picked in this answer (ol.busy).
	for _, ol := range left {
		held, picked := v.ports[ol.o.AgentID], ol.busy
		ol.taken = func(p int) bool { return picked[p] || held[p] > 0 }
	}

	// Only the apps that wanted launches at the last pass, or changed
	// since, can want them now (nil: look at every app).
	var cands map[string]bool
	f.mu.Lock()
	r, aw := f.recon, f.appWants
	f.mu.Unlock()
	if aw != nil {
		if changed, ok := changedAfter(m.Store(), v, r); ok {
			for id := range aw {
				changed[id] = true
			}
			cands = changed
		}
	}
	wants := false
	cursor := 0
	for _, appID := range v.appIDs {
		if cands != nil && !cands[appID] {
			continue
		}
		app := v.apps[appID]
		if v.held(appID) {
			continue
		}
		at := classify(app, v.tasks[appID], func(r *sched.TaskRecord) bool { return f.inactive(app, r, now) })
		launch, _ := launchable(app, at)
		if launch <= 0 || f.delayLeft(app, now) > 0 {
			continue
		}
		var placed, current, groups []facts
		for gi, group := range [][]taskEntry{at.newActive, at.oldActive, at.killing} {
			for _, te := range group {
				a, ok := agents[te.rec.Task.SlaveID]
				if !ok {
					a = facts{Host: te.rec.Task.Host, Site: te.rec.Task.Site}
				}
				placed = append(placed, a)
				if gi == 0 {
					current = append(current, a)
				}
			}
		}
		for _, c := range app.Constraints {
			if len(c) >= 2 && strings.EqualFold(c[1], "GROUP_BY") {
				groups = usableAgents(app, agents)
				break
			}
		}
		docker := app.Container != nil && strings.EqualFold(app.Container.Type, "DOCKER")
		reqPorts := hostPortRequests(app)
		failed := make([]bool, len(left))
		reasons := map[string]int{}
		tried := map[int]bool{}
		launched := 0
		onHost, onSite := map[string]int{}, map[string]int{}
		for _, p := range placed {
			onHost[p.Host]++
			onSite[p.Site]++
		}
		for launched < launch {
			found := false
			best, bestPorts := -1, []int(nil)
			for k := 0; k < len(left); k++ {
				i := (cursor + k) % len(left)
				if failed[i] {
					continue
				}
				ol := left[i]
				tried[i] = true
				reason := ""
				var ports []int
				switch {
				case !roleAccepted(app.AcceptedResourceRoles, ol.o.Role):
					reason = "UnfulfilledRole"
				case docker && !ol.o.HasCapability("docker"):
					reason = "NoCapability"
				case ol.left.Cpus+1e-9 < app.Cpus:
					reason = "InsufficientCpus"
				case ol.left.Mem+1e-9 < app.Mem:
					reason = "InsufficientMemory"
				case ol.left.Disk+1e-9 < app.Disk:
					reason = "InsufficientDisk"
				case ol.left.Gpus < app.Gpus:
					reason = "InsufficientGpus"
				}
				if reason == "" {
					var ok bool
					if ports, ok = pickPortsFunc(reqPorts, ol.left.Ports, ol.taken); !ok {
						reason = "InsufficientPorts"
					}
				}
				if reason == "" && len(app.Constraints) > 0 && !meetsConstraints(app.Constraints, ol.f, placed, current, groups) {
					reason = "UnfulfilledConstraint"
				}
				if reason != "" {
					reasons[reason]++
					ol.reason[reason] = true
					ol.all[reason] = true
					if reason != "UnfulfilledConstraint" {
						failed[i] = true
					}
					continue
				}
				if best < 0 || spreadsBetter(ol.f, ol.left, left[best].f, left[best].left, onHost, onSite) {
					best, bestPorts = i, ports
				}
			}
			if best >= 0 {
				i, ol, ports := best, left[best], bestPorts
				taskID := taskIDPrefix(app.ID) + "." + uuid.NewString()
				spec := taskSpec(app, taskID, ports, f.cfg.DefaultKillGrace)
				rec := sched.TaskRecord{
					Task: api.Task{
						ID: taskID, AppID: app.ID, Version: app.Version, Ports: ports,
						ServicePorts: servicePorts(app), IPAddresses: []api.IPAddress{},
						HealthCheckResults: []api.HealthCheckResult{}, Framework: Name, Role: ol.o.Role,
					},
					Spec: spec,
					Goal: api.GoalRun,
				}
				if rec.Task.ServicePorts == nil {
					rec.Task.ServicePorts = []int{}
				}
				res.Launches = append(res.Launches, sched.Launch{OfferID: ol.o.ID, Task: rec})
				ol.left.Cpus -= app.Cpus
				ol.left.Mem -= app.Mem
				ol.left.Disk -= app.Disk
				ol.left.Gpus -= app.Gpus
				for _, p := range ports {
					ol.busy[p] = true
				}
				ol.used = true
				placed = append(placed, ol.f)
				current = append(current, ol.f)
				onHost[ol.f.Host]++
				onSite[ol.f.Site]++
				launched++
				found = true
				cursor = i + 1
			}
			if !found {
				break
			}
		}
		if launched < launch {
			wants = true
		}
		f.mu.Lock()
		s := f.stats[appID]
		if s == nil {
			s = &offerStats{reasons: map[string]int{}}
			f.stats[appID] = s
		}
		s.processed += len(tried)
		unused := 0
		for i := range tried {
			if !left[i].used {
				unused++
			}
		}
		s.unused += unused
		for r, n := range reasons {
			s.reasons[r] += n
		}
		if unused > 0 {
			s.lastUnused = now
			s.last = s.last[:0]
			for i := range tried {
				ol := left[i]
				if ol.used || len(ol.reason) == 0 {
					continue
				}
				var rs []string
				for r := range ol.reason {
					rs = append(rs, r)
				}
				sort.Strings(rs)
				if len(s.last) < 10 {
					s.last = append(s.last, api.UnusedOffer{Offer: *ol.o, Reason: rs, Timestamp: api.Timestamp(now)})
				}
			}
		}
		if launched > 0 {
			s.lastOK = now
		}
		if _, ok := f.since[appID]; !ok {
			f.since[appID] = now
		}
		f.mu.Unlock()
		for _, ol := range left {
			ol.reason = map[string]bool{}
		}
	}
	for _, ol := range left {
		if !ol.used {
			res.Declines = append(res.Declines, sched.Decline{OfferID: ol.o.ID, RefuseFor: f.cfg.RefuseFor, Reasons: sortedKeys(ol.all)})
		}
	}
	f.wants.Store(wants)
	return res
}

// lastFailure reads an app's lastTaskFailure from the meta table.
func lastFailure(st *sched.Store, appID string) *api.TaskFailure {
	e, ok := st.Get(sched.TableMeta, metaLastFailure+appID)
	if !ok {
		return nil
	}
	raw, ok := e.Value.(*json.RawMessage)
	if !ok || raw == nil {
		return nil
	}
	var tf api.TaskFailure
	if json.Unmarshal(*raw, &tf) != nil {
		return nil
	}
	return &tf
}

// spreadsBetter reports whether an app's next instance is better placed on
// agent a (with free resources aLeft) than on b. Instances of one app spread
// by default, as a user expects for availability: first over agents (the
// fewest of the app's instances on the host), then over sites, then toward
// the agent with the larger share of its CPUs and memory still free (so
// single-instance apps spread too). Constraints and resources decide first:
// only offers that satisfy both are compared. The allocator's DRF order
// decides which framework sees the offers first; within one framework's
// round every agent's offer is compared, so DRF does not narrow the spread.
func spreadsBetter(a facts, aLeft api.Resources, b facts, bLeft api.Resources, onHost, onSite map[string]int) bool {
	if onHost[a.Host] != onHost[b.Host] {
		return onHost[a.Host] < onHost[b.Host]
	}
	if onSite[a.Site] != onSite[b.Site] {
		return onSite[a.Site] < onSite[b.Site]
	}
	return freeShare(a.Total, aLeft) > freeShare(b.Total, bLeft)+1e-9
}

// freeShare is the smaller of the free shares of CPUs and memory.
func freeShare(total, left api.Resources) float64 {
	share := func(l, t float64) float64 {
		if t <= 0 {
			return 0
		}
		return l / t
	}
	return min(share(left.Cpus, total.Cpus), share(left.Mem, total.Mem))
}
