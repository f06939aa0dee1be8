package chronos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

const frameworkName = "chronos"

// Framework is the chronos framework. It implements sched.Framework.
type Framework struct {
	cfg Config
	log *slog.Logger

	handle atomic.Pointer[handleBox]
	wants  atomic.Bool
	kick   chan struct{}

	mu       sync.Mutex
	ready    []pendingLaunch      // runs that may launch now, oldest first
	inflight map[string]time.Time // run id@index → when it was handed to the allocator
	sched    map[string]schedCache
	eps      map[string]time.Duration
	states   stateCache
	lastTrim time.Time // only the loop goroutine touches it
}

type handleBox struct{ m sched.MasterHandle }

type pendingLaunch struct {
	runID string
	idx   uint64 // the run's ModifyIndex when it was found ready
	prio  bool
}

type schedCache struct {
	key string
	s   Schedule
	err error
}

var _ sched.Framework = (*Framework)(nil)

// New returns the framework; cmd/weft appends it to the master's
// frameworks. Zero fields of cfg take DefaultConfig's values.
func New(cfg Config) *Framework {
	def := DefaultConfig()
	if cfg.TaskEpsilon <= 0 {
		cfg.TaskEpsilon = def.TaskEpsilon
	}
	if cfg.FailureRetry <= 0 {
		cfg.FailureRetry = def.FailureRetry
	}
	if cfg.DefaultCpus <= 0 {
		cfg.DefaultCpus = def.DefaultCpus
	}
	if cfg.DefaultMem <= 0 {
		cfg.DefaultMem = def.DefaultMem
	}
	if cfg.DefaultDisk <= 0 {
		cfg.DefaultDisk = def.DefaultDisk
	}
	if cfg.DefaultRetries < 0 {
		cfg.DefaultRetries = 0
	}
	if cfg.RunHistory <= 0 {
		cfg.RunHistory = def.RunHistory
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = def.MaxWait
	}
	if cfg.Coalesce < 0 {
		cfg.Coalesce = 0
	}
	if cfg.UnreachableAfter <= 0 {
		cfg.UnreachableAfter = def.UnreachableAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Framework{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "chronos"),
		kick:     make(chan struct{}, 1),
		inflight: map[string]time.Time{},
		sched:    map[string]schedCache{},
		eps:      map[string]time.Duration{},
	}
}

// Name is "chronos".
func (f *Framework) Name() string { return frameworkName }

func (f *Framework) master() sched.MasterHandle {
	if b := f.handle.Load(); b != nil {
		return b.m
	}
	return nil
}

func (f *Framework) setMaster(m sched.MasterHandle) {
	if f.master() == nil {
		f.handle.Store(&handleBox{m})
	}
}

func (f *Framework) now() time.Time {
	if f.cfg.Now != nil {
		return f.cfg.Now()
	}
	if m := f.master(); m != nil {
		return m.Now()
	}
	return time.Now()
}

// poke makes the loop look at the state again now.
func (f *Framework) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run reconciles runs against tasks and schedules, reacting to every store
// change (a task finishing starts its dependants at once) and waking for
// the next due occurrence, retry or deadline. It runs while this master
// leads; a new leader's first pass adopts the runs in flight.
func (f *Framework) Run(ctx context.Context, m sched.MasterHandle) error {
	f.handle.Store(&handleBox{m})
	f.mu.Lock()
	clear(f.inflight) // launches handed out in an earlier term are settled
	f.mu.Unlock()
	st := m.Store()
	conflicts := 0
	for {
		idx := st.Index()
		wake, err := f.step(ctx)
		switch {
		case errors.Is(err, sched.ErrConflict):
			conflicts++
			if conflicts < 5 {
				continue
			}
			wake = f.now().Add(50 * time.Millisecond)
		case errors.Is(err, sched.ErrNotLeader):
			wake = f.now().Add(time.Second)
		case err != nil:
			f.log.Warn("reconciling jobs", "err", err)
			wake = f.now().Add(time.Second)
		}
		if err == nil {
			conflicts = 0
		}
		if f.Wants() {
			m.Revive()
		}
		d := f.cfg.MaxWait
		if !wake.IsZero() {
			if w := wake.Sub(f.now()); w < d {
				d = w
			}
		}
		if d < 0 {
			d = 0
		}
		if err := f.wait(ctx, st, idx, d); err != nil {
			return nil
		}
	}
}

// wait returns when the store moves past idx, d passes, or poke is called.
func (f *Framework) wait(ctx context.Context, st *sched.Store, idx uint64, d time.Duration) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{})
	go func() {
		if _, err := st.Watch(wctx, idx); err == nil {
			close(changed)
		}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
		// Let a burst of writes (status updates of many tasks) land
		// before the next pass reads every job and run again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(f.cfg.Coalesce):
		}
	case <-t.C:
	case <-f.kick:
	}
	return nil
}

// step runs one reconciliation pass and returns when the next one is due.
func (f *Framework) step(ctx context.Context) (time.Time, error) {
	m := f.master()
	if m == nil {
		return time.Time{}, errors.New("chronos: not started")
	}
	now := f.now()
	trim := now.Sub(f.lastTrim) > 10*time.Second || now.Before(f.lastTrim)
	if trim {
		f.lastTrim = now
	}
	w := loadWorld(m.Store(), &f.cfg, now, &f.states, trim)
	wake := f.advance(w)
	ops := w.ops()
	if len(ops) > 0 {
		if _, err := m.Store().Apply(ctx, ops, w.events...); err != nil {
			return wake, fmt.Errorf("committing job runs: %w", err)
		}
		// What we wrote changes what is ready: look again.
		return f.now(), nil
	}
	return wake, nil
}

func scheduleKey(j *api.Job) string { return j.Schedule + "\x00" + j.ScheduleTimeZone }

func (f *Framework) schedule(j *api.Job) (Schedule, error) {
	key := scheduleKey(j)
	f.mu.Lock()
	c, ok := f.sched[j.Name]
	f.mu.Unlock()
	if ok && c.key == key {
		return c.s, c.err
	}
	s, err := ParseSchedule(j.Schedule, j.ScheduleTimeZone, f.now())
	f.mu.Lock()
	f.sched[j.Name] = schedCache{key: key, s: s, err: err}
	f.mu.Unlock()
	return s, err
}

func (f *Framework) epsilon(j *api.Job) time.Duration {
	f.mu.Lock()
	e, ok := f.eps[j.Epsilon]
	f.mu.Unlock()
	if ok {
		return e
	}
	e, err := ParseEpsilon(j.Epsilon, f.cfg.TaskEpsilon)
	if err != nil || e <= 0 {
		e = f.cfg.TaskEpsilon
	}
	f.mu.Lock()
	f.eps[j.Epsilon] = e
	f.mu.Unlock()
	return e
}

// Per-job bounds of a pass (docs/limits.md): however a job's schedule is
// set, one pass does a bounded amount of work for it and the ledger holds
// a bounded number of its queued runs.
const (
	// MaxQueuedRuns is how many queued runs one job may have; further due
	// occurrences are recorded as skipped, and a manual run is refused.
	MaxQueuedRuns = 10
	// maxOccurrencesPerPass is how many due occurrences of one job a pass
	// looks at; the rest wait for the next pass, which comes at once.
	maxOccurrencesPerPass = 100
)

// maxSkipRecords bounds the skipped runs recorded one by one after a long
// outage; the rest are summed up in one record.
const maxSkipRecords = 10

// advance is the pure core of a pass: it moves runs on from their tasks'
// states, starts due occurrences, skips missed ones, and finds what is
// ready to launch. It returns when something next becomes due.
func (f *Framework) advance(w *world) time.Time {
	now := w.now
	var wake time.Time
	soon := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	names := make([]string, 0, len(w.jobs))
	for n := range w.jobs {
		names = append(names, n)
	}
	sort.Strings(names)

	// 1. Runs in flight, from their tasks.
	for _, n := range names {
		for _, id := range append([]string(nil), w.byJob[n]...) {
			rv := w.runs[id]
			if rv.run.State != RunRunning {
				continue
			}
			e, ok := w.tasks[rv.run.TaskID]
			if !ok {
				w.fail(rv, "task "+rv.run.TaskID+" is gone", true, true)
				continue
			}
			tr := e.Value.(*sched.TaskRecord)
			switch {
			case tr.Task.State == api.TaskFinished:
				w.setRun(rv, RunSucceeded, tr.Task.Message)
				w.succeed(n)
			case api.Terminal(tr.Task.State):
				msg := tr.Task.State
				if tr.Task.Message != "" {
					msg += ": " + tr.Task.Message
				}
				w.fail(rv, msg, true, lostState(tr.Task.State))
			case tr.Task.State == api.TaskUnreachable:
				// The agent is gone: after UnreachableAfter the run is
				// retried elsewhere and the old task told to stop should
				// the agent come back.
				dl := parseTS(tr.UpdatedAt).Add(w.cfg.UnreachableAfter)
				if tr.UpdatedAt == "" || !now.Before(dl) {
					w.killTask(rv.run.TaskID)
					w.fail(rv, "the agent running "+rv.run.TaskID+" is unreachable", true, true)
				} else {
					soon(dl)
				}
			default:
				if mct := w.jobs[n].job.MaxCompletionTime; mct > 0 && rv.run.StartedAt != "" {
					dl := parseTS(rv.run.StartedAt).Add(time.Duration(mct) * time.Second)
					if !now.Before(dl) {
						w.killTask(rv.run.TaskID)
						w.fail(rv, fmt.Sprintf("maxCompletionTime of %ds exceeded", mct), true, false)
					} else {
						soon(dl)
					}
				}
			}
		}
	}

	// 2. Schedules.
	for _, n := range names {
		jv := w.jobs[n]
		j := &jv.job
		if j.Schedule == "" || j.Disabled {
			continue
		}
		s, err := f.schedule(j)
		if err != nil {
			continue
		}
		eps := f.epsilon(j)
		key := scheduleKey(j)
		after := parseTS(jv.st.LastScheduled)
		if jv.st.ScheduleKey != key || after.IsZero() {
			// A new or changed schedule: occurrences before it existed
			// are neither run nor counted as missed.
			after = now.Add(-eps)
			st := w.state(n)
			st.ScheduleKey, st.LastScheduled = key, ts(after)
		}
		queued := 0
		for _, id := range w.byJob[n] {
			if w.runs[id].run.State == RunQueued {
				queued++
			}
		}
		skipped, lastSkip, jump := 0, time.Time{}, time.Time{}
		for i := 0; ; i++ {
			if i == maxOccurrencesPerPass {
				// A runaway schedule (a long outage, a huge epsilon) is
				// bounded per pass, so other jobs, and a DELETE of this
				// one, get their turn. Occurrences that would only be
				// skipped too are passed over at once.
				if jump.After(after) {
					after = jump
				} else {
					soon(now)
				}
				break
			}
			next, ok := s.Next(after)
			if !ok {
				break
			}
			if next.After(now) {
				soon(next)
				break
			}
			switch {
			case now.Sub(next) > eps:
				if skipped < maxSkipRecords {
					w.skipRun(n, next, fmt.Sprintf("missed by %s, more than epsilon %s", now.Sub(next).Round(time.Second), eps))
				}
				skipped++
				lastSkip = next
				jump = now.Add(-eps)
			case queued >= MaxQueuedRuns:
				if skipped < maxSkipRecords {
					w.skipRun(n, next, fmt.Sprintf("%d runs of the job are already queued (the limit)", MaxQueuedRuns))
				}
				skipped++
				lastSkip = next
				jump = now
			default:
				jump = time.Time{}
				w.newRun(n, TriggerSchedule, next, nil)
				queued++
			}
			after = next
		}
		if skipped > maxSkipRecords {
			w.skipRun(n, lastSkip, fmt.Sprintf("%d more runs missed by more than epsilon %s", skipped-maxSkipRecords, eps))
		}
		if ts(after) != jv.st.LastScheduled {
			w.state(n).LastScheduled = ts(after)
		}
	}

	// 3. What may launch now; non-concurrent jobs run one at a time, a
	// scheduled run that waited on its predecessor past epsilon is skipped.
	var ready []pendingLaunch
	for _, n := range names {
		jv := w.jobs[n]
		busy := false
		for _, id := range w.byJob[n] {
			if s := w.runs[id].run.State; s == RunRunning {
				busy = true
			}
		}
		for _, id := range w.byJob[n] {
			rv := w.runs[id]
			if rv.run.State != RunQueued && rv.run.State != RunRetrying {
				continue
			}
			if !jv.job.Concurrent && busy {
				if rv.run.Trigger == TriggerSchedule && rv.run.State == RunQueued {
					dl := parseTS(rv.run.ScheduledAt).Add(f.epsilon(&jv.job))
					if now.After(dl) {
						w.setRun(rv, RunSkipped, "the previous run was still active past epsilon (concurrent is false)")
						continue
					}
					soon(dl)
				}
				continue
			}
			if rv.run.State == RunRetrying {
				if at := parseTS(rv.run.RetryAt); now.Before(at) {
					soon(at)
					busy = true // a pending retry holds a non-concurrent job
					continue
				}
			}
			if !rv.dirty {
				ready = append(ready, pendingLaunch{runID: id, idx: rv.idx, prio: jv.job.HighPriority})
			}
			busy = true
		}
	}
	// Runs of deleted jobs cannot run.
	for job, ids := range w.byJob {
		if _, ok := w.jobs[job]; ok {
			continue
		}
		for _, id := range ids {
			rv := w.runs[id]
			if rv.run.State == RunRunning {
				w.killTask(rv.run.TaskID)
			}
			rv.del = true
		}
	}
	// 4. Ledger trimming and task clean-up.
	for job, ids := range w.finished {
		if len(ids) <= w.cfg.RunHistory {
			continue
		}
		sort.Strings(ids)
		for _, id := range ids[:len(ids)-w.cfg.RunHistory] {
			w.runs[id] = &runView{del: true}
		}
		_ = job
	}
	referenced := map[string]bool{}
	for _, rv := range w.runs {
		if active(rv.run.State) && !rv.del {
			referenced[rv.run.TaskID] = true
		}
	}
	for id, e := range w.tasks {
		tr := e.Value.(*sched.TaskRecord)
		if api.Terminal(tr.Task.State) && !referenced[id] {
			w.taskOps = append(w.taskOps, sched.Delete(sched.TableTasks, id))
		}
	}

	sort.SliceStable(ready, func(i, k int) bool { return ready[i].prio && !ready[k].prio })
	f.mu.Lock()
	f.ready = ready
	for k, t := range f.inflight {
		if now.Sub(t) > 10*time.Second || now.Before(t) {
			delete(f.inflight, k)
		}
	}
	f.mu.Unlock()
	f.wants.Store(len(ready) > 0)
	return wake
}

// Wants reports whether runs wait for resources.
func (f *Framework) Wants() bool { return f.wants.Load() }

// ResourceOffers launches ready runs on offers that fit them: resources,
// constraints, and the "docker" capability for container jobs. Each launch
// carries Ops moving its run to running, guarded by Checks on the run and
// on the task id, so a run launches at most once. It reads the runs that
// may launch, plans the answer (planOffers) and remembers the launches
// handed out.
func (f *Framework) ResourceOffers(ctx context.Context, offers []api.Offer) sched.OfferResult {
	m := f.master()
	if m == nil {
		var res sched.OfferResult
		for _, o := range offers {
			res.Declines = append(res.Declines, sched.Decline{OfferID: o.ID})
		}
		return res
	}
	st := m.Store()
	now := f.now()
	f.mu.Lock()
	ready := append([]pendingLaunch(nil), f.ready...)
	f.mu.Unlock()

	in := offerInput{offers: offers, now: now}
	for _, p := range ready {
		key := fmt.Sprintf("%s@%d", p.runID, p.idx)
		f.mu.Lock()
		_, dup := f.inflight[key]
		f.mu.Unlock()
		if dup {
			continue
		}
		e, ok := st.Get(sched.TableJobRuns, p.runID)
		if !ok || e.ModifyIndex != p.idx {
			continue
		}
		je, ok := st.Get(sched.TableJobs, e.Value.(*api.JobRun).Job)
		if !ok {
			continue
		}
		run := e.Value.(*api.JobRun)
		if _, exists := st.Get(sched.TableTasks, run.TaskID); exists {
			continue // the loop will adopt it
		}
		in.runs = append(in.runs, readyRun{key: key, run: run, idx: e.ModifyIndex, job: je.Value.(*api.Job)})
	}
	if len(in.runs) > 0 {
		in.placed = runningPlacements(st, offers)
	}

	p := planOffers(in)

	f.mu.Lock()
	for _, key := range p.launched {
		f.inflight[key] = now
	}
	f.mu.Unlock()
	if len(p.launched) == len(ready) {
		f.wants.Store(false)
	}
	return p.res
}

// readyRun is a run that may launch, read at store index idx.
type readyRun struct {
	key string // run id@index
	run *api.JobRun
	idx uint64
	job *api.Job
}

// offerInput is everything planOffers decides from. It does not modify any
// of it.
type offerInput struct {
	offers []api.Offer
	runs   []readyRun             // oldest first
	placed map[string][]api.Offer // job name → where its live tasks run
	now    time.Time
}

// offerPlan is the answer to offers, and the keys of the runs launched.
type offerPlan struct {
	res      sched.OfferResult
	launched []string
}

// planOffers places each ready run on the first offer that fits it, and
// declines the rest: briefly (50 ms) when nothing was tried on an offer,
// for a second with the reasons when something did not fit.
func planOffers(in offerInput) offerPlan {
	var p offerPlan
	offers := in.offers
	free := make([]api.Resources, len(offers))
	used := make([]bool, len(offers))
	reasons := make([]map[string]bool, len(offers))
	for i, o := range offers {
		free[i] = o.Resources
		reasons[i] = map[string]bool{}
	}
	placed := make(map[string][]api.Offer, len(in.placed))
	for name, os := range in.placed {
		placed[name] = os[:len(os):len(os)] // appends copy
	}
	for _, rr := range in.runs {
		job, run := rr.job, *rr.run
		need := api.Resources{Cpus: job.Cpus, Mem: job.Mem, Disk: job.Disk}
		for i := range offers {
			o := &offers[i]
			if r := fits(need, free[i]); r != "" {
				reasons[i][r] = true
				continue
			}
			if job.Container != nil && job.Container.Image != "" && !o.HasCapability("docker") {
				reasons[i]["NoCapability"] = true
				continue
			}
			if !constraintsMatch(job.Constraints, o, placed[job.Name]) {
				reasons[i]["UnfulfilledConstraint"] = true
				continue
			}
			free[i].Cpus -= need.Cpus
			free[i].Mem -= need.Mem
			free[i].Disk -= need.Disk
			used[i] = true
			tr := taskFor(job, &run, o, in.now)
			run.State, run.StartedAt, run.Message, run.RetryAt = RunRunning, ts(in.now), "", ""
			p.res.Launches = append(p.res.Launches, sched.Launch{OfferID: o.ID, Task: tr})
			p.res.Ops = append(p.res.Ops,
				sched.Check(sched.TableJobRuns, run.ID, rr.idx),
				sched.Check(sched.TableTasks, run.TaskID, 0),
				sched.Put(sched.TableJobRuns, run.ID, &run))
			p.res.Events = append(p.res.Events, api.NewEvent(api.EventJobRun, &run))
			placed[job.Name] = append(placed[job.Name], *o)
			p.launched = append(p.launched, rr.key)
			break
		}
	}
	for i, o := range offers {
		if used[i] {
			continue
		}
		// Short refusals: a run that becomes ready (a retry, the next
		// occurrence) must not wait out the allocator's default refusal.
		d := sched.Decline{OfferID: o.ID, RefuseFor: 50 * time.Millisecond}
		if len(reasons[i]) > 0 {
			d.RefuseFor = time.Second
		}
		for r := range reasons[i] {
			d.Reasons = append(d.Reasons, r)
		}
		sort.Strings(d.Reasons)
		p.res.Declines = append(p.res.Declines, d)
	}
	return p
}

func fits(need, free api.Resources) string {
	switch {
	case need.Cpus > free.Cpus+1e-9:
		return "InsufficientCpus"
	case need.Mem > free.Mem+1e-9:
		return "InsufficientMemory"
	case need.Disk > free.Disk+1e-9:
		return "InsufficientDisk"
	}
	return ""
}

// runningPlacements maps each job to the offers-shaped places its live
// tasks run on (for UNIQUE and MAX_PER).
func runningPlacements(st *sched.Store, offers []api.Offer) map[string][]api.Offer {
	byAgent := map[string]api.Offer{}
	for _, o := range offers {
		byAgent[o.AgentID] = o
	}
	out := map[string][]api.Offer{}
	st.Read(func(_ uint64, t map[string]map[string]*sched.Entry) {
		for _, e := range t[sched.TableTasks] {
			tr := e.Value.(*sched.TaskRecord)
			if tr.Task.Framework != frameworkName || api.Terminal(tr.Task.State) {
				continue
			}
			o, ok := byAgent[tr.Task.SlaveID]
			if !ok {
				o = api.Offer{AgentID: tr.Task.SlaveID, Hostname: tr.Task.Host, Site: tr.Task.Site}
			}
			out[tr.Task.Name] = append(out[tr.Task.Name], o)
		}
	})
	return out
}

// taskFor builds the task of a run's attempt.
func taskFor(job *api.Job, run *api.JobRun, o *api.Offer, now time.Time) sched.TaskRecord {
	env := map[string]string{}
	for _, v := range job.EnvironmentVariables {
		if v.Name != "" {
			env[v.Name] = v.Value
		}
	}
	env["CHRONOS_JOB_NAME"] = job.Name
	env["CHRONOS_JOB_OWNER"] = job.Owner
	env["CHRONOS_JOB_RUN_TIME"] = run.ScheduledAt
	env["CHRONOS_JOB_RUN_ATTEMPT"] = fmt.Sprint(run.Attempt - 1)
	env["CHRONOS_RESOURCE_CPU"] = fmt.Sprint(job.Cpus)
	env["CHRONOS_RESOURCE_MEM"] = fmt.Sprint(job.Mem)
	env["CHRONOS_RESOURCE_DISK"] = fmt.Sprint(job.Disk)
	env["HOST"] = o.Hostname
	env["mesos_task_id"] = run.TaskID
	env["MESOS_TASK_ID"] = run.TaskID

	spec := api.TaskSpec{
		Env:                  env,
		User:                 job.RunAsUser,
		Resources:            api.Resources{Cpus: job.Cpus, Mem: job.Mem, Disk: job.Disk},
		MaxCompletionSeconds: float64(job.MaxCompletionTime),
		Fetch:                job.Fetch,
	}
	for _, u := range job.Uris {
		spec.Fetch = append(spec.Fetch, api.Fetch{URI: u, Extract: true})
	}
	args := append(append([]string{}, job.Arguments...), run.Arguments...)
	if job.Shell {
		cmd := job.Command
		if len(args) > 0 {
			cmd = strings.TrimSpace(cmd + " " + strings.Join(args, " "))
		}
		spec.Cmd = &cmd
	} else if job.Command != "" {
		spec.Args = append([]string{job.Command}, args...)
	} else {
		spec.Args = args
	}
	if c := job.Container; c != nil && c.Image != "" {
		d := &api.Docker{Image: c.Image, Network: strings.ToUpper(c.Network), ForcePullImage: c.ForcePullImage}
		for _, p := range c.Parameters {
			k := p.Key
			if k == "" {
				k = p.Name
			}
			d.Parameters = append(d.Parameters, api.Parameter{Key: k, Value: p.Value})
		}
		typ := strings.ToUpper(c.Type)
		if typ == "" {
			typ = "DOCKER"
		}
		spec.Container = &api.Container{Type: typ, Docker: d, Volumes: c.Volumes, PortMappings: c.PortMappings}
	}
	return sched.TaskRecord{
		Task: api.Task{
			ID:        run.TaskID,
			AppID:     "/" + job.Name,
			Version:   ts(now),
			Framework: frameworkName,
			Name:      job.Name,
		},
		Spec: spec,
		Goal: api.GoalRun,
	}
}
