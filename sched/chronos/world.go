package chronos

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Run states and triggers of the ledger.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunSkipped   = "skipped"
	RunRetrying  = "retrying"

	TriggerSchedule   = "schedule"
	TriggerDependency = "dependency"
	TriggerManual     = "manual"
)

const stateKeyPrefix = "chronos/state/"

// jobState is a job's scheduling state, kept in sched.TableMeta so that it
// survives a change of leader.
type jobState struct {
	// Seq counts the runs ever created for this name; run and task ids
	// derive from it, so they never repeat.
	Seq int64 `json:"seq"`
	// LastScheduled is the last schedule occurrence handled (run or
	// skipped); the next one is the schedule's first occurrence after it.
	LastScheduled string `json:"lastScheduled,omitempty"`
	// ScheduleKey is the schedule and zone LastScheduled refers to.
	ScheduleKey string `json:"scheduleKey,omitempty"`
	// ParentSuccess maps each parent that succeeded since this job last
	// ran to when it did.
	ParentSuccess map[string]string `json:"parentSuccess,omitempty"`
}

func active(state string) bool {
	return state == RunQueued || state == RunRunning || state == RunRetrying
}

func runID(job string, seq int64) string { return fmt.Sprintf("%s#%08d", job, seq) }

// taskID is derived from the run and the attempt, so relaunching an
// attempt after a master restart reuses the id and cannot duplicate it.
func taskID(job string, seq int64, attempt int) string {
	return fmt.Sprintf("ct.%s.%d.%d", job, seq, attempt)
}

func runSeq(id string) int64 {
	var n int64
	if i := strings.LastIndexByte(id, '#'); i >= 0 {
		fmt.Sscan(id[i+1:], &n)
	}
	return n
}

func ts(t time.Time) string { return api.Timestamp(t) }

func parseTS(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

type jobView struct {
	job        api.Job
	idx        uint64 // 0: new
	st         jobState
	stIdx      uint64
	stExists   bool
	deleted    bool
	dirtyJob   bool
	dirtyState bool
}

type runView struct {
	run   api.JobRun
	idx   uint64
	dirty bool
	del   bool
}

// world is a consistent, mutable copy of the framework's part of the
// store. Changes are collected and committed in one Apply whose Checks
// make it fail with sched.ErrConflict if anything it read has changed.
type world struct {
	now      time.Time
	cfg      *Config
	jobs     map[string]*jobView
	runs     map[string]*runView // active runs (and any touched)
	byJob    map[string][]string // job → active run ids, oldest first
	tasks    map[string]sched.Entry
	finished map[string][]string // job → finished run ids (for history trimming)
	taskOps  []sched.Op
	events   []api.Event
	checks   []sched.Op
	revive   bool
}

func decodeState(e *sched.Entry) jobState {
	var st jobState
	if raw, ok := e.Value.(*json.RawMessage); ok && raw != nil {
		_ = json.Unmarshal(*raw, &st)
	}
	return st
}

// stateCache keeps decoded job states by ModifyIndex, so a pass over many
// jobs does not decode every state again.
type stateCache struct {
	mu sync.Mutex
	m  map[string]cachedState

	// The chronos tasks of the store at tasksIdx, kept up to date by the
	// keys written since (a marathon task change costs a look at one key,
	// not a walk of every task). Replaced, never modified: worlds share it.
	tasksMu  sync.Mutex
	tasksSt  *sched.Store
	tasksIdx uint64
	tasks    map[string]sched.Entry
}

// chronosTasks returns the chronos tasks in tasks (the table at index,
// with keys written since the cache's index, complete or not), from the
// cache when it can. The caller holds the store's read lock (ReadChanged).
func (c *stateCache) chronosTasks(s *sched.Store, index uint64, tasks map[string]*sched.Entry, keys []string, complete bool) map[string]sched.Entry {
	c.tasksMu.Lock()
	defer c.tasksMu.Unlock()
	if c.tasksSt == s && c.tasks != nil && index == c.tasksIdx {
		return c.tasks
	}
	out := map[string]sched.Entry{}
	if c.tasksSt == s && c.tasks != nil && complete && index > c.tasksIdx {
		changed := false
		for _, k := range keys {
			_, had := c.tasks[k]
			e, ok := tasks[k]
			if had || (ok && e.Value.(*sched.TaskRecord).Task.Framework == frameworkName) {
				changed = true
				break
			}
		}
		if !changed {
			c.tasksIdx = index
			return c.tasks
		}
		for id, e := range c.tasks {
			out[id] = e
		}
		for _, k := range keys {
			if e, ok := tasks[k]; ok && e.Value.(*sched.TaskRecord).Task.Framework == frameworkName {
				out[k] = *e
			} else {
				delete(out, k)
			}
		}
	} else {
		for id, e := range tasks {
			if tr := e.Value.(*sched.TaskRecord); tr.Task.Framework == frameworkName {
				out[id] = *e
			}
		}
	}
	c.tasksSt, c.tasksIdx, c.tasks = s, index, out
	return out
}

type cachedState struct {
	idx uint64
	st  jobState
}

func (c *stateCache) get(key string, e *sched.Entry) jobState {
	if c == nil {
		return decodeState(e)
	}
	c.mu.Lock()
	cs, ok := c.m[key]
	c.mu.Unlock()
	if !ok || cs.idx != e.ModifyIndex {
		cs = cachedState{idx: e.ModifyIndex, st: decodeState(e)}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]cachedState{}
		}
		c.m[key] = cs
		c.mu.Unlock()
	}
	st := cs.st
	if st.ParentSuccess != nil { // the world changes it in place
		st.ParentSuccess = maps.Clone(st.ParentSuccess)
	}
	return st
}

// loadWorld reads the store under one lock. Finished runs are listed (for
// trimming the ledger) only when trim is set: with a full ledger that is
// most of the work.
func loadWorld(s *sched.Store, cfg *Config, now time.Time, cache *stateCache, trim bool) *world {
	w := &world{now: now, cfg: cfg, jobs: map[string]*jobView{}, runs: map[string]*runView{},
		byJob: map[string][]string{}, finished: map[string][]string{}}
	cache.tasksMu.Lock()
	after := cache.tasksIdx
	if cache.tasksSt != s {
		after = 0
	}
	cache.tasksMu.Unlock()
	s.ReadChanged(sched.TableTasks, after, func(index uint64, t map[string]map[string]*sched.Entry, keys []string, complete bool) {
		for name, e := range t[sched.TableJobs] {
			jv := &jobView{job: *e.Value.(*api.Job), idx: e.ModifyIndex}
			w.jobs[name] = jv
		}
		for name, jv := range w.jobs {
			if e, ok := t[sched.TableMeta][stateKeyPrefix+name]; ok {
				jv.st, jv.stIdx, jv.stExists = cache.get(name, e), e.ModifyIndex, true
			}
		}
		for id, e := range t[sched.TableJobRuns] {
			r := e.Value.(*api.JobRun)
			if active(r.State) {
				w.runs[id] = &runView{run: *r, idx: e.ModifyIndex}
				w.byJob[r.Job] = append(w.byJob[r.Job], id)
			} else if trim {
				w.finished[r.Job] = append(w.finished[r.Job], id)
			}
		}
		w.tasks = cache.chronosTasks(s, index, t[sched.TableTasks], keys, complete)
	})
	for _, ids := range w.byJob {
		sort.Strings(ids)
	}
	return w
}

// state returns a job's state for changing; the job must be loaded (or the
// state of a deleted name is read from the store by the caller).
func (w *world) state(name string) *jobState {
	jv := w.jobs[name]
	jv.dirtyState = true
	return &jv.st
}

// children lists the jobs that name is a parent of, sorted.
func (w *world) children(name string) []string {
	var out []string
	for n, jv := range w.jobs {
		if jv.deleted {
			continue
		}
		for _, p := range jv.job.Parents {
			if p == name {
				out = append(out, n)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// newRun writes the intent of a run: a queued ledger entry whose task id
// is fixed now.
func (w *world) newRun(name, trigger string, scheduledAt time.Time, args []string) *runView {
	jv := w.jobs[name]
	st := w.state(name)
	st.Seq++
	id := runID(name, st.Seq)
	rv := &runView{run: api.JobRun{
		ID: id, Job: name, ScheduledAt: ts(scheduledAt), State: RunQueued, Attempt: 1,
		TaskID: taskID(name, st.Seq, 1), Arguments: args, Trigger: trigger,
	}, dirty: true}
	_ = jv
	w.runs[id] = rv
	w.byJob[name] = append(w.byJob[name], id)
	w.revive = true
	w.event(&rv.run)
	return rv
}

// skipRun records a run that did not happen.
func (w *world) skipRun(name string, scheduledAt time.Time, msg string) {
	st := w.state(name)
	st.Seq++
	id := runID(name, st.Seq)
	rv := &runView{run: api.JobRun{ID: id, Job: name, ScheduledAt: ts(scheduledAt), FinishedAt: ts(w.now),
		State: RunSkipped, Trigger: TriggerSchedule, Message: msg}, dirty: true}
	w.runs[id] = rv
	w.event(&rv.run)
}

func (w *world) event(r *api.JobRun) {
	w.events = append(w.events, api.NewEvent(api.EventJobRun, r))
}

func (w *world) setRun(rv *runView, state, msg string) {
	rv.run.State, rv.run.Message, rv.dirty = state, msg, true
	if !active(state) {
		rv.run.FinishedAt = ts(w.now)
	}
	w.event(&rv.run)
}

// succeed records a success of name (a run's, or one marked through the
// API) and hands it to every dependant, starting those whose parents have
// all succeeded since they last ran.
func (w *world) succeed(name string) {
	jv := w.jobs[name]
	jv.job.SuccessCount++
	jv.job.LastSuccess = ts(w.now)
	jv.job.ErrorsSinceLastSuccess = 0
	jv.dirtyJob = true
	for _, c := range w.children(name) {
		cv := w.jobs[c]
		st := w.state(c)
		if st.ParentSuccess == nil {
			st.ParentSuccess = map[string]string{}
		}
		st.ParentSuccess[name] = ts(w.now)
		all := true
		for _, p := range cv.job.Parents {
			if _, ok := st.ParentSuccess[p]; !ok {
				all = false
			}
		}
		if all && !cv.job.Disabled {
			st.ParentSuccess = nil
			w.newRun(c, TriggerDependency, w.now, nil)
		}
	}
}

// maxLost bounds the attempts of one run lost with their agents.
const maxLost = 5

// lostState reports a task that died with its agent, not of its command.
func lostState(s string) bool {
	return s == api.TaskLost || s == api.TaskGone || s == api.TaskDropped || s == api.TaskUnreachable
}

// fail records a failed attempt: a retry after the delay while retries
// last, else a failed run and the job's error counters. An attempt lost
// with its agent is retried at once and does not use up a retry.
func (w *world) fail(rv *runView, msg string, retry, lost bool) {
	jv := w.jobs[rv.run.Job]
	if jv == nil {
		w.setRun(rv, RunFailed, msg)
		return
	}
	if lost && rv.run.Lost < maxLost {
		rv.run.Lost++
	} else {
		lost = false
	}
	if retry && (lost || rv.run.Attempt-rv.run.Lost <= jv.job.Retries) {
		seq := runSeq(rv.run.ID)
		rv.run.Attempt++
		rv.run.TaskID = taskID(rv.run.Job, seq, rv.run.Attempt)
		rv.run.RetryAt = ts(w.now.Add(w.cfg.FailureRetry))
		if lost {
			rv.run.RetryAt = ts(w.now)
		}
		rv.run.StartedAt = ""
		w.setRun(rv, RunRetrying, msg)
		return
	}
	w.setRun(rv, RunFailed, msg)
	jv.job.ErrorCount++
	jv.job.LastError = ts(w.now)
	jv.job.ErrorsSinceLastSuccess++
	if n := w.cfg.DisableAfterFailures; n > 0 && !jv.job.SoftError && jv.job.ErrorsSinceLastSuccess >= int64(n) {
		jv.job.Disabled = true
	}
	jv.dirtyJob = true
}

// killTask asks the agent to stop a task.
func (w *world) killTask(id string) {
	e, ok := w.tasks[id]
	if !ok {
		return
	}
	tr := *e.Value.(*sched.TaskRecord)
	if tr.Goal == api.GoalKill || api.Terminal(tr.Task.State) {
		return
	}
	tr.Goal = api.GoalKill
	w.taskOps = append(w.taskOps, sched.Check(sched.TableTasks, id, e.ModifyIndex), sched.Put(sched.TableTasks, id, &tr))
}

// ops turns the changes into one atomic command.
func (w *world) ops() []sched.Op {
	ops := append([]sched.Op{}, w.checks...)
	names := make([]string, 0, len(w.jobs))
	for n := range w.jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		jv := w.jobs[n]
		if jv.deleted {
			ops = append(ops, sched.Check(sched.TableJobs, n, jv.idx), sched.Delete(sched.TableJobs, n))
		} else if jv.dirtyJob {
			ops = append(ops, sched.Check(sched.TableJobs, n, jv.idx), sched.Put(sched.TableJobs, n, &jv.job))
		}
		if jv.dirtyState {
			ops = append(ops, sched.Check(sched.TableMeta, stateKeyPrefix+n, jv.stIdx), sched.Put(sched.TableMeta, stateKeyPrefix+n, &jv.st))
		}
	}
	ids := make([]string, 0, len(w.runs))
	for id := range w.runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rv := w.runs[id]
		switch {
		case rv.del:
			ops = append(ops, sched.Delete(sched.TableJobRuns, id))
		case rv.dirty:
			ops = append(ops, sched.Check(sched.TableJobRuns, id, rv.idx), sched.Put(sched.TableJobRuns, id, &rv.run))
		}
	}
	return append(ops, w.taskOps...)
}
