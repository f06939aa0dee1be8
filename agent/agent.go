package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"log/slog"

	"github.com/weftnet/weft/sched/api"
)

// Agent runs the tasks the master assigns to this node and reports their
// status and health.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	rep       *reporter
	sandboxes string

	mu        sync.Mutex
	tasks     map[string]*taskRun // by task id, running and finished
	recovered map[string]recoveredHandle
	index     uint64
	lastSync  time.Time // last successful assignments answer
	syncErr   error
	synced    bool // at least one assignments answer was reconciled
	lostSent  map[string]bool
	// unreachable: tasks whose assignment says TASK_UNREACHABLE or
	// TASK_UNKNOWN, re-reported at each new index (reconcileDelta).
	unreachable map[string]bool
	// unassigned: tasks the master no longer assigns that were still
	// running when told; a reconcile forgets them once they have ended.
	unassigned map[string]bool
	caps       []string
	probed     bool
	problems   []string
	cleaned    bool           // executors' Cleanup ran (loop goroutine only)
	wg         sync.WaitGroup // task goroutines
	runCtx     context.Context
}

type recoveredHandle struct {
	h    Handle
	exec Executor
}

// taskRun is one task on this agent. Its fields are guarded by Agent.mu.
type taskRun struct {
	id      string
	a       api.Assignment
	exec    Executor
	sandbox string
	handle  Handle
	state   string // last state reported
	// reconciled is the assignments index at which this task's state was
	// last re-reported to a master that thought it unreachable.
	reconciled uint64
	startedAt  time.Time
	killReq    bool
	overtime   bool // killed for exceeding MaxCompletionSeconds
	killing    bool
	finished   bool
	doneAt     time.Time
	exit       *Exit
	cancel     context.CancelFunc // cancels start and health checks
	done       chan struct{}      // closed when the task has ended and its final status is queued
}

// New returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.ID == "" {
		return nil, errors.New("agent: the agent id is empty: give the node an id")
	}
	if cfg.Master == nil {
		return nil, errors.New("agent: no master client: tell the agent where the master is")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: no data dir: give the agent a --data-dir")
	}
	cfg = cfg.withDefaults()
	a := &Agent{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "agent"),
		sandboxes:   filepath.Join(cfg.DataDir, "sandboxes"),
		tasks:       map[string]*taskRun{},
		recovered:   map[string]recoveredHandle{},
		lostSent:    map[string]bool{},
		unreachable: map[string]bool{},
		unassigned:  map[string]bool{},
	}
	if err := os.MkdirAll(a.sandboxes, 0o755); err != nil {
		return nil, fmt.Errorf("agent: creating the sandbox dir: %w", err)
	}
	if len(a.cfg.Executors) == 0 {
		pc := DefaultProcessConfig(filepath.Join(cfg.DataDir, "process"))
		pc.Logger = a.log
		pe, err := NewProcessExecutor(pc)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.cfg.Executors = []Executor{pe}
	}
	a.rep = newReporter(a)
	return a, nil
}

// Run recovers what still runs from a previous agent, then reconciles
// against the master's assignments until ctx ends. An unreachable master
// never stops a task.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	a.runCtx = ctx
	a.mu.Unlock()
	for _, ex := range a.cfg.Executors {
		hs, err := ex.Recover(ctx)
		if err != nil {
			a.log.Warn("recovering tasks failed", "executor", ex.Name(), "err", err)
			continue
		}
		a.mu.Lock()
		for id, h := range hs {
			a.recovered[id] = recoveredHandle{h: h, exec: ex}
		}
		a.mu.Unlock()
		if len(hs) > 0 {
			a.log.Info("recovered running tasks", "executor", ex.Name(), "count", len(hs))
		}
	}
	a.probe(ctx)

	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); a.rep.run(ctx) }()
	go func() { defer bg.Done(); a.every(ctx, a.cfg.GCInterval, func() { a.gcSandboxes() }) }()
	go func() { defer bg.Done(); a.every(ctx, a.cfg.ProbeInterval, func() { a.probe(ctx) }) }()

	a.loop(ctx)
	// Stopping on purpose (the tasks keep running, the agent comes back):
	// tell the master it polled, so the end of the poll is not taken for
	// the agent's death.
	if n, ok := a.cfg.Master.(interface {
		AgentStopping(context.Context, string) error
	}); ok {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := n.AgentStopping(sctx, a.cfg.ID); err != nil {
			a.log.Info("could not tell the master this agent is stopping", "err", err)
		}
		cancel()
	}
	bg.Wait()
	if a.cfg.StopTasksOnExit {
		a.stopAll()
		// Tell the master, if it still listens, that the tasks were killed.
		fctx, cancel := context.WithTimeout(context.Background(), a.cfg.FlushTimeout)
		a.rep.flush(fctx)
		cancel()
	} else {
		a.abandonAll()
	}
	return nil
}

// abandoner is a handle that does more than watch its task once started
// (a pod instance ends its other containers when one ends): abandon stops
// that, for an agent that stops and leaves its tasks to the next one.
type abandoner interface{ abandon() }

// abandonAll leaves every task to the agent that comes back (in the same
// process, as tests and an embedding program restart it, the old handles
// would otherwise keep acting on tasks the new agent has re-adopted).
func (a *Agent) abandonAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.tasks {
		if ab, ok := t.handle.(abandoner); ok {
			ab.abandon()
		}
	}
	for _, rh := range a.recovered {
		if ab, ok := rh.h.(abandoner); ok {
			ab.abandon()
		}
	}
}

func (a *Agent) every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// assignmentDeltas is the optional delta form of MasterClient.Assignments
// (*api.Client and *api.MasterSet have it): after the first answer, only
// what changed since the index sent.
type assignmentDeltas interface {
	AssignmentChanges(ctx context.Context, agentID string, after uint64, wait time.Duration) (*api.Assignments, error)
}

// loop is the blocking-query reconcile loop. With a master client that
// asks for deltas, it keeps its assignments in a mirror and reconciles
// against the whole list the mirror holds.
func (a *Agent) loop(ctx context.Context) {
	attempt := 0
	dc, deltas := a.cfg.Master.(assignmentDeltas)
	var mirror api.AssignmentMirror
	for ctx.Err() == nil {
		a.mu.Lock()
		after := a.index
		wait := a.cfg.AssignmentsWait
		if a.syncErr != nil {
			// After a failure, resync at once (from whichever master
			// answers now) rather than wait for the next change.
			wait = 0
		}
		a.mu.Unlock()
		var as *api.Assignments
		var err error
		if deltas {
			as, err = dc.AssignmentChanges(ctx, a.cfg.ID, after, wait)
		} else {
			as, err = a.cfg.Master.Assignments(ctx, a.cfg.ID, after, wait)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.mu.Lock()
			a.syncErr = err
			a.mu.Unlock()
			if attempt == 0 {
				// The first failure after an answer: the master client
				// has moved on to another master, ask it at once.
				attempt++
				a.log.Info("the master did not answer; asking again (another master, where there is one)", "err", err)
				continue
			}
			d := backoff(a.cfg.RetryMin, a.cfg.RetryMax, attempt-1)
			attempt++
			a.log.Warn("cannot reach the master for assignments; tasks keep running", "retry_in", d, "err", err)
			sleepCtx(ctx, d)
			continue
		}
		if as.Index == 0 {
			// The master has not restored its state yet; ask again shortly.
			d := backoff(a.cfg.RetryMin, a.cfg.RetryMax, attempt)
			attempt++
			sleepCtx(ctx, d)
			continue
		}
		attempt = 0
		// A delta is reconciled alone: the work follows the change, not
		// the number of tasks on the node. A whole list (the first answer,
		// a new master) is reconciled whole.
		delta := deltas && as.Delta && mirror.Index() != 0
		if deltas {
			mirror.Apply(as)
			if !delta || !a.cleaned {
				delta, as = false, mirror.Assignments()
			}
		}
		a.mu.Lock()
		a.syncErr = nil
		a.lastSync = a.cfg.Now()
		a.index = as.Index // an index that went backwards (a new master) is taken as is
		a.mu.Unlock()
		if !a.cleaned {
			// Once, before anything starts: remove what earlier agents left
			// behind (containers, records) that the master no longer assigns.
			a.cleaned = true
			keep := map[string]bool{}
			for _, asg := range as.Tasks {
				if !api.Terminal(asg.Task.State) {
					keep[asg.Task.ID] = true
				}
			}
			a.cleanup(keep)
		}
		if delta {
			a.reconcileDelta(ctx, as)
		} else {
			a.reconcile(ctx, as)
		}
	}
}

// reconcile makes what runs here match the assignments.
func (a *Agent) reconcile(ctx context.Context, as *api.Assignments) {
	if as.Index == 0 {
		// A master that has not restored its state yet answers with index 0:
		// its empty list must not stop anything.
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.synced = true
	seen := make(map[string]bool, len(as.Tasks))
	a.unreachable = map[string]bool{}
	a.unassigned = map[string]bool{}
	for _, asg := range as.Tasks {
		seen[asg.Task.ID] = true
		a.reconcileOneLocked(ctx, asg, as.Index)
	}
	for id := range a.tasks {
		if !seen[id] {
			a.unassignedLocked(id)
		}
	}
	for id := range a.recovered {
		if !seen[id] {
			a.unassignedLocked(id)
		}
	}
	for id := range a.lostSent {
		if !seen[id] {
			delete(a.lostSent, id)
		}
	}
}

// reconcileDelta applies one delta answer: the assignments added or
// changed, the tasks no longer assigned, and the tasks the master still
// thinks unreachable (reported again at every new index, as a whole
// reconcile would).
func (a *Agent) reconcileDelta(ctx context.Context, as *api.Assignments) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.synced = true
	changed := make(map[string]bool, len(as.Tasks))
	for _, asg := range as.Tasks {
		changed[asg.Task.ID] = true
		a.reconcileOneLocked(ctx, asg, as.Index)
	}
	for id := range a.unreachable {
		if t := a.tasks[id]; t != nil && !changed[id] {
			a.reconcileOneLocked(ctx, t.a, as.Index)
		}
	}
	for id := range a.unassigned {
		if !changed[id] {
			a.unassignedLocked(id)
		}
	}
	for _, id := range as.Removed {
		if !changed[id] {
			a.unassignedLocked(id)
			delete(a.lostSent, id)
		}
	}
}

// reconcileOneLocked makes task asg.Task.ID match its assignment.
func (a *Agent) reconcileOneLocked(ctx context.Context, asg api.Assignment, index uint64) {
	id := asg.Task.ID
	delete(a.unassigned, id)
	if asg.Task.State == api.TaskUnreachable || asg.Task.State == api.TaskUnknown {
		a.unreachable[id] = true
	} else {
		delete(a.unreachable, id)
	}
	t := a.tasks[id]
	if t != nil {
		t.a = asg
		switch {
		case t.finished || t.killReq:
		case asg.Goal == api.GoalKill:
			a.killLocked(t, "killed on request")
		case api.Terminal(asg.Task.State):
			// The master has given up on this task (lost, replaced):
			// it must not run twice.
			a.log.Info("killing a task the master considers ended", "task", id, "state", asg.Task.State)
			a.killLocked(t, "killed: the master considers this task "+asg.Task.State)
		case (asg.Task.State == api.TaskUnreachable || asg.Task.State == api.TaskUnknown) &&
			t.handle != nil && t.state != "" && t.reconciled != index:
			// The master lost sight of this agent (gossip declared it
			// failed) and it is back: tell it what really runs, before
			// the framework replaces a task that never stopped.
			t.reconciled = index
			a.log.Info("reporting a task the master thought unreachable", "task", id, "state", t.state)
			st := a.status(id, t.state, "agent reachable again")
			st.IPAddresses = t.handle.IPAddresses()
			st.HealthCheckResults = t.a.Task.HealthCheckResults
			a.rep.enqueue(st)
		}
		return
	}
	if api.Terminal(asg.Task.State) {
		if rh, ok := a.recovered[id]; ok {
			delete(a.recovered, id)
			a.log.Info("stopping a recovered task the master considers ended", "task", id, "state", asg.Task.State)
			go func() { _ = rh.h.Stop(context.Background(), a.cfg.DefaultKillGrace) }()
		}
		return
	}
	if rh, ok := a.recovered[id]; ok {
		delete(a.recovered, id)
		t := a.adoptLocked(ctx, asg, rh)
		if asg.Goal == api.GoalKill {
			a.killLocked(t, "killed on request")
		}
		return
	}
	if asg.Goal == api.GoalKill {
		// Never started here (or lost with a previous agent): it is not
		// running, so it is killed as far as this agent can tell.
		if !a.lostSent[id] {
			a.lostSent[id] = true
			a.rep.enqueue(a.status(id, api.TaskKilled, "killed before it ran on this agent"))
		}
		return
	}
	if a.startedBefore(asg) {
		if !a.lostSent[id] {
			a.lostSent[id] = true
			a.log.Warn("task was not recovered after an agent restart", "task", id, "state", asg.Task.State)
			a.rep.enqueue(a.status(id, api.TaskLost, "agent restarted; task was not recovered"))
		}
		return
	}
	a.startLocked(ctx, asg)
}

// unassignedLocked ends task id, which the master no longer assigns here.
func (a *Agent) unassignedLocked(id string) {
	delete(a.unreachable, id)
	if t := a.tasks[id]; t == nil {
		delete(a.unassigned, id)
	} else {
		if t.finished {
			delete(a.tasks, id)
			delete(a.unassigned, id)
			return
		}
		a.unassigned[id] = true // (already there when called from its range)
		if !t.killReq {
			a.log.Info("killing a task the master no longer assigns here", "task", id)
			a.killLocked(t, "killed: the master no longer assigns this task to this agent")
		}
	}
	if rh, ok := a.recovered[id]; ok {
		delete(a.recovered, id)
		a.log.Info("stopping a recovered task the master no longer assigns here", "task", id)
		go func() { _ = rh.h.Stop(context.Background(), a.cfg.DefaultKillGrace) }()
	}
}

func (a *Agent) cleanup(keep map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ex := range a.cfg.Executors {
		if err := ex.Cleanup(ctx, keep); err != nil {
			a.log.Warn("executor cleanup failed", "executor", ex.Name(), "err", err)
		}
	}
}

// startedBefore reports whether a task that this agent does not run was
// started by a previous incarnation of the agent.
func (a *Agent) startedBefore(asg api.Assignment) bool {
	switch asg.Task.State {
	case "", api.TaskStaging:
	default:
		return true
	}
	_, err := os.Stat(a.sandboxDir(asg.Task.ID))
	return err == nil
}

func (a *Agent) sandboxDir(id string) string {
	return filepath.Join(a.sandboxes, sanitizeID(id))
}

// status builds a status update.
func (a *Agent) status(id, state, msg string) api.TaskStatus {
	return api.TaskStatus{TaskID: id, State: state, Message: msg, Timestamp: a.cfg.Now()}
}

// report queues a status update and remembers the state.
func (a *Agent) reportLocked(t *taskRun, st api.TaskStatus) {
	t.state = st.State
	a.rep.enqueue(st)
}

func (a *Agent) executorFor(spec api.TaskSpec) Executor {
	for _, ex := range a.cfg.Executors {
		if ex.Handles(spec) {
			return ex
		}
	}
	return nil
}

// startLocked launches a new task in the background.
func (a *Agent) startLocked(ctx context.Context, asg api.Assignment) {
	id := asg.Task.ID
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &taskRun{
		id:      id,
		a:       asg,
		sandbox: a.sandboxDir(id),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	a.tasks[id] = t
	a.reportLocked(t, a.status(id, api.TaskStarting, ""))
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runTask(tctx, t)
	}()
}

// adoptLocked takes over a task recovered from a previous agent.
func (a *Agent) adoptLocked(ctx context.Context, asg api.Assignment, rh recoveredHandle) *taskRun {
	id := asg.Task.ID
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &taskRun{
		id: id, a: asg, exec: rh.exec, sandbox: a.sandboxDir(id),
		handle: rh.h, cancel: cancel, done: make(chan struct{}),
		startedAt: a.cfg.Now(),
	}
	a.tasks[id] = t
	a.log.Info("re-adopted a task that survived the agent restart", "task", id)
	st := a.status(id, api.TaskRunning, "recovered after an agent restart")
	st.IPAddresses = rh.h.IPAddresses()
	a.reportLocked(t, st)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.watch(tctx, t, rh.h)
	}()
	return t
}

// runTask fetches, starts and watches one task.
func (a *Agent) runTask(ctx context.Context, t *taskRun) {
	a.mu.Lock()
	asg := t.a
	a.mu.Unlock()
	h, err := a.launch(ctx, t, asg)
	a.mu.Lock()
	if err != nil {
		st := a.status(t.id, api.TaskFailed, err.Error())
		if t.killReq {
			st = a.status(t.id, api.TaskKilled, "killed before it started")
		}
		a.finishLocked(t, st, nil)
		a.mu.Unlock()
		return
	}
	t.handle = h
	t.startedAt = a.cfg.Now()
	kill := t.killReq
	if !kill {
		st := a.status(t.id, api.TaskRunning, "")
		st.IPAddresses = h.IPAddresses()
		if len(asg.Spec.ReadinessChecks) > 0 {
			notYet := false
			st.Ready = &notYet
		}
		a.reportLocked(t, st)
	}
	a.mu.Unlock()
	if kill {
		go a.stop(t, h)
	}
	a.watch(ctx, t, h)
}

// launch prepares the sandbox and environment and starts the task.
func (a *Agent) launch(ctx context.Context, t *taskRun, asg api.Assignment) (Handle, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	ex := a.executorFor(asg.Spec)
	if ex == nil {
		return nil, fmt.Errorf("no executor on this agent runs this task (executors: %s): run it on an agent with the needed capability", a.executorNames())
	}
	a.mu.Lock()
	t.exec = ex
	a.mu.Unlock()
	if err := missingSecrets(asg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(t.sandbox, 0o755); err != nil {
		return nil, fmt.Errorf("creating the sandbox: %w", err)
	}
	for _, f := range asg.Spec.Fetch {
		if err := fetch(ctx, f, t.sandbox, a.cfg.FetchTimeout); err != nil {
			return nil, err
		}
	}
	l := Launch{
		Task:       asg.Task,
		Spec:       asg.Spec,
		Sandbox:    t.sandbox,
		Env:        a.taskEnv(asg, t.sandbox),
		HostIP:     a.cfg.HostIP,
		VolumesDir: filepath.Join(a.cfg.DataDir, "volumes"),
	}
	h, err := ex.Start(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("%s executor: %w", ex.Name(), err)
	}
	return h, nil
}

func (a *Agent) executorNames() string {
	var n []string
	for _, ex := range a.cfg.Executors {
		n = append(n, ex.Name())
	}
	return strings.Join(n, ", ")
}

// watch runs the task's checks and waits for it to end.
func (a *Agent) watch(ctx context.Context, t *taskRun, h Handle) {
	a.mu.Lock()
	asg := t.a
	a.mu.Unlock()
	checks := a.startChecks(ctx, t, asg, h)
	if limit := asg.Spec.MaxCompletionSeconds; limit > 0 {
		timer := time.AfterFunc(time.Duration(limit*float64(time.Second)), func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if t.finished || t.killReq {
				return
			}
			t.overtime = true
			a.log.Info("task ran longer than its maxCompletionSeconds; stopping it", "task", t.id, "limit_s", limit)
			a.killLocked(t, fmt.Sprintf("ran longer than its maxCompletionSeconds (%gs)", limit))
		})
		defer timer.Stop()
	}
	<-h.Done()
	t.cancel()
	checks.wait()
	ex := h.Exit()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.finishLocked(t, a.exitStatus(t, ex), &ex)
}

// exitStatus turns an exit into the task's final status update.
func (a *Agent) exitStatus(t *taskRun, ex Exit) api.TaskStatus {
	code := ex.Code
	var st api.TaskStatus
	switch {
	case t.overtime:
		st = a.status(t.id, api.TaskFailed, joinMsg(fmt.Sprintf("ran longer than its maxCompletionSeconds (%gs) and was killed", t.a.Spec.MaxCompletionSeconds), ex.Message))
		st.Reason = "REASON_MAX_COMPLETION_TIME_REACHED"
	case t.killReq:
		st = a.status(t.id, api.TaskKilled, joinMsg("killed on request", ex.Message))
	case ex.OOM:
		st = a.status(t.id, api.TaskFailed, joinMsg("out of memory: the task exceeded its memory limit; give the app more mem", ex.Message))
		st.Reason = "REASON_CONTAINER_LIMITATION_MEMORY"
	case code == 0 && ex.Signal == "":
		st = a.status(t.id, api.TaskFinished, ex.Message)
	default:
		msg := ex.Message
		if msg == "" {
			msg = fmt.Sprintf("exited with status %d", code)
		}
		if tail := a.stderrTail(t.sandbox); tail != "" {
			msg += "; stderr: " + tail
		}
		st = a.status(t.id, api.TaskFailed, msg)
		st.Reason = "REASON_COMMAND_EXECUTOR_FAILED"
	}
	if ex.Signal == "" && code >= 0 {
		st.ExitStatus = &code
	}
	return st
}

func joinMsg(a, b string) string {
	if b == "" {
		return a
	}
	return a + " (" + b + ")"
}

// stderrTail returns the last bytes of the task's stderr on one line.
func (a *Agent) stderrTail(sandbox string) string {
	f, err := os.Open(filepath.Join(sandbox, "stderr"))
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	n := min(fi.Size(), int64(a.cfg.StderrTail))
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fi.Size()-n); err != nil {
		return ""
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(buf), ""))
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

// finishLocked records the end of a task and queues its final status.
func (a *Agent) finishLocked(t *taskRun, st api.TaskStatus, ex *Exit) {
	if t.finished {
		return
	}
	t.finished = true
	t.exit = ex
	t.doneAt = a.cfg.Now()
	t.cancel()
	a.reportLocked(t, st)
	close(t.done)
	a.log.Info("task ended", "task", t.id, "state", st.State, "message", st.Message)
}

// killLocked asks a task to stop.
func (a *Agent) killLocked(t *taskRun, why string) {
	if t.killReq || t.finished {
		return
	}
	t.killReq = true
	t.killing = true
	a.reportLocked(t, a.status(t.id, api.TaskKilling, why))
	if t.handle == nil {
		// Still fetching or starting: cancel it; runTask reports KILLED.
		t.cancel()
		return
	}
	go a.stop(t, t.handle)
}

// stop stops a started task with its grace period.
func (a *Agent) stop(t *taskRun, h Handle) {
	a.mu.Lock()
	grace := a.cfg.DefaultKillGrace
	if g := t.a.Spec.KillGracePeriodSeconds; g > 0 {
		grace = time.Duration(g * float64(time.Second))
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
	defer cancel()
	if err := h.Stop(ctx, grace); err != nil {
		a.log.Warn("stopping task failed", "task", t.id, "err", err)
	}
}

// unknownTasks kills tasks the master says it does not know.
func (a *Agent) unknownTasks(ids []string) {
	set := map[string]bool{}
	a.mu.Lock()
	for _, id := range ids {
		set[id] = true
		if t := a.tasks[id]; t != nil && !t.finished && !t.killReq {
			a.log.Info("killing a task the master does not know", "task", id)
			a.killLocked(t, "killed: unknown to the master")
		}
		if rh, ok := a.recovered[id]; ok {
			delete(a.recovered, id)
			go func() { _ = rh.h.Stop(context.Background(), a.cfg.DefaultKillGrace) }()
		}
	}
	a.mu.Unlock()
	// Updates of tasks the master does not know will never be accepted.
	a.rep.drop(set)
}

// stopAll stops every running task and waits for them (StopTasksOnExit).
func (a *Agent) stopAll() {
	a.mu.Lock()
	var ts []*taskRun
	for _, t := range a.tasks {
		if !t.finished {
			ts = append(ts, t)
			a.killLocked(t, "killed: the agent is shutting down")
		}
	}
	for id, rh := range a.recovered {
		delete(a.recovered, id)
		go func() { _ = rh.h.Stop(context.Background(), a.cfg.DefaultKillGrace) }()
	}
	a.mu.Unlock()
	for _, t := range ts {
		<-t.done
	}
	a.wg.Wait()
}

// Tasks returns a snapshot of the tasks on this agent.
func (a *Agent) Tasks() []TaskInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]TaskInfo, 0, len(a.tasks))
	for _, t := range a.tasks {
		ti := TaskInfo{
			ID: t.id, AppID: t.a.Task.AppID, State: t.state, Goal: t.a.Goal,
			Sandbox: t.sandbox, Ports: t.a.Spec.Ports,
		}
		if t.exec != nil {
			ti.Executor = t.exec.Name()
		}
		if p, ok := t.handle.(Pider); ok && !t.finished {
			ti.Pid = p.Pid()
		}
		if !t.startedAt.IsZero() {
			ti.StartedAt = api.Timestamp(t.startedAt)
		}
		if t.exit != nil {
			code := t.exit.Code
			ti.ExitStatus = &code
			ti.Message = t.exit.Message
		}
		out = append(out, ti)
	}
	sortTasks(out)
	return out
}

// TaskInfo is one task as the agent API's GET /v1/tasks shows it.
type TaskInfo struct {
	ID         string `json:"id"`
	AppID      string `json:"appId,omitempty"`
	State      string `json:"state"`
	Goal       string `json:"goal"`
	Executor   string `json:"executor,omitempty"`
	Pid        int    `json:"pid,omitempty"`
	Sandbox    string `json:"sandbox"`
	Ports      []int  `json:"ports,omitempty"`
	StartedAt  string `json:"startedAt,omitempty"`
	ExitStatus *int   `json:"exitStatus,omitempty"`
	Message    string `json:"message,omitempty"`
}
