package api

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Changes is one answer of the master's change watch,
// GET /v1/state/changes?index=N&nodes=H&wait=30s: what changed in the
// cluster state since index N, or the whole of it (Snapshot) when N is 0,
// from another store, or further back than the master remembers.
//
// Apps, Tasks, Deployments and Jobs hold what was created or changed since
// N (each at most once, as it is at Index); Deleted names what was removed.
// Nodes is the whole membership when it differs from what the client said
// it has (nodes=H, the NodesHash of an earlier answer), else null. The
// nodes of this watch leave Used empty: what agents use changes with every
// task and is for the CLI and the UI (GET /v1/state has it).
type Changes struct {
	Index       uint64       `json:"index"`
	Leader      string       `json:"leader"`
	Domain      string       `json:"domain,omitempty"`
	Snapshot    bool         `json:"snapshot,omitempty"`
	NodesHash   string       `json:"nodesHash"`
	Nodes       []Node       `json:"nodes"`
	Apps        []App        `json:"apps,omitempty"`
	Tasks       []Task       `json:"tasks,omitempty"`
	Deployments []Deployment `json:"deployments,omitempty"`
	Jobs        []Job        `json:"jobs,omitempty"`
	Deleted     *Deleted     `json:"deleted,omitempty"`
}

// Deleted names what a Changes removes: app ids, task ids, deployment ids
// and job names.
type Deleted struct {
	Apps        []string `json:"apps,omitempty"`
	Tasks       []string `json:"tasks,omitempty"`
	Deployments []string `json:"deployments,omitempty"`
	Jobs        []string `json:"jobs,omitempty"`
}

// Empty reports whether c changes nothing (beyond its index and leader).
func (c *Changes) Empty() bool {
	return !c.Snapshot && c.Nodes == nil && len(c.Apps) == 0 && len(c.Tasks) == 0 &&
		len(c.Deployments) == 0 && len(c.Jobs) == 0 && c.Deleted == nil
}

// mirrorRev numbers every app and task a Mirror takes in (see App.Rev).
var mirrorRev atomic.Uint64

// Rev identifies this version of the app as a Mirror took it in: two apps
// with one non-zero Rev are the same, with different ones they may differ.
// Zero for an app that did not come through a Mirror. It lets a user of
// successive States (dns) tell an unchanged app without comparing it.
func (a *App) Rev() uint64 { return a.rev }

// Rev identifies this version of the task as a Mirror took it in (see
// App.Rev).
func (t *Task) Rev() uint64 { return t.rev }

// Mirror is a copy of the cluster state kept by applying Changes.
type Mirror struct {
	index     uint64
	leader    string
	domain    string
	nodesHash string
	nodes     []Node
	// apps and tasks in id order. Each element is immutable once taken
	// in: a change puts a new one in its place, so a State shares every
	// unchanged app and task with the mirror and the States before it,
	// and copies only pointers.
	apps        []*App
	tasks       []*Task
	deployments map[string]Deployment
	jobs        map[string]Job
	inited      bool
	// last is the State made last; its Apps are shared by the next one
	// when no app came, went or changed.
	last *State
	// What changed since last: app and task ids (added, changed or
	// removed), all after a snapshot.
	chApps, chTasks map[string]bool
	chAll           bool
	log             *changeLog
}

// changeLog is what each of a Mirror's last States changed from the one
// before, for State.ChangedSince.
type changeLog struct {
	mu   sync.Mutex
	seq  uint64 // of the last State made
	ring [changeLogLen]stateChange
}

// changeLogLen is how many States back ChangedSince can tell.
const changeLogLen = 64

type stateChange struct {
	seq         uint64
	apps, tasks map[string]bool
	all         bool
}

// ChangedSince returns the ids of the apps and of the tasks that came,
// changed or went from old to s, two States made by one Mirror (old the
// earlier one, not too far back); false when that is not known (other
// mirrors, a snapshot between them, or a State not from a Mirror). It
// says nothing of nodes, leader, domain, deployments or jobs: compare
// those. The maps are shared: never modify them.
func (s *State) ChangedSince(old *State) (apps, tasks map[string]bool, ok bool) {
	if s == nil || old == nil || s.log == nil || s.log != old.log || old.seq > s.seq {
		return nil, nil, false
	}
	if old.seq == s.seq {
		return map[string]bool{}, map[string]bool{}, true
	}
	l := s.log
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.seq-old.seq > changeLogLen {
		return nil, nil, false
	}
	if s.seq == old.seq+1 {
		c := l.ring[s.seq%changeLogLen]
		if c.seq != s.seq || c.all {
			return nil, nil, false
		}
		return c.apps, c.tasks, true
	}
	apps, tasks = map[string]bool{}, map[string]bool{}
	for q := old.seq + 1; q <= s.seq; q++ {
		c := l.ring[q%changeLogLen]
		if c.seq != q || c.all {
			return nil, nil, false
		}
		maps.Copy(apps, c.apps)
		maps.Copy(tasks, c.tasks)
	}
	return apps, tasks, true
}

// App returns the app with this id, nil when there is none. The State's
// apps must be in id order, as the master and a Mirror give them.
func (s *State) App(id string) *App {
	i, ok := slices.BinarySearchFunc(s.Apps, id, func(a *App, id string) int { return strings.Compare(a.ID, id) })
	if !ok {
		return nil
	}
	return s.Apps[i]
}

// Task returns the task with this id, nil when there is none. The State's
// tasks must be in id order, as the master and a Mirror give them.
func (s *State) Task(id string) *Task {
	i, ok := slices.BinarySearchFunc(s.Tasks, id, func(t *Task, id string) int { return strings.Compare(t.ID, id) })
	if !ok {
		return nil
	}
	return s.Tasks[i]
}

// Index is the store index the mirror is at (0 before the first snapshot).
func (m *Mirror) Index() uint64 { return m.index }

// NodesHash is what the mirror's nodes hash to, for the next query.
func (m *Mirror) NodesHash() string { return m.nodesHash }

// Apply brings the mirror to c.Index. A snapshot replaces everything.
func (m *Mirror) Apply(c *Changes) {
	if c.Snapshot || !m.inited {
		m.apps, m.tasks = nil, nil
		m.deployments, m.jobs = map[string]Deployment{}, map[string]Job{}
		m.inited = true
	}
	m.index, m.leader, m.domain = c.Index, c.Leader, c.Domain
	if c.Nodes != nil {
		m.nodes, m.nodesHash = c.Nodes, c.NodesHash
	}
	if c.Snapshot {
		m.chAll = true
	}
	if m.chApps == nil {
		m.chApps, m.chTasks = map[string]bool{}, map[string]bool{}
	}
	m.apps = upsert(m.apps, c.Apps, func(a *App) string { return a.ID }, func(a *App) { a.rev = mirrorRev.Add(1) }, m.chApps)
	m.tasks = upsert(m.tasks, c.Tasks, func(t *Task) string { return t.ID }, func(t *Task) { t.rev = mirrorRev.Add(1) }, m.chTasks)
	for _, d := range c.Deployments {
		m.deployments[d.ID] = d
	}
	for _, j := range c.Jobs {
		m.jobs[j.Name] = j
	}
	if d := c.Deleted; d != nil {
		m.apps = remove(m.apps, d.Apps, func(a *App) string { return a.ID }, m.chApps)
		m.tasks = remove(m.tasks, d.Tasks, func(t *Task) string { return t.ID }, m.chTasks)
		for _, k := range d.Deployments {
			delete(m.deployments, k)
		}
		for _, k := range d.Jobs {
			delete(m.jobs, k)
		}
	}
}

// upsert puts a stamped copy of each of in into list, sorted by id, in
// place of the element of the same id; touched gets their ids. Neither in
// nor an element already in list is modified.
func upsert[T any](list []*T, in []T, id func(*T) string, stamp func(*T), touched map[string]bool) []*T {
	var added []*T
	for i := range in {
		x := new(T)
		*x = in[i]
		stamp(x)
		k := id(x)
		touched[k] = true
		if i, ok := slices.BinarySearchFunc(list, k, func(e *T, k string) int { return strings.Compare(id(e), k) }); ok {
			list[i] = x
		} else {
			added = append(added, x)
		}
	}
	if len(added) == 0 {
		return list
	}
	cmpID := func(a, b *T) int { return strings.Compare(id(a), id(b)) }
	slices.SortStableFunc(added, cmpID)
	// One id twice in in: the later one stays.
	n := 0
	for i := range added {
		if i+1 < len(added) && id(added[i]) == id(added[i+1]) {
			continue
		}
		added[n] = added[i]
		n++
	}
	added = added[:n]
	if len(added) <= 16 {
		// A few (a launch adds one task): each into its place.
		for _, x := range added {
			i, _ := slices.BinarySearchFunc(list, id(x), func(e *T, k string) int { return strings.Compare(id(e), k) })
			list = slices.Insert(list, i, x)
		}
		return list
	}
	out := make([]*T, 0, len(list)+len(added))
	i, j := 0, 0
	for i < len(list) && j < len(added) {
		if cmpID(list[i], added[j]) < 0 {
			out = append(out, list[i])
			i++
		} else {
			out = append(out, added[j])
			j++
		}
	}
	out = append(out, list[i:]...)
	return append(out, added[j:]...)
}

// remove drops the elements of these ids from list; touched gets the ids.
func remove[T any](list []*T, ids []string, id func(*T) string, touched map[string]bool) []*T {
	if len(ids) == 0 {
		return list
	}
	gone := make(map[string]bool, len(ids))
	for _, k := range ids {
		gone[k] = true
		touched[k] = true
	}
	return slices.DeleteFunc(list, func(e *T) bool { return gone[id(e)] })
}

// State returns the mirror as a State, sorted as GET /v1/state sorts it.
// The State is new; its elements are shared with the mirror (and its Apps
// with the State before when no app changed) and must not be modified.
func (m *Mirror) State() *State {
	if m.log == nil {
		m.log = &changeLog{}
	}
	st := &State{Index: m.index, Leader: m.leader, Domain: m.domain,
		Nodes:       append([]Node{}, m.nodes...),
		Deployments: make([]Deployment, 0, len(m.deployments)),
		Jobs:        make([]Job, 0, len(m.jobs)),
		log:         m.log,
	}
	if m.last != nil && !m.chAll && len(m.chApps) == 0 {
		st.Apps = m.last.Apps
	} else {
		st.Apps = append(make([]*App, 0, len(m.apps)), m.apps...)
	}
	if m.last != nil && !m.chAll && len(m.chTasks) == 0 {
		st.Tasks = m.last.Tasks
	} else {
		st.Tasks = append(make([]*Task, 0, len(m.tasks)), m.tasks...)
	}
	m.log.mu.Lock()
	m.log.seq++
	st.seq = m.log.seq
	m.log.ring[st.seq%changeLogLen] = stateChange{seq: st.seq, apps: m.chApps, tasks: m.chTasks, all: m.chAll || m.last == nil}
	m.log.mu.Unlock()
	m.chApps, m.chTasks, m.chAll = map[string]bool{}, map[string]bool{}, false
	m.last = st
	for _, d := range m.deployments {
		st.Deployments = append(st.Deployments, d)
	}
	for _, j := range m.jobs {
		st.Jobs = append(st.Jobs, j)
	}
	// Apps and tasks are in order already.
	sort.Slice(st.Deployments, func(i, j int) bool { return st.Deployments[i].ID < st.Deployments[j].ID })
	sort.Slice(st.Jobs, func(i, j int) bool { return st.Jobs[i].Name < st.Jobs[j].Name })
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	return st
}

// Changes is the change watch: GET /v1/state/changes?index=N&nodes=H&wait=W.
// It blocks until the state is past after or the nodes no longer hash to
// nodesHash, or about wait has passed.
func (c *Client) Changes(ctx context.Context, after uint64, nodesHash string, wait time.Duration) (*Changes, error) {
	var ch Changes
	q := url.Values{"index": {strconv.FormatUint(after, 10)}, "wait": {wait.String()}}
	if nodesHash != "" {
		q.Set("nodes", nodesHash)
	}
	_, err := c.do(ctx, true, http.MethodGet, "/v1/state/changes?"+q.Encode(), nil, &ch)
	if err != nil {
		return nil, err
	}
	return &ch, nil
}

// Changes is the change watch, on the master to use now.
func (s *MasterSet) Changes(ctx context.Context, after uint64, nodesHash string, wait time.Duration) (*Changes, error) {
	var ch *Changes
	err := s.call(func(c *Client) (err error) {
		ch, err = c.Changes(ctx, after, nodesHash, wait)
		return err
	})
	return ch, err
}
