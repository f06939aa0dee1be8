package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent/cgroups"
	"github.com/weftnet/weft/sched/api"
)

// CgroupsFor finds the cgroup hierarchy for an agent's process tasks, with
// their groups under weft/<agentID>-<hash of dataDir>: two agents on one
// host (testbeds, a second `weft up`) never share a parent, while a
// restarted agent finds its own again. When none can be used it returns
// nil and the reason, which the agent logs once and shows as a problem.
func CgroupsFor(agentID, dataDir string, cpuQuota bool) (*cgroups.Manager, string) {
	if os.Geteuid() != 0 {
		return nil, "the agent does not run as root"
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sum := sha256.Sum256([]byte(dataDir))
	parent := "weft/" + sanitizeID(agentID) + "-" + hex.EncodeToString(sum[:4])
	m, err := cgroups.Detect(cgroups.Config{Parent: parent, CPUQuota: cpuQuota})
	if err != nil {
		return nil, err.Error()
	}
	return m, ""
}

// MinTaskMemory is the least memory limit a task gets, whatever its mem
// (Mesos's memory isolator: MIN_MEMORY, 32 MB).
const MinTaskMemory = 32 << 20

// limitsOf turns a task's resources into its cgroup limits: mem MB but at
// least MinTaskMemory, as Mesos's memory isolator sets them, and cpus.
func limitsOf(spec api.TaskSpec) cgroups.Limits {
	return cgroups.Limits{
		Cpus:        spec.Resources.Cpus,
		MemoryBytes: max(int64(spec.Resources.Mem*(1<<20)), MinTaskMemory),
	}
}

// startInGroup starts cmd with its process already in g before the task's
// program runs. On cgroup v2 the child is cloned straight into the group
// (CLONE_INTO_CGROUP). On v1 the thread that forks enters the group first
// (a child starts in its parent thread's groups) and goes back after; if
// that cannot be done, the child is traced instead: it stops at its exec,
// before the program's first instruction, is moved into the group's
// hierarchies, and is let go (bench/cgroups: the trace cost a launch
// about twice as much as one without cgroups).
func startInGroup(cmd *exec.Cmd, g *cgroups.Group) error {
	if fd, err := g.FD(); err == nil {
		defer syscall.Close(fd)
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		return cmd.Start()
	}
	started, err := startFromGroupThread(cmd, g)
	if started || err == nil {
		return err
	}
	return startTraced(cmd, g)
}

// startFromGroupThread forks cmd from a thread of its own moved into g
// (v1). started is false when cmd was not started (the thread could not
// enter g), so the caller may try another way. A thread that cannot be
// moved back is not given back to the runtime: it ends with its goroutine.
func startFromGroupThread(cmd *exec.Cmd, g *cgroups.Group) (started bool, err error) {
	type result struct {
		started bool
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restore, err := g.EnterThread()
		if err != nil {
			if restore != nil && restore() != nil {
				ch <- result{false, err} // thread stays locked: it ends here
				return
			}
			runtime.UnlockOSThread()
			ch <- result{false, err}
			return
		}
		startErr := cmd.Start()
		if rerr := restore(); rerr != nil {
			if startErr == nil {
				// The task runs in its group; only this thread is lost.
				ch <- result{true, nil}
				return
			}
			ch <- result{true, startErr}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{true, startErr}
	}()
	r := <-ch
	return r.started, r.err
}

// startTraced starts cmd stopped at its exec, moves it into g and lets
// it go (v1, when the forking thread cannot enter g).
func startTraced(cmd *exec.Cmd, g *cgroups.Group) error {
	// The tracer is the thread that forks: ptrace calls must come from it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			_ = cmd.Process.Kill()
			return fmt.Errorf("waiting for the task's process to exec: %w", err)
		}
		break
	}
	if !ws.Stopped() {
		// Killed before its exec completed; its status is consumed here.
		cmd.Process.Release()
		return errors.New("the task's process ended before it could be placed in its cgroup")
	}
	addErr := g.Add(pid)
	if addErr != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if err := unix.PtraceDetach(pid); err != nil && addErr == nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		addErr = fmt.Errorf("releasing the task's process: %w", err)
	}
	if addErr != nil {
		_ = cmd.Wait()
		return addErr
	}
	return nil
}

// oomPoll is how often a running task's group is checked for an OOM kill
// where the kernel cannot tell (WatchOOM failed).
var oomPoll = 250 * time.Millisecond

// watchOOM ends the whole task once the kernel has killed one of its
// processes for exceeding the memory limit, as Mesos's memory isolator
// destroys the container on its limitation: a shell that outlives its
// killed child must not run on as if nothing happened. The kernel tells
// (cgroups.Manager.WatchOOM: one watcher for every task); finish stops
// the watch. Only where it cannot is the group polled.
func (h *processHandle) watchOOM() {
	defer close(h.oomSet)
	stop, err := h.e.cfg.Cgroups.WatchOOM(h.group, h.oomKill)
	if err == nil {
		h.stopOOM = stop
		return
	}
	h.e.log.Warn("the kernel cannot tell the task's OOM kills; polling its cgroup", "task", h.taskID, "err", err)
	go h.pollOOM()
}

// oomKill ends the task whose group had a process killed for memory.
func (h *processHandle) oomKill() {
	killGroup(h.pid, syscall.SIGKILL)
	h.group.Kill(time.Second)
}

func (h *processHandle) pollOOM() {
	t := time.NewTicker(oomPoll)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		if h.group.OOMKills() > 0 {
			h.oomKill()
			return
		}
	}
}

// Usage is a task's resource usage and limits (Mesos's
// ResourceStatistics names).
type Usage = api.ResourceStatistics

// Usager is implemented by a Handle that can read its task's usage.
type Usager interface {
	Usage() (Usage, error)
}

// Usage reads the task's usage from its cgroup.
func (h *processHandle) Usage() (Usage, error) {
	if h.group == nil {
		return Usage{}, errors.New("the task runs without a cgroup, so its usage is not measured")
	}
	st, err := h.group.Stats()
	if err != nil {
		return Usage{}, err
	}
	u := Usage{
		Timestamp:          float64(time.Now().UnixNano()) / 1e9,
		CpusUserTimeSecs:   st.CPUUserSeconds,
		CpusSystemTimeSecs: st.CPUSystemSeconds,
		CpusLimit:          float64(st.CPUShares) / 1024,
		MemRSSBytes:        st.MemoryRSSBytes,
		MemTotalBytes:      st.MemoryUsageBytes,
		MemLimitBytes:      st.MemoryLimitBytes,
	}
	if st.CPUQuotaCores > 0 {
		u.CpusLimit = st.CPUQuotaCores
	}
	// user and system come in ticks; the exact total is spread over them
	// so their sum is the group's cpu time.
	if tot := u.CpusUserTimeSecs + u.CpusSystemTimeSecs; tot > 0 && st.CPUSeconds > 0 {
		u.CpusUserTimeSecs = st.CPUSeconds * u.CpusUserTimeSecs / tot
		u.CpusSystemTimeSecs = st.CPUSeconds - u.CpusUserTimeSecs
	} else if tot == 0 {
		u.CpusUserTimeSecs = st.CPUSeconds
	}
	return u, nil
}

// Noter is implemented by an executor with something to add to the
// agent's capabilities (e.g. "cgroups-v1") or problems.
type Noter interface {
	Notes() (caps, problems []string)
}

// Notes says whether process tasks get limits.
func (e *ProcessExecutor) Notes() (caps, problems []string) {
	if e.cfg.Cgroups != nil {
		return []string{e.cfg.Cgroups.Version().String()}, nil
	}
	if e.cfg.CgroupsProblem != "" {
		return nil, []string{"process: no cpu/mem limits: " + e.cfg.CgroupsProblem}
	}
	return nil, nil
}
