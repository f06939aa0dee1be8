package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent/cgroups"
	"github.com/weftnet/weft/sched/api"
)

// ProcessConfig configures the process executor.
type ProcessConfig struct {
	// StateDir holds one small record per running task (pid, process
	// group, start time) so a restarted agent can re-adopt the processes.
	// Empty disables recovery.
	StateDir string
	// Subreaper makes the agent process a child subreaper
	// (PR_SET_CHILD_SUBREAPER), so the orphaned children of a task are
	// re-parented to the agent, which kills and reaps them: no stray
	// process or zombie outlives its task even where PID 1 does not reap.
	Subreaper bool
	// ReapInterval is how often the group of an exited task is checked
	// while its members are being killed and reaped.
	ReapInterval time.Duration
	// TaskUser is the user process tasks run as when the agent runs as
	// root (`--task-user`, default nobody in `weft agent`); empty runs
	// them as the agent's own user, or as the app's user.
	TaskUser string
	// AllowedUsers may be named by an app's user field to run as that
	// user instead of TaskUser (`--allowed-task-users`); another user is
	// refused.
	AllowedUsers []string
	// Cgroups, when set, puts every task in a control group of its own
	// with a memory limit (the task's mem) and cpu shares (cpus*1024);
	// nil runs tasks without limits. See CgroupsFor.
	Cgroups *cgroups.Manager
	// CgroupsProblem says why Cgroups is nil (shown as a problem of the
	// node: "process: no limits: ..."); empty when limits were not asked for.
	CgroupsProblem string
	// Logger receives the executor's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultProcessConfig returns the defaults; stateDir may be empty.
func DefaultProcessConfig(stateDir string) ProcessConfig {
	return ProcessConfig{StateDir: stateDir, Subreaper: true, ReapInterval: 20 * time.Millisecond}
}

// ProcessExecutor runs a task as a plain process: /bin/sh -c cmd, or args
// exec'd directly, in its own process group, with the sandbox as working
// directory and stdout and stderr going to files there.
type ProcessExecutor struct {
	cfg ProcessConfig
	log *slog.Logger

	warnOnce sync.Once // the sandboxes are out of the task user's reach
}

var _ Executor = (*ProcessExecutor)(nil)

// NewProcessExecutor returns a process executor.
func NewProcessExecutor(cfg ProcessConfig) (*ProcessExecutor, error) {
	if cfg.ReapInterval <= 0 {
		cfg.ReapInterval = 20 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating process executor state dir: %w", err)
		}
	}
	if cfg.Subreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			log.Warn("cannot become a child subreaper; orphaned task processes are left to init", "err", err)
		}
	}
	e := &ProcessExecutor{cfg: cfg, log: log.With("executor", "process")}
	if cfg.TaskUser != "" && os.Geteuid() != 0 {
		me := "this user"
		if u, err := user.Current(); err == nil {
			me = u.Username
		}
		e.log.Warn("the agent does not run as root: process tasks run as the agent's own user, not the task user", "user", me, "taskUser", cfg.TaskUser)
	}
	return e, nil
}

// runAs is the user a task runs as: the app's user when the agent allows
// it, else TaskUser (when the agent is root and TaskUser is set).
func (e *ProcessExecutor) runAs(want, sandbox string) (string, error) {
	if e.cfg.TaskUser == "" || os.Geteuid() != 0 {
		return want, nil
	}
	name := e.cfg.TaskUser
	if want != "" && want != name {
		if !slices.Contains(e.cfg.AllowedUsers, want) {
			return "", fmt.Errorf("the app's user %q is not allowed on this agent: process tasks run as %q unless the agent lists the user in --allowed-task-users", want, name)
		}
		name = want
	}
	if name == "root" {
		return name, nil
	}
	if dir, ok := reachableBy(name, filepath.Dir(sandbox)); !ok {
		e.warnOnce.Do(func() {
			e.log.Warn("the task user cannot reach the sandboxes, so process tasks run as the agent's user: make the directory traversable (chmod o+x) or move the data dir", "taskUser", name, "dir", dir)
		})
		return "", nil
	}
	return name, nil
}

// reachableBy reports whether user name may traverse dir and every
// directory above it (by the mode bits; supplementary groups are not
// considered); if not, it returns the first directory in the way.
func reachableBy(name, dir string) (string, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return dir, false
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return p, false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		switch {
		case !ok:
		case uint64(st.Uid) == uid:
			if mode&0o100 == 0 {
				return p, false
			}
		case uint64(st.Gid) == gid:
			if mode&0o010 == 0 {
				return p, false
			}
		default:
			if mode&0o001 == 0 {
				return p, false
			}
		}
		if p == "/" || p == "." {
			return "", true
		}
	}
}

// Name is "process".
func (e *ProcessExecutor) Name() string { return "process" }

// Handles reports true for tasks without a Docker container.
func (e *ProcessExecutor) Handles(spec api.TaskSpec) bool {
	return spec.Container == nil || spec.Container.Docker == nil && !strings.EqualFold(spec.Container.Type, "DOCKER")
}

// processRecord is what the executor keeps on disk per running task.
type processRecord struct {
	TaskID    string `json:"taskId"`
	Cgroup    string `json:"cgroup,omitempty"` // the task's group below the agent's parent
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // /proc/<pid>/stat field 22, guards against pid reuse
	Sandbox   string `json:"sandbox"`
	// PodInstance is set on a pod's container other than the first: the
	// instance's task id (Launch.PodInstance).
	PodInstance string `json:"podInstance,omitempty"`
	// PodPart is set on every container of a pod (Launch.PodPart).
	PodPart *PodPart `json:"podPart,omitempty"`
}

// Start launches the task's process.
func (e *ProcessExecutor) Start(ctx context.Context, l Launch) (Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	switch {
	case l.Spec.Cmd != nil && *l.Spec.Cmd != "":
		cmd = exec.Command("/bin/sh", "-c", *l.Spec.Cmd)
	case len(l.Spec.Args) > 0:
		cmd = exec.Command(l.Spec.Args[0], l.Spec.Args[1:]...)
		if filepath.Base(l.Spec.Args[0]) == l.Spec.Args[0] {
			// Look the program up in the task's PATH, not the agent's.
			if p, err := lookPath(l.Spec.Args[0], l.Env["PATH"]); err == nil {
				cmd.Path = p
				cmd.Err = nil
			}
		}
	default:
		return nil, errors.New("the task has neither cmd nor args: give the app a cmd or args")
	}
	if cmd.Err != nil {
		return nil, fmt.Errorf("cannot run %q: %w", l.Spec.Args[0], cmd.Err)
	}
	cmd.Dir = l.Sandbox
	cmd.Env = envList(l.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	runAs, err := e.runAs(l.Spec.User, l.Sandbox)
	if err != nil {
		return nil, err
	}
	if err := setUser(cmd, runAs, l.Sandbox); err != nil {
		return nil, err
	}
	uid, gid := -1, -1
	if c := cmd.SysProcAttr.Credential; c != nil {
		uid, gid = int(c.Uid), int(c.Gid)
	}
	if _, err := prepareLocalVolumes(l.Spec.LocalVolumes, l.VolumesDir, l.Sandbox, uid, gid, true); err != nil {
		return nil, err
	}
	stdout, err := os.OpenFile(filepath.Join(l.Sandbox, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the task's stdout file: %w", err)
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(l.Sandbox, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the task's stderr file: %w", err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	var group *cgroups.Group
	if e.cfg.Cgroups != nil {
		group, err = e.cfg.Cgroups.Create(sanitizeID(l.Task.ID), limitsOf(l.Spec))
		if err != nil {
			return nil, fmt.Errorf("creating the task's cgroup: %w", err)
		}
		err = startInGroup(cmd, group)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		if group != nil {
			_ = group.Destroy()
		}
		return nil, fmt.Errorf("starting the task's process: %w", err)
	}
	h := &processHandle{
		e:       e,
		taskID:  l.Task.ID,
		pid:     cmd.Process.Pid,
		group:   group,
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if e.cfg.StateDir != "" {
		rec := processRecord{TaskID: l.Task.ID, Pid: h.pid, Sandbox: l.Sandbox, PodInstance: l.PodInstance, PodPart: l.PodPart}
		if group != nil {
			rec.Cgroup = group.Name()
		}
		rec.StartTime, _ = procStartTime(h.pid)
		if err := writeJSONFile(e.recordPath(l.Task.ID), rec); err != nil {
			e.log.Warn("cannot record the task's process; it will not be recovered after an agent restart", "task", l.Task.ID, "err", err)
		}
	}
	if e.cfg.Subreaper {
		orphans.watch(h.pid)
	}
	if group != nil {
		// Off Start's path: registering with the kernel costs a few
		// writes to the cgroup filesystem per task.
		h.oomSet = make(chan struct{})
		go h.watchOOM()
	}
	go h.wait(cmd)
	return h, nil
}

// orphans reaps the zombie orphans of running tasks that were re-parented
// to the agent (a subreaper): a long-running task that keeps spawning
// short-lived background processes would otherwise pile up zombies until
// it ends. One reaper serves every executor. It scans /proc only after a
// SIGCHLD (an orphan's exit sends one to the agent), at most once every
// reapEvery: an idle node with many tasks costs it nothing.
var orphans = &orphanReaper{groups: map[int]bool{}}

// reapEvery is the least time between two scans for orphans.
const reapEvery = 2 * time.Second

type orphanReaper struct {
	mu      sync.Mutex
	groups  map[int]bool // process groups (= leader pids) of running tasks
	running bool
	sigs    chan os.Signal // SIGCHLD, from the first watch on
}

func (o *orphanReaper) watch(pgid int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.groups[pgid] = true
	if o.sigs == nil {
		o.sigs = make(chan os.Signal, 1)
		signal.Notify(o.sigs, syscall.SIGCHLD)
	}
	if !o.running {
		o.running = true
		go o.loop()
	}
}

func (o *orphanReaper) forget(pgid int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.groups, pgid)
}

func (o *orphanReaper) loop() {
	for {
		// A scan after the groups were watched catches an orphan that died
		// before the loop (re)started; then one per SIGCHLD, spaced.
		time.Sleep(reapEvery)
		o.mu.Lock()
		if len(o.groups) == 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		groups := maps.Clone(o.groups)
		o.mu.Unlock()
		reapOrphans(groups)
		<-o.sigs
	}
}

// reapOrphans waits for zombie children of the agent that belong to one of
// groups and are not a group leader (leaders are reaped by their
// exec.Cmd.Wait, which must keep their exit status).
func reapOrphans(groups map[int]bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	me := os.Getpid()
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		st, ppid, pgrp, ok := procStat(pid)
		if ok && st == 'Z' && ppid == me && groups[pgrp] && pid != pgrp {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

func (e *ProcessExecutor) recordPath(taskID string) string {
	return filepath.Join(e.cfg.StateDir, sanitizeID(taskID)+".json")
}

// Recover re-adopts task processes that outlived a previous agent.
func (e *ProcessExecutor) Recover(ctx context.Context) (map[string]Handle, error) {
	out := map[string]Handle{}
	if e.cfg.StateDir == "" {
		return out, nil
	}
	recs, err := e.records()
	if err != nil {
		return nil, err
	}
	for path, rec := range recs {
		if rec.PodInstance != "" || rec.PodPart != nil {
			continue // part of a pod instance: PodExecutor.Recover reassembles it
		}
		if h := e.recoverRecord(path, rec); h != nil {
			out[rec.TaskID] = h
		}
	}
	return out, nil
}

// recoverRecord re-adopts the process of rec, or, when it is gone, kills
// what is left of its group and forgets it (nil).
func (e *ProcessExecutor) recoverRecord(path string, rec processRecord) *processHandle {
	var group *cgroups.Group
	if rec.Cgroup != "" && e.cfg.Cgroups != nil {
		group, _ = e.cfg.Cgroups.Open(rec.Cgroup)
	}
	if !groupAlive(rec.Pid) || !sameProcess(rec.Pid, rec.StartTime) {
		// The leader is gone: kill what is left of its group.
		killGroup(rec.Pid, syscall.SIGKILL)
		if group != nil {
			_ = group.Destroy()
		}
		_ = os.Remove(path)
		return nil
	}
	h := &processHandle{
		e: e, taskID: rec.TaskID, pid: rec.Pid, recovered: true, group: group,
		done: make(chan struct{}), stopped: make(chan struct{}),
	}
	if group != nil {
		h.oomSet = make(chan struct{})
		go h.watchOOM()
	}
	go h.watchRecovered(rec.StartTime)
	return h
}

// recoverPodParts re-adopts the processes of pod containers, for
// PodExecutor.Recover to reassemble into instances. A container whose
// process is gone is left out (its instance then ends).
func (e *ProcessExecutor) recoverPodParts() ([]recoveredPart, error) {
	if e.cfg.StateDir == "" {
		return nil, nil
	}
	recs, err := e.records()
	if err != nil {
		return nil, err
	}
	var out []recoveredPart
	for path, rec := range recs {
		part := rec.PodPart
		if part == nil || part.Index < 0 || part.Index >= part.Count {
			continue
		}
		instance := rec.TaskID
		if part.Index > 0 {
			instance = rec.PodInstance
		}
		if h := e.recoverRecord(path, rec); h != nil {
			out = append(out, recoveredPart{instance: instance, part: *part, h: h})
		}
	}
	return out, nil
}

func (e *ProcessExecutor) records() (map[string]processRecord, error) {
	entries, err := os.ReadDir(e.cfg.StateDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading process records: %w", err)
	}
	out := map[string]processRecord{}
	for _, ent := range entries {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		path := filepath.Join(e.cfg.StateDir, ent.Name())
		var rec processRecord
		raw, err := os.ReadFile(path)
		if err != nil || json.Unmarshal(raw, &rec) != nil || rec.Pid <= 1 {
			_ = os.Remove(path)
			continue
		}
		out[path] = rec
	}
	return out, nil
}

// Cleanup kills the process groups of recorded tasks not in keep and
// removes their records.
func (e *ProcessExecutor) Cleanup(ctx context.Context, keep map[string]bool) error {
	if e.cfg.StateDir == "" {
		return nil
	}
	recs, err := e.records()
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for path, rec := range recs {
		if keep[rec.TaskID] || keep[rec.PodInstance] {
			kept[rec.Cgroup] = true
			continue
		}
		if sameProcess(rec.Pid, rec.StartTime) {
			killGroup(rec.Pid, syscall.SIGKILL)
		}
		_ = os.Remove(path)
	}
	// Groups of tasks this agent no longer runs (the agent died between
	// creating one and recording its task, or a record was lost).
	if e.cfg.Cgroups != nil {
		for _, name := range e.cfg.Cgroups.List() {
			if kept[name] {
				continue
			}
			if g, ok := e.cfg.Cgroups.Open(name); ok {
				if err := g.Destroy(); err != nil {
					e.log.Warn("removing a leftover cgroup", "cgroup", name, "err", err)
				}
			}
		}
	}
	return nil
}

// processHandle is a running task process.
type processHandle struct {
	e         *ProcessExecutor
	taskID    string
	pid       int // also the process group id
	recovered bool
	group     *cgroups.Group // nil: no limits
	stopOOM   func()         // ends watchOOM's watch; nil when none (read after oomSet)
	oomSet    chan struct{}  // closed once watchOOM has set stopOOM; nil when no watch

	mu       sync.Mutex
	exit     Exit
	stopping bool
	killAt   time.Time // when stopping: SIGKILL the group at this time
	done     chan struct{}
	stopped  chan struct{} // closed when Stop has SIGKILLed the group
}

func (h *processHandle) Done() <-chan struct{} { return h.done }
func (h *processHandle) Pid() int              { return h.pid }

func (h *processHandle) Exit() Exit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exit
}

func (h *processHandle) IPAddresses() []api.IPAddress { return nil }

// wait reaps the leader, then makes sure nothing of its group is left.
func (h *processHandle) wait(cmd *exec.Cmd) {
	err := cmd.Wait()
	orphans.forget(h.pid)
	ex := exitFromState(cmd.ProcessState, err)
	h.finish(ex)
}

// oomExit marks ex as an OOM kill when the kernel killed a process of the
// task's group for exceeding its memory limit (Mesos's memory limitation).
func (h *processHandle) oomExit(ex Exit) Exit {
	if h.group == nil {
		return ex
	}
	st, err := h.group.Stats()
	if err != nil || st.OOMKills == 0 {
		return ex
	}
	ex.OOM = true
	msg := fmt.Sprintf("Memory limit exceeded: Requested: %dMB", st.MemoryLimitBytes>>20)
	if st.MemoryMaxUsageBytes > 0 {
		msg += fmt.Sprintf(" Maximum Used: %dMB", st.MemoryMaxUsageBytes>>20)
	}
	ex.Message = joinMsg(msg, ex.Message)
	return ex
}

// finish kills and reaps the rest of the group (after the stop grace if a
// stop is under way), records the exit and closes done.
func (h *processHandle) finish(ex Exit) {
	ex = h.oomExit(ex)
	h.mu.Lock()
	stopping, killAt := h.stopping, h.killAt
	h.mu.Unlock()
	if stopping {
		// Members that handle SIGTERM get the rest of the grace period.
		for time.Now().Before(killAt) && groupAlive(h.pid) {
			h.reap()
			time.Sleep(h.e.cfg.ReapInterval)
		}
	}
	for i := 0; groupAlive(h.pid); i++ {
		killGroup(h.pid, syscall.SIGKILL)
		h.reap()
		if i > 0 {
			time.Sleep(h.e.cfg.ReapInterval)
		}
		if i > 500 { // ~10 s: something we cannot reap (not our child); give up
			h.e.log.Warn("task process group still has members after SIGKILL", "task", h.taskID, "pgid", h.pid)
			break
		}
	}
	if h.oomSet != nil {
		<-h.oomSet
	}
	if h.stopOOM != nil {
		h.stopOOM()
	}
	if h.group != nil {
		// Anything that left the process group (setsid) is still in the
		// cgroup: it ends with the task too.
		if err := h.group.Destroy(); err != nil {
			h.e.log.Warn("removing the task's cgroup", "task", h.taskID, "err", err)
		}
	}
	if h.e.cfg.StateDir != "" {
		_ = os.Remove(h.e.recordPath(h.taskID))
	}
	h.mu.Lock()
	h.exit = ex
	h.mu.Unlock()
	close(h.done)
}

// reap collects zombie members of the task's group that were re-parented
// to the agent (it is a child subreaper).
func (h *processHandle) reap() {
	me := os.Getpid()
	for _, pid := range groupMembers(h.pid) {
		st, ppid, _, ok := procStat(pid)
		if ok && st == 'Z' && ppid == me {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// watchRecovered polls a re-adopted process (not the agent's child) until
// it is gone.
func (h *processHandle) watchRecovered(startTime uint64) {
	for {
		st, _, _, ok := procStat(h.pid)
		if !ok || st == 'Z' || !sameProcess(h.pid, startTime) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.finish(Exit{Code: -1, Message: "the task's process ended; its exit status is unknown because the agent restarted while it ran"})
}

// Stop sends SIGTERM to the task's process group, then SIGKILL after grace.
func (h *processHandle) Stop(ctx context.Context, grace time.Duration) error {
	h.mu.Lock()
	if !h.stopping {
		h.stopping = true
		h.killAt = time.Now().Add(grace)
	}
	killAt := h.killAt
	h.mu.Unlock()
	select {
	case <-h.done:
		return nil
	default:
	}
	killGroup(h.pid, syscall.SIGTERM)
	t := time.NewTimer(time.Until(killAt))
	defer t.Stop()
	select {
	case <-h.done:
		return nil
	case <-t.C:
		killGroup(h.pid, syscall.SIGKILL)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func exitFromState(ps *os.ProcessState, err error) Exit {
	if ps == nil {
		return Exit{Code: -1, Message: fmt.Sprintf("waiting for the task's process: %v", err)}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		sig := ws.Signal()
		return Exit{Code: -1, Signal: sig.String(), Message: "killed by signal: " + sig.String()}
	}
	code := ps.ExitCode()
	if code == 0 {
		return Exit{Code: 0, Message: "exited with status 0"}
	}
	return Exit{Code: code, Message: fmt.Sprintf("exited with status %d", code)}
}

// killGroup signals every process of group pgid.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// groupAlive reports whether process group pgid has a member that is not
// a zombie.
func groupAlive(pgid int) bool {
	if pgid <= 1 {
		return false
	}
	if err := syscall.Kill(-pgid, 0); err == syscall.ESRCH {
		return false
	}
	for _, pid := range groupMembers(pgid) {
		st, _, _, ok := procStat(pid)
		if ok && st != 'Z' {
			return true
		}
		if ok && st == 'Z' {
			// a zombie we may be able to reap still counts until reaped
			if _, ppid, _, _ := procStat(pid); ppid == os.Getpid() {
				return true
			}
		}
	}
	return false
}

// groupMembers lists the pids whose process group is pgid.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if _, _, pg, ok := procStat(pid); ok && pg == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// procStat reads state, ppid and pgrp of pid from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid, pgrp int, ok bool) {
	f := procStatFields(pid)
	if len(f) < 3 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	return f[0][0], ppid, pgrp, true
}

// procStatFields returns the fields of /proc/<pid>/stat after the command
// name, starting with the state (field 3).
func procStatFields(pid int) []string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

// procStartTime is field 22 of /proc/<pid>/stat (start time in ticks).
func procStartTime(pid int) (uint64, error) {
	f := procStatFields(pid)
	if len(f) < 20 {
		return 0, fmt.Errorf("no process %d", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// sameProcess reports whether pid is still the process that started at
// startTime (0 = unknown: trust the pid).
func sameProcess(pid int, startTime uint64) bool {
	st, err := procStartTime(pid)
	if err != nil {
		return false
	}
	return startTime == 0 || st == startTime
}

// envList turns an environment map into a sorted KEY=VALUE list.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// lookPath finds file in the colon-separated path list.
func lookPath(file, path string) (string, error) {
	if path == "" {
		return exec.LookPath(file)
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// setUser makes cmd run as the named user when the agent can switch to it.
func setUser(cmd *exec.Cmd, name, sandbox string) error {
	if name == "" {
		return nil
	}
	cur, err := user.Current()
	if err == nil && cur.Username == name {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("the task's user %q does not exist on this agent: create it or change the app's user: %w", name, err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("cannot run the task as user %q: the agent does not run as root; run the agent as root or drop the app's user", name)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	_ = filepath.Walk(sandbox, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			_ = os.Lchown(p, int(uid), int(gid))
		}
		return nil
	})
	return nil
}

// sanitizeID makes a task id safe as a file name.
func sanitizeID(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, id)
}

func writeJSONFile(path string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
