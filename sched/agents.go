package sched

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// agentTracker follows the tasks table and remembers, per agent, the store
// index at which that agent's assignments last changed (a task added,
// changed or removed), so blocking assignment queries wake only for their
// own agent. It also keeps what each agent's tasks use, for the allocator
// and Nodes, and each task's encoded assignment. It follows the store by
// the keys written since it last looked (Store.ReadChanged), so a change
// costs in proportion to the tasks it touched, not to the whole table.
type agentTracker struct {
	mu        sync.Mutex
	ready     bool
	base      uint64 // index of the first scan: older queries answer at once
	processed uint64
	gen       uint64                         // full scans so far
	tasksGen  uint64                         // raised when any task was added, changed or removed
	last      map[string]uint64              // agent → index of its last change
	byAgent   map[string]map[string]struct{} // agent → task ids
	seen      map[string]seenTask            // task id → what the last scan saw
	changed   chan struct{}                  // closed and replaced after each scan
	usage     map[string]*agentUsage         // agent → what its tasks use; replaced, never modified
	fwUse     map[string]api.Resources       // framework → what its tasks use (scalars)
	dirty     map[string]bool                // agents whose usage changed since it was last summed
	sums      map[string]*agentSum           // agent → running sums of what its tasks use
	removed   map[string][]removal           // agent → tasks it lost, oldest first (for delta answers)
	floor     map[string]uint64              // agent → newest removal dropped from removed
	// agent → its tasks as each was written, oldest first, each at the
	// index of the scan that saw the write (for delta answers: what an
	// agent's tasks changed since an index, without walking all of them).
	written map[string][]removal
	wfloor  map[string]uint64 // agent → newest scan index dropped from written

	encMu sync.Mutex
	enc   map[string]encodedAssignment // task id → its assignment's JSON
}

type seenTask struct {
	agent  string
	modify uint64
	gen    uint64
	rec    *TaskRecord
}

// removal is a task an agent lost (deleted, or moved to another agent) at
// a store index.
type removal struct {
	id string
	at uint64
}

// maxRemovals is how many removals the tracker keeps per agent for delta
// answers; an agent further behind gets its whole list again (a variable
// for tests).
var maxRemovals = 4096

type encodedAssignment struct {
	modify uint64
	b      []byte
}

func newAgentTracker() *agentTracker {
	return &agentTracker{
		last:    map[string]uint64{},
		byAgent: map[string]map[string]struct{}{},
		seen:    map[string]seenTask{},
		changed: make(chan struct{}),
		usage:   map[string]*agentUsage{},
		fwUse:   map[string]api.Resources{},
		dirty:   map[string]bool{},
		sums:    map[string]*agentSum{},
		removed: map[string][]removal{},
		floor:   map[string]uint64{},
		written: map[string][]removal{},
		wfloor:  map[string]uint64{},
		enc:     map[string]encodedAssignment{},
	}
}

func (t *agentTracker) run(ctx context.Context, s *Store) {
	for {
		idx := t.update(s)
		if _, err := s.Watch(ctx, idx); err != nil {
			return
		}
	}
}

// update brings the tracker up to the store's current index and returns
// it: from the keys written since the last update when the store still
// remembers them, else by a scan of the whole table.
func (t *agentTracker) update(s *Store) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var idx uint64
	s.ReadChanged(TableTasks, t.processed, func(index uint64, tables map[string]map[string]*Entry, keys []string, complete bool) {
		idx = index
		switch {
		case t.ready && index == t.processed:
		case t.ready && complete:
			t.scanKeysLocked(index, keys, tables[TableTasks])
		default:
			t.gen++
			t.scanLocked(index, t.gen, tables[TableTasks])
		}
	})
	return idx
}

// active reports whether a task uses its agent's resources.
func active(rec *TaskRecord) bool {
	return rec != nil && !api.Terminal(rec.Task.State) && rec.Task.SlaveID != ""
}

// see records that task id is e (at index).
func (t *agentTracker) see(id string, e *Entry, index, gen uint64, mark func(string, uint64)) {
	rec := e.Value.(*TaskRecord)
	agent := rec.Task.SlaveID
	prev, ok := t.seen[id]
	if ok && prev.modify == e.ModifyIndex {
		t.seen[id] = seenTask{agent: prev.agent, modify: prev.modify, gen: gen, rec: prev.rec}
		return
	}
	mark(agent, e.ModifyIndex)
	if ok && prev.agent != agent {
		mark(prev.agent, index)
		delete(t.byAgent[prev.agent], id)
		t.lost(prev.agent, id, index)
	}
	if agent != "" {
		set := t.byAgent[agent]
		if set == nil {
			set = map[string]struct{}{}
			t.byAgent[agent] = set
		}
		set[id] = struct{}{}
		t.wrote(agent, id, index)
	}
	if ok {
		t.unuse(prev.rec)
	}
	t.use(rec)
	t.seen[id] = seenTask{agent: agent, modify: e.ModifyIndex, gen: gen, rec: rec}
}

// forget records that task id is gone (at index).
func (t *agentTracker) forget(id string, index uint64, mark func(string, uint64)) {
	st, ok := t.seen[id]
	if !ok {
		return
	}
	mark(st.agent, index)
	delete(t.byAgent[st.agent], id)
	delete(t.seen, id)
	t.lost(st.agent, id, index)
	t.unuse(st.rec)
	t.encMu.Lock()
	delete(t.enc, id)
	t.encMu.Unlock()
}

// lost records that agent no longer has task id, from index on. The
// oldest half of a full history is dropped; the agent's floor remembers
// how far back deltas can still be told.
func (t *agentTracker) lost(agent, id string, index uint64) {
	if agent == "" {
		return
	}
	record(t.removed, t.floor, agent, id, index)
}

// wrote records that agent's task id was written, as the scan at index
// saw. Like lost, it drops the oldest half of a full history and raises
// the agent's floor past it.
func (t *agentTracker) wrote(agent, id string, index uint64) {
	record(t.written, t.wfloor, agent, id, index)
}

// record appends id at index to agent's history in hist, keeping at most
// maxRemovals: a full history loses its oldest half, and floor[agent]
// rises to the newest index dropped.
func record(hist map[string][]removal, floor map[string]uint64, agent, id string, index uint64) {
	rs := append(hist[agent], removal{id: id, at: index})
	if len(rs) > maxRemovals {
		drop := len(rs) / 2
		floor[agent] = rs[drop-1].at
		rs = append([]removal(nil), rs[drop:]...)
	}
	hist[agent] = rs
}

// agentSum is what an agent's active tasks use, kept by adding and
// taking away each task as it comes, changes and goes, so that a change
// costs in proportion to the task, not to the agent's tasks.
type agentSum struct {
	res   api.Resources // scalars
	ports map[int]int   // host port → active tasks holding it
	n     int           // active tasks
	// steps since the scalars were last summed afresh: floating-point
	// additions and removals drift, so every sumRefresh steps they are.
	steps int
}

var sumRefresh = 1024 // a variable for tests

func (t *agentTracker) use(rec *TaskRecord) {
	if !active(rec) {
		return
	}
	t.dirty[rec.Task.SlaveID] = true
	t.fwUse[rec.Task.Framework] = addScalars(t.fwUse[rec.Task.Framework], rec.Spec.Resources)
	s := t.sums[rec.Task.SlaveID]
	if s == nil {
		s = &agentSum{ports: map[int]int{}}
		t.sums[rec.Task.SlaveID] = s
	}
	s.res = addScalars(s.res, rec.Spec.Resources)
	for _, p := range rec.Spec.Ports {
		s.ports[p]++
	}
	s.n++
	s.steps++
}

func (t *agentTracker) unuse(rec *TaskRecord) {
	if !active(rec) {
		return
	}
	t.dirty[rec.Task.SlaveID] = true
	r := rec.Spec.Resources
	neg := api.Resources{Cpus: -r.Cpus, Mem: -r.Mem, Disk: -r.Disk, Gpus: -r.Gpus}
	t.fwUse[rec.Task.Framework] = addScalars(t.fwUse[rec.Task.Framework], neg)
	s := t.sums[rec.Task.SlaveID]
	if s == nil {
		return // not counted in (cannot happen: use came first)
	}
	s.res = addScalars(s.res, neg)
	for _, p := range rec.Spec.Ports {
		if s.ports[p]--; s.ports[p] <= 0 {
			delete(s.ports, p)
		}
	}
	s.n--
	s.steps++
	if s.n <= 0 {
		delete(t.sums, rec.Task.SlaveID)
	}
}

// sumUsage makes the usage of the agents whose tasks changed, from their
// running sums, into a new map (readers keep the old one).
func (t *agentTracker) sumUsage() {
	if len(t.dirty) == 0 {
		return
	}
	usage := make(map[string]*agentUsage, len(t.usage)+len(t.dirty))
	for a, u := range t.usage {
		if !t.dirty[a] {
			usage[a] = u
		}
	}
	for a := range t.dirty {
		s := t.sums[a]
		if s == nil || s.n <= 0 {
			continue
		}
		if s.steps >= sumRefresh {
			s.res, s.steps = api.Resources{}, 0
			for id := range t.byAgent[a] {
				if rec := t.seen[id].rec; active(rec) && rec.Task.SlaveID == a {
					s.res = addScalars(s.res, rec.Spec.Resources)
				}
			}
		}
		u := &agentUsage{res: s.res}
		if len(s.ports) > 0 {
			u.ports = make(map[int]struct{}, len(s.ports))
			for p := range s.ports {
				u.ports[p] = struct{}{}
			}
		}
		usage[a] = u
	}
	t.usage = usage
	clear(t.dirty)
}

// scan diffs the whole tasks table against the previous scan.
func (t *agentTracker) scan(index, gen uint64, tasks map[string]*Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scanLocked(index, gen, tasks)
}

func (t *agentTracker) scanLocked(index, gen uint64, tasks map[string]*Entry) {
	first := !t.ready
	dirty := first
	mark := func(agent string, at uint64) {
		dirty = true
		if !first && agent != "" && at > t.last[agent] {
			t.last[agent] = at
		}
	}
	for id, e := range tasks {
		t.see(id, e, index, gen, mark)
	}
	if len(t.seen) != len(tasks) {
		for id, st := range t.seen {
			if st.gen != gen {
				t.forget(id, index, mark)
			}
		}
	}
	// Framework sums start afresh, so additions and removals do not drift.
	_, t.fwUse = usageOf(t.records())
	if first {
		t.base = index
		t.ready = true
	}
	t.finish(index, dirty)
}

// scanKeysLocked applies the writes to the given task keys since the
// previous scan.
func (t *agentTracker) scanKeysLocked(index uint64, keys []string, tasks map[string]*Entry) {
	dirty := false
	mark := func(agent string, at uint64) {
		dirty = true
		if agent != "" && at > t.last[agent] {
			t.last[agent] = at
		}
	}
	for _, id := range keys {
		if e, ok := tasks[id]; ok {
			gen := t.seen[id].gen
			t.see(id, e, index, gen, mark)
		} else {
			t.forget(id, index, mark)
		}
	}
	t.finish(index, dirty)
}

func (t *agentTracker) records() []*TaskRecord {
	out := make([]*TaskRecord, 0, len(t.seen))
	for _, st := range t.seen {
		out = append(out, st.rec)
	}
	return out
}

func (t *agentTracker) finish(index uint64, dirty bool) {
	t.processed = index
	if dirty {
		t.tasksGen++
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// usageNow is what the tasks use per agent and per framework at the
// store's current index. The maps are shared: read them only.
func (t *agentTracker) usageNow(s *Store) (map[string]*agentUsage, map[string]api.Resources) {
	t.update(s)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sumUsage() // only now: most changes are never asked about
	fw := make(map[string]api.Resources, len(t.fwUse))
	for k, v := range t.fwUse {
		fw[k] = v
	}
	return t.usage, fw
}

// tasksChanged returns the tasks generation and a channel closed at the
// next scan.
func (t *agentTracker) tasksChanged() (uint64, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tasksGen, t.changed
}

// await waits until the tracker has followed the store to index at least,
// for up to d. A follower answers an agent only then: an older answer
// would lack tasks the agent has already been told about.
func (t *agentTracker) await(ctx context.Context, index uint64, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		t.mu.Lock()
		ok, ch := t.ready && t.processed >= index, t.changed
		t.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// since reports whether agent's assignments changed after index, the ids
// of its tasks, the index the answer stands for, and a channel closed at
// the next scan.
func (t *agentTracker) since(agent string, after uint64) (changed bool, ids []string, at uint64, wake <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready {
		return after == 0, nil, 0, t.changed
	}
	last := max(t.last[agent], t.base)
	// An index above ours comes from another store (a master that lost its
	// data): answer at once so the agent resyncs.
	changed = after == 0 || last > after || after > t.processed
	if changed {
		ids = make([]string, 0, len(t.byAgent[agent]))
		for id := range t.byAgent[agent] {
			ids = append(ids, id)
		}
	}
	// The answer stands for the agent's last change, not the store's
	// index: a follower has almost always applied that one, so an agent
	// whose master died resyncs from a follower at once instead of after
	// the next election (see Master.handleAssignments). An agent that has
	// never had a task (and a tracker whose first scan was at index 0)
	// has no last change: it gets the index this master has applied, never
	// 0, which an agent takes for "not restored yet" and asks again,
	// forever.
	at = last
	if at == 0 {
		at = t.processed
	}
	return changed, ids, at, t.changed
}

// delta is what changed in agent's assignments after index after: the ids
// of its tasks written since (all of them, with snapshot set, when the
// tracker cannot tell: after is 0, from another store, before this
// tracker's first scan or older than the removals it keeps) and the tasks
// it lost since. changed, at and wake are as for since.
func (t *agentTracker) delta(agent string, after uint64) (changed, snapshot bool, ids, removed []string, at uint64, wake <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready {
		return after == 0, true, nil, nil, 0, t.changed
	}
	last := max(t.last[agent], t.base)
	changed = after == 0 || last > after || after > t.processed
	at = last
	if at == 0 {
		at = t.processed
	}
	if !changed {
		return false, false, nil, nil, at, t.changed
	}
	snapshot = after == 0 || after > t.processed || after < t.base || after < t.floor[agent]
	mine := t.byAgent[agent]
	if !snapshot && after >= t.wfloor[agent] {
		// Every task of the agent written after after was logged by a scan
		// at an index above after (a write's index is at most its scan's),
		// and none of those was dropped: walk back to after only.
		ws := t.written[agent]
		for i := len(ws) - 1; i >= 0 && ws[i].at > after; i-- {
			id := ws[i].id
			if _, ok := mine[id]; ok && t.seen[id].modify > after {
				ids = append(ids, id)
			}
		}
		ids = dedupe(ids)
	} else {
		for id := range mine {
			if snapshot || t.seen[id].modify > after {
				ids = append(ids, id)
			}
		}
	}
	if !snapshot {
		for _, r := range t.removed[agent] {
			if _, back := mine[r.id]; r.at > after && !back {
				removed = append(removed, r.id)
			}
		}
		removed = dedupe(removed)
	}
	return true, snapshot, ids, removed, at, t.changed
}

// queryWait parses ?wait= (Go duration or seconds), default 30 s, capped.
func queryWait(r *http.Request, def, limit time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		var secs float64
		if _, serr := fmt.Sscanf(v, "%g", &secs); serr != nil {
			return 0, fmt.Errorf("wait=%q: want a duration such as 30s", v)
		}
		if secs != secs || secs > limit.Seconds() { // NaN or beyond the cap
			secs = limit.Seconds()
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return 0, fmt.Errorf("wait=%q: must not be negative", v)
	}
	return min(d, limit), nil
}

func queryIndex(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("index")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("index=%q: want a store index (a non-negative integer)", v)
	}
	return n, nil
}

const maxWait = 5 * time.Minute

// handleAssignments serves GET /v1/agents/{id}/assignments?index=N&wait=30s.
func (m *Master) handleAssignments(w http.ResponseWriter, r *http.Request) {
	agent := r.PathValue("id")
	after, err := queryIndex(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := queryWait(r, 30*time.Second, maxWait)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	deltas := false
	if v := r.URL.Query().Get("delta"); v != "" {
		if deltas, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("delta=%q: want true or false", v))
			return
		}
	}
	// An agent's assignments (with its tasks' secret values) go to that
	// agent only.
	if msg := notSelf(r, agent); msg != "" {
		writeError(w, http.StatusForbidden, msg)
		return
	}
	extendWriteDeadline(w, wait)
	if m.polls.begin(agent) {
		m.log.Info("agent polls again; no longer taken for dead", "agent", agent)
		m.membersMoved()
	}
	defer func() { m.polls.end(agent, r.Context().Err() != nil, m.cfg.Now()) }()
	if !m.store.IsLeader() && !m.tracker.await(r.Context(), after, min(wait, m.cfg.FollowerCatchUp)) {
		if r.Context().Err() == nil {
			writeNoLeader(w, fmt.Sprintf("this master has not yet applied index %d, which agent %s has already seen; ask another master", after, agent))
		}
		return
	}
	if deltas {
		m.assignmentDeltas(w, r, agent, after, wait)
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed, ids, at, wake := m.tracker.since(agent, after)
		if changed {
			m.assignments(ids, at, true).write(w)
			return
		}
		select {
		case <-wake:
		case <-timer.C:
			_, ids, at, _ := m.tracker.since(agent, 0)
			m.assignments(ids, max(at, after), true).write(w)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// assignmentDeltas answers the delta form of the assignments query: once
// agent's assignments move past after, the tasks written since and the
// ones it lost (or the whole list, when the tracker cannot tell); after
// wait with nothing changed, an empty delta at after.
func (m *Master) assignmentDeltas(w http.ResponseWriter, r *http.Request, agent string, after uint64, wait time.Duration) {
	write := func(snapshot bool, ids, removed []string, at uint64) {
		b := m.assignments(ids, at, true)
		if !snapshot {
			b.head = deltaHead(at, removed)
			b.size += len(b.head) - len(assignmentsHead(at))
		}
		b.write(w)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed, snapshot, ids, removed, at, wake := m.tracker.delta(agent, after)
		if changed {
			write(snapshot, ids, removed, at)
			return
		}
		select {
		case <-wake:
		case <-timer.C:
			if changed, snapshot, ids, removed, at, _ := m.tracker.delta(agent, after); changed {
				write(snapshot, ids, removed, at)
			} else {
				write(false, nil, nil, after)
			}
			return
		case <-r.Context().Done():
			return
		}
	}
}

func assignmentsHead(at uint64) []byte {
	head := strconv.AppendUint([]byte(`{"index":`), at, 10)
	return append(head, `,"tasks":[`...)
}

func deltaHead(at uint64, removed []string) []byte {
	head := strconv.AppendUint([]byte(`{"index":`), at, 10)
	head = append(head, `,"delta":true`...)
	if len(removed) > 0 {
		rb, _ := json.Marshal(removed)
		head = append(append(head, `,"removed":`...), rb...)
	}
	return append(head, `,"tasks":[`...)
}

// assignments is the JSON of api.Assignments for the given tasks at index
// at. Each task's assignment is encoded once per write of the task and
// kept until the task is gone: an agent's answer changes by one task at a
// time, and it is sent whole.
func (m *Master) assignments(ids []string, at uint64, withSecrets bool) assignmentsBody {
	sort.Strings(ids)
	type item struct {
		id     string
		modify uint64
		rec    *TaskRecord
	}
	items := make([]item, 0, len(ids))
	m.store.Read(func(_ uint64, t map[string]map[string]*Entry) {
		tasks := t[TableTasks]
		for _, id := range ids {
			if e, ok := tasks[id]; ok {
				items = append(items, item{id, e.ModifyIndex, e.Value.(*TaskRecord)})
			}
		}
	})
	tr := m.tracker
	parts := make([][]byte, len(items))
	size := 64
	tr.encMu.Lock()
	for i, it := range items {
		if !withSecrets && len(it.rec.Spec.SecretEnv) > 0 {
			continue // encoded below, without the values, and not kept
		}
		if e, ok := tr.enc[it.id]; ok && e.modify == it.modify {
			parts[i] = e.b
			size += len(e.b) + 1
		}
	}
	tr.encMu.Unlock()
	for i, it := range items {
		if parts[i] != nil {
			continue
		}
		as := api.Assignment{Task: it.rec.Task, Spec: it.rec.Spec, Goal: it.rec.Goal}
		if it.rec.Goal == api.GoalRun && withSecrets {
			as.Secrets = m.resolveSecrets(&it.rec.Spec)
		}
		b, err := json.Marshal(as)
		if err != nil {
			b = []byte("null")
		}
		parts[i] = b
		size += len(b) + 1
		if !withSecrets && len(it.rec.Spec.SecretEnv) > 0 {
			continue
		}
		// Kept only while the tracker knows the task at this write, so a
		// task it has forgotten leaves nothing behind.
		tr.mu.Lock()
		if st, ok := tr.seen[it.id]; ok && st.modify == it.modify {
			tr.encMu.Lock()
			tr.enc[it.id] = encodedAssignment{modify: it.modify, b: b}
			tr.encMu.Unlock()
		}
		tr.mu.Unlock()
	}
	head := assignmentsHead(at)
	return assignmentsBody{head: head, parts: parts, size: size - 64 + len(head) + len("]}\n")}
}

// assignmentsBody is an assignments answer as its pieces: the kept
// encodings of the tasks go out as they are, not copied into one buffer.
type assignmentsBody struct {
	head  []byte
	parts [][]byte
	size  int // with the commas
}

// writeBufs gather pieces on their way out.
var writeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func (b assignmentsBody) write(w http.ResponseWriter) {
	size := b.size
	if len(b.parts) > 0 {
		size-- // n parts, n-1 commas
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.WriteHeader(http.StatusOK)
	bw := writeBufs.Get().(*bufio.Writer)
	bw.Reset(w)
	_, _ = bw.Write(b.head)
	for i, p := range b.parts {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(p)
	}
	_, _ = bw.WriteString("]}\n")
	_ = bw.Flush()
	bw.Reset(nil)
	writeBufs.Put(bw)
}

// statusAnswer is the body of a status POST's answer.
type statusAnswer struct {
	// Unknown lists tasks the master does not know; the agent kills them.
	Unknown []string `json:"unknown"`
}

// handleStatus serves POST /v1/agents/{id}/status with []api.TaskStatus.
func (m *Master) handleStatus(w http.ResponseWriter, r *http.Request) {
	agent := r.PathValue("id")
	if msg := notSelf(r, agent); msg != "" {
		writeError(w, http.StatusForbidden, msg)
		return
	}
	var updates []api.TaskStatus
	if !decodeBody(w, r, m.cfg.MaxStatusBody, &updates) {
		return
	}
	get := func(id string) (*TaskRecord, uint64, bool) {
		e, ok := m.store.Get(TableTasks, id)
		if !ok {
			return nil, 0, false
		}
		return e.Value.(*TaskRecord), e.ModifyIndex, true
	}
	for attempt := 0; ; attempt++ {
		p := planStatus(agent, updates, get, m.cfg.Now())
		if len(p.Foreign) > 0 {
			writeError(w, http.StatusConflict, fmt.Sprintf("tasks %s are assigned to another agent, not %s; nothing was applied", strings.Join(p.Foreign, ", "), agent))
			return
		}
		ans := statusAnswer{Unknown: p.Unknown}
		if ans.Unknown == nil {
			ans.Unknown = []string{}
		}
		if len(p.Ops) == 0 {
			writeJSON(w, http.StatusOK, ans)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		_, err := m.applyTimed(ctx, "status", p.Ops, p.Events...)
		cancel()
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, ans)
			return
		case errors.Is(err, ErrConflict) && attempt < 8:
			continue
		case errors.Is(err, ErrNotLeader):
			writeError(w, http.StatusServiceUnavailable, "leadership changed while applying the update; retry")
			return
		default:
			writeError(w, http.StatusServiceUnavailable, "applying status updates: "+err.Error())
			return
		}
	}
}

// decodeBody decodes a JSON body into v, answering 400 on bad JSON.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return false
	}
	return true
}
