package marathon

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// A reconcile pass is planned, then applied. planReconcile is pure: from a
// view of the store and a copy of what the framework keeps in memory it
// returns the writes to make, in order, and the bookkeeping to update.
// reconcilePass reads the inputs, plans, and applies the result.

// reconBook is what passes remember of tasks between passes. Only passes
// read or write it, under reconMu.
type reconBook struct {
	doomed   map[string]time.Time // task id → found unhealthy at
	ended    map[string]bool      // task ids whose end was counted in the backoff
	failures map[string][]int     // task id → consecutive failures per check, as last seen
}

func newReconBook() reconBook {
	return reconBook{doomed: map[string]time.Time{}, ended: map[string]bool{}, failures: map[string][]int{}}
}

// tokenBucket rate-limits health kills: one token per HealthKillEvery, at
// most HealthKillBurst saved up.
type tokenBucket struct {
	tokens   float64
	refilled time.Time
}

// take refills the bucket up to now and takes one token if there is one.
func (b *tokenBucket) take(now time.Time, every time.Duration, burst int) bool {
	if !b.refilled.IsZero() {
		b.tokens += now.Sub(b.refilled).Seconds() / every.Seconds()
	}
	b.refilled = now
	if max := float64(burst); b.tokens > max {
		b.tokens = max
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// reconInput is everything a pass decides from. planReconcile does not
// modify any of it.
type reconInput struct {
	v    *view
	only map[string]bool // the apps to look at; nil: all of them (full)
	full bool            // a full pass: also forget tasks no longer stored
	now  time.Time
	cfg  Config
	book *reconBook
	// backoff is a copy of the launch backoff per app.
	backoff map[string]backoffState
	// wants are the apps that missed instances at the last pass (nil
	// before the first).
	wants  map[string]bool
	bucket tokenBucket
}

// reconStep is one write to the store, or (publish) events only published.
type reconStep struct {
	ops     []sched.Op
	events  []api.Event
	publish bool
}

// maxStepOps is where a pass cuts its writes into another step, so that
// one write stays small.
const maxStepOps = 256

// reconPlan is what a pass does: steps to apply in order, and the changes
// to the framework's memory.
type reconPlan struct {
	steps []reconStep

	ended    []string             // terminal tasks now counted in the backoff
	failures map[string][]int     // task id → consecutive failures now seen
	doomed   map[string]time.Time // tasks first found unhealthy in this pass
	forget   []string             // task ids no longer stored (full pass only)

	backoff     map[string]backoffState // apps whose backoff grew
	backoffDrop []string                // apps whose backoff ends (new version, app deleted)

	waiting   []string // apps that miss instances (waiting since now, unless already)
	satisfied []string // apps that miss none (their wait and offer stats end)

	wants  map[string]bool // apps that miss instances and may launch now
	bucket tokenBucket
}

// stepper collects ops and events into steps.
type stepper struct {
	steps  []reconStep
	ops    []sched.Op
	events []api.Event
}

func (s *stepper) cut() {
	if len(s.ops) == 0 && len(s.events) == 0 {
		return
	}
	s.steps = append(s.steps, reconStep{ops: s.ops, events: s.events})
	s.ops, s.events = nil, nil
}

func (s *stepper) cutIfFull() {
	if len(s.ops) >= maxStepOps {
		s.cut()
	}
}

func (s *stepper) putTask(te taskEntry, rec *sched.TaskRecord) {
	s.ops = append(s.ops, sched.Check(sched.TableTasks, rec.Task.ID, te.idx), sched.Put(sched.TableTasks, rec.Task.ID, rec))
}

func (s *stepper) deleteTask(te taskEntry) {
	id := te.rec.Task.ID
	s.ops = append(s.ops, sched.Check(sched.TableTasks, id, te.idx), sched.Delete(sched.TableTasks, id))
}

// planReconcile decides one pass: expunge ended tasks (recording failures
// and growing the backoff), kill tasks of deleted apps, give up on
// unreachable ones, report new health check failures, scale, upgrade,
// kill unhealthy tasks (rate-limited), and move deployments along.
func planReconcile(in reconInput) reconPlan {
	v, now := in.v, in.now
	p := reconPlan{
		failures: map[string][]int{},
		doomed:   map[string]time.Time{},
		backoff:  map[string]backoffState{},
		wants:    map[string]bool{},
		bucket:   in.bucket,
	}
	backoff := make(map[string]backoffState, len(in.backoff))
	for id, b := range in.backoff {
		backoff[id] = b
	}
	var s stepper
	seen := map[string]bool{}

	// The apps whose tasks are looked at, and those to scale and upgrade,
	// in id order.
	var appIDs []string
	if in.only == nil {
		appIDs = make([]string, 0, len(v.tasks))
		for id := range v.tasks {
			appIDs = append(appIDs, id)
		}
	} else {
		for id := range in.only {
			if _, ok := v.tasks[id]; ok {
				appIDs = append(appIDs, id)
			}
		}
	}
	sort.Strings(appIDs)
	apps := v.appIDs
	if in.only != nil {
		apps = nil
		for id := range in.only {
			if v.apps[id] != nil {
				apps = append(apps, id)
			}
		}
		sort.Strings(apps)
	}

	// Tasks: expunge ended ones, kill those of deleted apps, give up on
	// unreachable ones.
	for _, appID := range appIDs {
		app := v.apps[appID]
		for _, te := range v.tasks[appID] {
			rec := te.rec
			t := &rec.Task
			if in.full {
				seen[t.ID] = true
			}
			switch {
			case api.Terminal(t.State):
				counted := in.book.ended[t.ID]
				p.ended = append(p.ended, t.ID)
				if rec.Goal == api.GoalRun && app != nil && !counted && growsBackoff(t.State) {
					b, ok := backoff[app.ID]
					if !ok || b.version != app.Version {
						b = backoffState{version: app.Version}
					}
					b.delay = nextBackoff(b.delay, app)
					b.notBefore = now.Add(b.delay)
					backoff[app.ID], p.backoff[app.ID] = b, b
				}
				if rec.Goal == api.GoalRun && t.State != api.TaskKilled && app != nil {
					s.ops = append(s.ops, sched.Put(sched.TableMeta, metaLastFailure+appID, api.TaskFailure{
						AppID: appID, Host: t.Host, Message: t.Message, State: t.State, TaskID: t.ID,
						Timestamp: api.Timestamp(now), Version: t.Version, SlaveID: t.SlaveID,
					}))
				}
				s.deleteTask(te)
			case app == nil && rec.Goal == api.GoalRun:
				s.putTask(te, killed(rec, "app "+appID+" was deleted"))
			case t.State == api.TaskUnreachable || t.State == api.TaskUnknown:
				since, _ := time.Parse(time.RFC3339Nano, rec.UpdatedAt)
				if rec.Goal == api.GoalRun && inactive(app, rec, now) {
					// Replaced elsewhere; when its agent comes back it is told
					// to stop it, so no instance runs twice.
					s.putTask(te, killed(rec, "unreachable for longer than inactiveAfterSeconds; replaced"))
				} else if rec.Goal == api.GoalKill {
					exp := in.cfg.ExpungeAfter
					if app != nil && !app.UnreachableStrategy.Disabled {
						exp = time.Duration(app.UnreachableStrategy.ExpungeAfterSeconds * float64(time.Second))
					}
					if now.Sub(since) >= exp {
						s.deleteTask(te)
					}
				}
			}
			s.cutIfFull()
		}
	}

	// Failed health checks: failed_health_check_event for each new failure
	// (not state: published, not logged).
	var failedChecks []api.Event
	for _, appID := range appIDs {
		app := v.apps[appID]
		for _, te := range v.tasks[appID] {
			t := &te.rec.Task
			prev := in.book.failures[t.ID]
			cur := make([]int, len(t.HealthCheckResults))
			for i, r := range t.HealthCheckResults {
				cur[i] = r.ConsecutiveFailures
				if app != nil && i < len(app.HealthChecks) && r.ConsecutiveFailures > 0 && (i >= len(prev) || r.ConsecutiveFailures > prev[i]) {
					// Marathon's keys (FailedHealthCheckWrites): appId, healthCheck, taskId.
					failedChecks = append(failedChecks, api.NewEvent(api.EventFailedHealthCheck, map[string]any{
						"appId": appID, "taskId": t.ID, "healthCheck": app.HealthChecks[i],
					}))
				}
			}
			if len(cur) > 0 {
				p.failures[t.ID] = cur
			}
		}
	}
	if len(failedChecks) > 0 {
		// Published before the writes still pending, as they are not
		// stored and do not wait for them.
		s.steps = append(s.steps, reconStep{events: failedChecks, publish: true})
	}

	// Apps: scale, upgrade, health kills.
	if !in.full {
		for id := range in.wants {
			if !in.only[id] {
				p.wants[id] = true
			}
		}
	}
	for _, appID := range apps {
		app := v.apps[appID]
		if v.held(appID) {
			continue
		}
		at := classify(app, v.tasks[appID], func(r *sched.TaskRecord) bool { return inactive(app, r, now) })
		launch, kills := launchable(app, at)
		for _, te := range kills {
			s.putTask(te, killed(te.rec, ""))
		}
		// Unhealthy tasks: their replacements launch first (they do not
		// count as active); each is killed once the app is back to full
		// healthy strength or ReplaceTimeout has passed, rate-limited.
		for _, te := range at.unhealthy {
			t := &te.rec.Task
			first, ok := in.book.doomed[t.ID]
			if !ok {
				first = now
				p.doomed[t.ID] = now
			}
			if at.newUp+at.oldUp < app.Instances && now.Sub(first) < in.cfg.ReplaceTimeout {
				continue
			}
			if !p.bucket.take(now, in.cfg.HealthKillEvery, in.cfg.HealthKillBurst) {
				continue
			}
			s.putTask(te, killed(te.rec, "killed: failed health checks"))
			s.events = append(s.events, api.NewEvent(api.EventUnhealthyKill, map[string]any{
				"appId": appID, "taskId": t.ID, "instanceId": t.ID, "version": t.Version,
				"reason": "HealthCheckFailed", "host": t.Host, "slaveId": t.SlaveID,
			}))
		}
		if launch > 0 {
			delayed := false
			if b, ok := backoff[app.ID]; ok {
				if b.version != app.Version {
					delete(backoff, app.ID) // a new version resets the backoff
					p.backoffDrop = append(p.backoffDrop, app.ID)
				} else {
					delayed = b.notBefore.After(now)
				}
			}
			if !delayed {
				p.wants[appID] = true
			}
			p.waiting = append(p.waiting, appID)
		} else {
			p.satisfied = append(p.satisfied, appID)
		}
		s.cutIfFull()
	}
	if in.full {
		for _, m := range []map[string]bool{in.book.ended, keysOf(in.book.doomed), keysOf(in.book.failures)} {
			for id := range m {
				if !seen[id] {
					p.forget = append(p.forget, id)
				}
			}
		}
		sort.Strings(p.forget)
		p.forget = compactSorted(p.forget)
		ids := make([]string, 0, len(backoff))
		for id := range backoff {
			if v.apps[id] == nil {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		p.backoffDrop = append(p.backoffDrop, ids...)
	}
	s.cut()

	// Deployments, each in a write of its own.
	for _, de := range v.deployments {
		o, e := progress(v, de, now)
		s.ops = append(s.ops, o...)
		s.events = append(s.events, e...)
		s.cut()
	}
	p.steps = s.steps
	return p
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func compactSorted(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// reconcilePass reads a view and the framework's memory, plans a pass and
// applies it: the memory first, then the steps in order. A full pass looks
// at every app; otherwise only the apps changed since the last pass are,
// unless changedSince says a full pass is due.
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
	f.mu.Lock()
	in := reconInput{v: v, only: only, full: full, now: now, cfg: f.cfg, book: &f.book,
		backoff: make(map[string]backoffState, len(f.backoff)), wants: f.appWants, bucket: f.bucket}
	for id, b := range f.backoff {
		in.backoff[id] = *b
	}
	f.mu.Unlock()

	p := planReconcile(in)

	f.applyBook(p, now)
	errs := applySteps(ctx, st, p.steps)

	f.mu.Lock()
	f.recon.st, f.recon.index, f.recon.depApps = st, v.index, v.deploymentApps()
	f.recon.last = now
	if full {
		f.recon.lastFull = now
	}
	f.mu.Unlock()
	return errors.Join(errs...)
}

// applyBook writes a plan's changes to the framework's memory. The caller
// holds reconMu.
func (f *Framework) applyBook(p reconPlan, now time.Time) {
	b := &f.book
	for _, id := range p.ended {
		b.ended[id] = true
	}
	for id, c := range p.failures {
		b.failures[id] = c
	}
	for id, at := range p.doomed {
		b.doomed[id] = at
	}
	for _, id := range p.forget {
		delete(b.ended, id)
		delete(b.doomed, id)
		delete(b.failures, id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range p.backoffDrop {
		delete(f.backoff, id)
	}
	for id, bs := range p.backoff {
		bs := bs
		f.backoff[id] = &bs
	}
	for _, id := range p.waiting {
		if _, ok := f.since[id]; !ok {
			f.since[id] = now
		}
	}
	for _, id := range p.satisfied {
		delete(f.since, id)
		delete(f.stats, id)
	}
	f.bucket = p.bucket
	f.appWants = p.wants
	f.wants.Store(len(p.wants) > 0)
}

// applySteps applies a plan's steps in order. A step whose checks fail
// (a status update raced one of its tasks) is applied again task by task,
// so the others still go through.
func applySteps(ctx context.Context, st *sched.Store, steps []reconStep) []error {
	var errs []error
	for _, s := range steps {
		if s.publish {
			st.Publish(s.events...)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := st.Apply(actx, s.ops, s.events...)
		cancel()
		if errors.Is(err, sched.ErrConflict) {
			err = nil
			for _, unit := range splitUnits(s.ops) {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if _, e := st.Apply(actx, unit); e != nil && !errors.Is(e, sched.ErrConflict) {
					err = e
				}
				cancel()
			}
			if len(s.events) > 0 {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, _ = st.Apply(actx, nil, s.events...)
				cancel()
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
