package chronos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// badRequest is an input error: Chronos answers 400 (it uses require).
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func bad(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

var nameRE = regexp.MustCompile(`^[\w.-]+$`)

// decodeJob reads a job definition, filling Chronos's defaults for the
// fields it does not set.
func (f *Framework) decodeJob(raw []byte) (api.Job, error) {
	j := api.Job{Shell: true, Retries: f.cfg.DefaultRetries}
	raw, err := numbersFromStrings(raw, "cpus", "mem", "disk")
	if err != nil {
		return j, err
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return j, bad("the job is not valid JSON: %v", err)
	}
	if j.Cpus == 0 {
		j.Cpus = f.cfg.DefaultCpus
	}
	if j.Mem == 0 {
		j.Mem = f.cfg.DefaultMem
	}
	if j.Disk == 0 {
		j.Disk = f.cfg.DefaultDisk
	}
	if j.Epsilon == "" {
		j.Epsilon = isoDuration(f.cfg.TaskEpsilon)
	}
	return j, nil
}

// numbersFromStrings turns the given top-level keys of a JSON object from
// strings into numbers, as Chronos's JobDeserializer reads "cpus":"0.5"
// (its docs' docker example posts them so). A string that is not a number
// is a 400 naming the key.
func numbersFromStrings(raw []byte, keys ...string) ([]byte, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw, nil // not an object: the decoder below says so
	}
	changed := false
	for _, k := range keys {
		v, ok := m[k]
		if !ok || len(v) == 0 || v[0] != '"' {
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, bad("%s: %v", k, err)
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, bad("%s: %q is not a number", k, s)
		}
		m[k] = json.RawMessage(strconv.FormatFloat(n, 'g', -1, 64))
		changed = true
	}
	if !changed {
		return raw, nil
	}
	return json.Marshal(m)
}

func isoDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("PT%dS", int64(d/time.Second))
	}
	return fmt.Sprintf("PT%gS", d.Seconds())
}

// validate checks everything about a job that does not depend on other
// jobs. scheduled says which resource it came through.
func (f *Framework) validate(j *api.Job, scheduled bool, now time.Time) error {
	if !nameRE.MatchString(j.Name) {
		return bad("Job name '%s' is invalid: use letters, digits, '_', '-' and '.'", j.Name)
	}
	if scheduled {
		if len(j.Parents) > 0 {
			return bad("Job '%s' has parents: post dependent jobs to /scheduler/dependency", j.Name)
		}
		s, err := ParseSchedule(j.Schedule, j.ScheduleTimeZone, now)
		if err != nil {
			return bad("Cannot parse schedule '%s' (%v)", j.Schedule, err)
		}
		if iso, ok := s.(*ISOSchedule); ok {
			// Pin an empty start so a restart does not move it.
			if m := isoRE.FindStringSubmatch(strings.TrimSpace(j.Schedule)); m != nil && m[2] == "" {
				j.Schedule = iso.String(m[3])
			}
			if iso.Repeat == 0 {
				j.Disabled = true
			}
		}
	} else {
		if len(j.Parents) == 0 {
			return bad("Job '%s' has no parents: post scheduled jobs to /scheduler/iso8601", j.Name)
		}
		j.Schedule, j.ScheduleTimeZone = "", ""
		seen := map[string]bool{}
		for _, p := range j.Parents {
			if p == j.Name {
				return bad("Job '%s' cannot be its own parent", j.Name)
			}
			if seen[p] {
				return bad("Job '%s' lists parent '%s' twice", j.Name, p)
			}
			seen[p] = true
		}
	}
	if j.Command == "" && (j.Container == nil || j.Container.Image == "") && len(j.Arguments) == 0 {
		return bad("Job '%s' has no command (and no container image)", j.Name)
	}
	if _, err := ParseEpsilon(j.Epsilon, f.cfg.TaskEpsilon); err != nil {
		return bad("Job '%s': %v", j.Name, err)
	}
	if j.Cpus < 0 || j.Mem < 0 || j.Disk < 0 {
		return bad("Job '%s': cpus, mem and disk must not be negative", j.Name)
	}
	if j.Retries < 0 {
		return bad("Job '%s': retries must not be negative", j.Name)
	}
	if j.MaxCompletionTime < 0 {
		return bad("Job '%s': maxCompletionTime must not be negative", j.Name)
	}
	if c := j.Container; c != nil {
		if t := strings.ToUpper(c.Type); t != "" && t != "DOCKER" && t != "MESOS" {
			return bad("Job '%s': container type %q is not DOCKER or MESOS", j.Name, c.Type)
		}
		if c.Image == "" {
			return bad("Job '%s': container has no image", j.Name)
		}
	}
	for _, e := range j.EnvironmentVariables {
		if e.Name == "" {
			return bad("Job '%s': an environment variable has no name", j.Name)
		}
	}
	if err := validateConstraints(j.Constraints); err != nil {
		return bad("Job '%s': %v", j.Name, err)
	}
	return nil
}

// update loads the state, lets fn change it and commits, retrying when the
// state changed underneath.
func (f *Framework) update(ctx context.Context, fn func(w *world) error) error {
	m := f.master()
	if m == nil {
		return errors.New("chronos: the framework is not mounted")
	}
	for attempt := 0; ; attempt++ {
		w := loadWorld(m.Store(), &f.cfg, f.now(), &f.states, false)
		if err := fn(w); err != nil {
			return err
		}
		ops := w.ops()
		if len(ops) == 0 {
			return nil
		}
		_, err := m.Store().Apply(ctx, ops, w.events...)
		if errors.Is(err, sched.ErrConflict) && attempt < 50 && ctx.Err() == nil {
			// The loop wrote the same runs meanwhile: its passes are
			// short and bounded, so a request (a DELETE above all) gets
			// its turn within a few retries.
			time.Sleep(time.Duration(attempt) * time.Millisecond)
			continue
		}
		if err == nil {
			f.poke()
			if w.revive {
				m.Revive()
			}
		}
		return err
	}
}

// ensureState loads the state of a job being created, which may survive
// from an earlier job of the same name (run ids never repeat).
func (f *Framework) ensureState(w *world, jv *jobView) {
	if jv.stExists || jv.stIdx != 0 {
		return
	}
	if e, ok := f.master().Store().Get(sched.TableMeta, stateKeyPrefix+jv.job.Name); ok {
		jv.st, jv.stIdx, jv.stExists = decodeState(&e), e.ModifyIndex, true
		jv.st.LastScheduled, jv.st.ScheduleKey, jv.st.ParentSuccess = "", "", nil
		jv.dirtyState = true
	}
}

// Submit creates or replaces a job. It checks the schedule or parents,
// refuses unknown parents and cycles, and writes the job in one Apply.
func (f *Framework) Submit(ctx context.Context, j api.Job, scheduled bool) error {
	if err := f.validate(&j, scheduled, f.now()); err != nil {
		return err
	}
	return f.update(ctx, func(w *world) error {
		for _, p := range j.Parents {
			pv, ok := w.jobs[p]
			if !ok {
				return bad("Parent job '%s' of '%s' not found", p, j.Name)
			}
			w.checks = append(w.checks, sched.Check(sched.TableJobs, p, pv.idx))
		}
		if cyc := cycle(w, j.Name, j.Parents); cyc != nil {
			return bad("Job '%s' would make a dependency cycle: %s", j.Name, strings.Join(cyc, " -> "))
		}
		jv, exists := w.jobs[j.Name]
		if !exists {
			jv = &jobView{}
			w.jobs[j.Name] = jv
		}
		old := jv.job
		if exists {
			// Counters posted with a job (a job moved from another
			// Chronos) are kept, as Chronos keeps them; those the update
			// does not carry keep the scheduler's values.
			keepCounters(&j, &old)
		}
		jv.job, jv.dirtyJob = j, true
		f.ensureState(w, jv)
		if !exists || old.Schedule != j.Schedule || old.ScheduleTimeZone != j.ScheduleTimeZone {
			// Occurrences before the job (or its new schedule) existed are
			// neither run nor counted as missed.
			st := w.state(j.Name)
			st.LastScheduled, st.ScheduleKey = "", ""
			if j.Schedule != "" {
				st.ScheduleKey = scheduleKey(&j)
				st.LastScheduled = ts(w.now.Add(-f.epsilon(&j)))
			}
		}
		if ps := jv.st.ParentSuccess; len(ps) > 0 {
			keep := map[string]string{}
			for _, p := range j.Parents {
				if t, ok := ps[p]; ok {
					keep[p] = t
				}
			}
			if len(keep) != len(ps) {
				w.state(j.Name).ParentSuccess = keep
			}
		}
		return nil
	})
}

// keepCounters fills the run counters j was posted without from old.
func keepCounters(j, old *api.Job) {
	if j.SuccessCount == 0 {
		j.SuccessCount = old.SuccessCount
	}
	if j.ErrorCount == 0 {
		j.ErrorCount = old.ErrorCount
	}
	if j.LastSuccess == "" {
		j.LastSuccess = old.LastSuccess
	}
	if j.LastError == "" {
		j.LastError = old.LastError
	}
	if j.ErrorsSinceLastSuccess == 0 {
		j.ErrorsSinceLastSuccess = old.ErrorsSinceLastSuccess
	}
}

// cycle returns the path of a cycle that giving name these parents makes.
func cycle(w *world, name string, parents []string) []string {
	var path []string
	seen := map[string]bool{}
	var visit func(n string) bool
	visit = func(n string) bool {
		path = append(path, n)
		if n == name {
			return true
		}
		if !seen[n] {
			seen[n] = true
			if jv, ok := w.jobs[n]; ok {
				for _, p := range jv.job.Parents {
					if visit(p) {
						return true
					}
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	for _, p := range parents {
		path = []string{name}
		if visit(p) {
			// path runs child → ... → parent; show it as dependencies flow.
			for i, k := 0, len(path)-1; i < k; i, k = i+1, k-1 {
				path[i], path[k] = path[k], path[i]
			}
			return path
		}
	}
	return nil
}

func notFound(name string) error { return bad("Job '%s' not found", name) }

// Delete removes a job as Chronos does: its dependants inherit its parents
// (or its schedule), its queued runs and ledger go, its tasks are killed.
func (f *Framework) Delete(ctx context.Context, name string) error {
	return f.update(ctx, func(w *world) error {
		jv, ok := w.jobs[name]
		if !ok {
			return notFound(name)
		}
		for _, c := range w.children(name) {
			cv := w.jobs[c]
			var ps []string
			for _, p := range cv.job.Parents {
				if p != name {
					ps = append(ps, p)
				}
			}
			if jv.job.Schedule != "" && len(ps) == 0 {
				cv.job.Schedule, cv.job.ScheduleTimeZone = jv.job.Schedule, jv.job.ScheduleTimeZone
			} else {
				for _, p := range jv.job.Parents {
					if !contains(ps, p) {
						ps = append(ps, p)
					}
				}
			}
			cv.job.Parents = ps
			cv.dirtyJob = true
			if st := w.state(c); st.ParentSuccess != nil {
				delete(st.ParentSuccess, name)
			}
		}
		jv.deleted = true
		for _, id := range w.byJob[name] {
			rv := w.runs[id]
			if rv.run.State == RunRunning {
				w.killTask(rv.run.TaskID)
			}
			rv.del = true
		}
		for _, r := range f.Runs(name) {
			if !active(r.State) {
				w.runs[r.ID] = &runView{del: true}
			}
		}
		st := w.state(name) // kept, so run ids of a later job of this name never repeat
		st.LastScheduled, st.ScheduleKey, st.ParentSuccess = "", "", nil
		return nil
	})
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// RunNow queues a manual run of a job, with extra arguments.
func (f *Framework) RunNow(ctx context.Context, name string, args []string) (string, error) {
	var id string
	err := f.update(ctx, func(w *world) error {
		if _, ok := w.jobs[name]; !ok {
			return notFound(name)
		}
		queued := 0
		for _, rid := range w.byJob[name] {
			if w.runs[rid].run.State == RunQueued {
				queued++
			}
		}
		if queued >= MaxQueuedRuns {
			return bad("Job '%s' already has %d queued runs, the limit: wait for them to start or kill them", name, queued)
		}
		id = w.newRun(name, TriggerManual, w.now, args).run.ID
		return nil
	})
	return id, err
}

// MarkSuccess records a success of a job and starts dependants whose
// parents have all succeeded.
func (f *Framework) MarkSuccess(ctx context.Context, name string) error {
	return f.update(ctx, func(w *world) error {
		if _, ok := w.jobs[name]; !ok {
			return notFound(name)
		}
		w.succeed(name)
		return nil
	})
}

// Kill kills a job's running tasks and cancels its queued runs; killed
// runs fail without retry.
func (f *Framework) Kill(ctx context.Context, name string) error {
	return f.update(ctx, func(w *world) error {
		if _, ok := w.jobs[name]; !ok {
			return notFound(name)
		}
		for _, id := range w.byJob[name] {
			rv := w.runs[id]
			switch rv.run.State {
			case RunRunning:
				w.killTask(rv.run.TaskID)
				w.setRun(rv, RunFailed, "killed by request")
			case RunQueued, RunRetrying:
				w.setRun(rv, RunSkipped, "cancelled by a kill request")
			}
		}
		return nil
	})
}

// Runs returns a job's ledger, oldest first.
func (f *Framework) Runs(name string) []api.JobRun {
	var out []api.JobRun
	for _, e := range f.master().Store().List(sched.TableJobRuns) {
		if r := e.Value.(*api.JobRun); r.Job == name {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ID < out[k].ID })
	return out
}
