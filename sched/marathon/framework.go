package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	bucket         tokenBucket              // health kills
	agents         map[string]facts         // agent id → constraint facts, learned from offers and Nodes
	appWants       map[string]bool          // apps that missed instances at the last pass (nil before the first)

	reconMu sync.Mutex
	book    reconBook  // guarded by reconMu
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
		cfg:     cfg,
		log:     cfg.Logger.With("component", "marathon"),
		backoff: map[string]*backoffState{},
		stats:   map[string]*offerStats{},
		since:   map[string]time.Time{},
		agents:  map[string]facts{},
		bucket:  tokenBucket{tokens: float64(cfg.HealthKillBurst)},
		book:    newReconBook(),
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
			f.prune(ctx, st, m.Now())
			if err := f.releaseReservations(ctx, st); err != nil && ctx.Err() == nil && !errors.Is(err, sched.ErrConflict) {
				f.log.Warn("releasing reservations", "err", err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, f.cfg.Tick)
		idx, _ := st.Watch(wctx, after)
		cancel()
		after = idx
		f.dropStaleAnswers(idx)
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
	tasks       map[string][]taskEntry // by app id (also for apps that no longer exist)
	deployments []depEntry
	// ports counts, per agent, the non-terminal tasks holding each host
	// port. An agent's map is replaced when its tasks change, never modified.
	ports map[string]map[int]int
	// owners are the apps holding each service port (see serviceOwner),
	// shared by the views of one version of the apps.
	owners *portOwners
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

// viewStep says which apps' task lists or definitions changed from the
// view at index from to the one at index to (apps nil: built from nothing,
// unknown).
type viewStep struct {
	from, to uint64
	apps     map[string]bool
}

const maxViewSteps = 1024

// changedApps returns the apps whose task lists or definitions changed
// between the views of st at indexes from and to, or false when the views
// built do not say.
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
			v.apps, v.appIdx, v.appIDs = base.apps, base.appIdx, base.appIDs
			v.owners = base.owners
			appsSorted = true
		} else {
			v.owners = &portOwners{}
			if base != nil && base.owners != nil && base.owners.done.Load() {
				v.owners.from, v.owners.fromHeld, v.owners.fromApps, v.owners.changed = base.owners.m, base.owners.held, base.apps, keys[sched.TableApps]
			}
			if base != nil {
				// base's apps with the ones written since in their place.
				v.apps, v.appIdx, v.appIDs = patchApps(base, keys[sched.TableApps], t[sched.TableApps])
				appsSorted = true
			} else {
				v.appIDs = make([]string, 0, len(t[sched.TableApps]))
				for id, e := range t[sched.TableApps] {
					v.apps[id] = e.Value.(*api.App)
					v.appIdx[id] = e.ModifyIndex
					v.appIDs = append(v.appIDs, id)
				}
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
			for _, id := range keys[sched.TableApps] {
				dirty[id] = true // the definition changed, came or went
			}
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

// patchApps returns base's apps, their indexes and sorted ids, with the
// apps of keys (written since base) as table now holds them. base is not
// modified.
func patchApps(base *view, keys []string, table map[string]*sched.Entry) (map[string]*api.App, map[string]uint64, []string) {
	apps, idx := maps.Clone(base.apps), maps.Clone(base.appIdx)
	var added []string
	gone := map[string]bool{}
	for _, id := range keys {
		_, had := apps[id]
		if e, ok := table[id]; ok {
			if !had {
				added = append(added, id)
			}
			apps[id], idx[id] = e.Value.(*api.App), e.ModifyIndex
			delete(gone, id)
		} else if had {
			delete(apps, id)
			delete(idx, id)
			gone[id] = true
		}
	}
	ids := base.appIDs
	if len(gone) > 0 {
		ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return gone[id] })
	}
	if len(added) > 0 {
		if len(gone) == 0 {
			ids = slices.Clone(ids)
		}
		for _, id := range added {
			if _, ok := apps[id]; !ok {
				continue // added, then deleted again
			}
			if i, found := slices.BinarySearch(ids, id); !found {
				ids = slices.Insert(ids, i, id)
			}
		}
	}
	return apps, idx, ids
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
	// A clone copies the map's storage at once, far faster than putting
	// in its entries one by one; the dirty apps' lists are then replaced.
	tasks = maps.Clone(base.tasks)
	if tasks == nil {
		tasks = map[string][]taskEntry{}
	}
	for app := range dirty {
		delete(tasks, app)
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
		m = maps.Clone(m)
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

// deploymentApps returns the apps the deployments name (affected, or in
// one of their steps), nil when there is none.
func (v *view) deploymentApps() map[string]bool {
	var out map[string]bool
	for _, de := range v.deployments {
		if out == nil {
			out = map[string]bool{}
		}
		for _, a := range de.d.AffectedApps {
			out[a] = true
		}
		for _, s := range de.d.Steps {
			for _, a := range s.Actions {
				out[a.App] = true
			}
		}
	}
	return out
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

func inactive(app *api.App, rec *sched.TaskRecord, now time.Time) bool {
	if rec.Task.State != api.TaskUnreachable && rec.Task.State != api.TaskUnknown {
		return false
	}
	if app == nil {
		return false
	}
	if isResident(app) {
		return residentInactive(app, rec, now)
	}
	if app.UnreachableStrategy.Disabled {
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
// and those named by a deployment under way now or at the last pass (a
// deployment holds its later steps' apps back and lets them go as it moves
// on or ends), unless a full pass is due — every Tick (the timers: backoff
// expiry, unreachable and unhealthy tasks) and whenever the views built do
// not say what changed. A pass per task change then costs in proportion
// to the change, not to every task, also while an app is being deployed.
func (f *Framework) reconcileChanged(ctx context.Context, st *sched.Store) error {
	return f.reconcilePass(ctx, st, false)
}

// reconState is what the last pass looked at.
type reconState struct {
	st       *sched.Store
	index    uint64
	depApps  map[string]bool // the apps the deployments under way named
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
// the pass r and the view v, with the apps the deployments of r and of v
// name, or false when that cannot be told.
func changedAfter(st *sched.Store, v *view, r reconState) (map[string]bool, bool) {
	if r.st != st || v.index < r.index {
		return nil, false
	}
	apps, ok := changedApps(st, r.index, v.index)
	if !ok {
		return nil, false
	}
	for id := range r.depApps {
		apps[id] = true
	}
	for id := range v.deploymentApps() {
		apps[id] = true
	}
	// The views' steps name the apps written between them too.
	return apps, true
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

// actionDone reports whether one action of a deployment has reached its
// goal: every instance of the current version up (running, healthy and
// ready as the app's checks require) and no old or dying task left; or,
// for a stop, no task left at all.
func actionDone(v *view, a api.DeploymentAction, now time.Time) bool {
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
	at := classify(app, v.tasks[a.App], func(r *sched.TaskRecord) bool { return inactive(app, r, now) })
	return len(at.oldActive) == 0 && len(at.killing) == 0 && len(at.unhealthy) == 0 &&
		len(at.newActive) == app.Instances && at.newUp == app.Instances
}

// progress moves a deployment through its steps and finishes it.
func progress(v *view, de depEntry, now time.Time) ([]sched.Op, []api.Event) {
	ops, evs, _ := progressDone(v, de, now)
	return ops, evs
}

// progressDone is progress that also says whether the deployment is over.
func progressDone(v *view, de depEntry, now time.Time) ([]sched.Op, []api.Event, bool) {
	d := *de.d
	step := d.CurrentStep
	var events []api.Event
	for step >= 1 && step <= len(d.Steps) {
		done := true
		for _, a := range d.Steps[step-1].Actions {
			if !actionDone(v, a, now) {
				done = false
				break
			}
		}
		if !done {
			break
		}
		events = append(events, api.NewEvent(api.EventDeploymentStepOK, map[string]any{
			"plan": planEventJSON(&d), "currentStep": marathonStep(&d, d.Steps[step-1])}))
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
			sched.Delete(sched.TableMeta, metaRollback+d.ID), outcomeOp(d.ID, api.DeploymentSucceeded, "", now, d.AffectedApps...)}, events, true
	}
	if step == d.CurrentStep {
		return nil, nil, false
	}
	d.CurrentStep = step
	d.CurrentActions = d.Steps[step-1].Actions
	return []sched.Op{sched.Check(sched.TableDeployments, d.ID, de.idx), sched.Put(sched.TableDeployments, d.ID, &d)}, events, false
}

// planEventJSON is the plan in deployment events: Marathon's DeploymentPlan
// as plan-format=light sends it (id, steps, version; no original and
// target groups), whatever the stream asked for.
func planEventJSON(d *api.Deployment) map[string]any {
	return map[string]any{"id": d.ID, "version": d.Version, "steps": marathonDeployment(*d).Steps}
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
// the offer a than on b (each with its agent's facts, what is left of it
// and the app's instances on its host and site). Instances of one app spread
// by default, as a user expects for availability: first over agents (the
// fewest of the app's instances on the host), then over sites, then toward
// the agent with the larger share of its CPUs and memory still free (so
// single-instance apps spread too). Constraints and resources decide first:
// only offers that satisfy both are compared. The allocator's DRF order
// decides which framework sees the offers first; within one framework's
// round every agent's offer is compared, so DRF does not narrow the spread.
func spreadsBetter(a, b *offerLeft) bool {
	if *a.onHost != *b.onHost {
		return *a.onHost < *b.onHost
	}
	if *a.onSite != *b.onSite {
		return *a.onSite < *b.onSite
	}
	return freeShare(a.f.Total, a.left) > freeShare(b.f.Total, b.left)+1e-9
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
