package agent

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/cgroups"
)

// testCgroups detects this host's hierarchy with a parent of the test's
// own, removed at the end; it skips where cgroups cannot be used.
func testCgroups(t *testing.T) *cgroups.Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	parent := "weft-test/" + hex.EncodeToString(b)
	m, err := cgroups.Detect(cgroups.Config{Parent: parent})
	if err != nil {
		t.Skipf("no usable cgroup hierarchy here: %v", err)
	}
	t.Cleanup(func() {
		for _, name := range m.List() {
			if g, ok := m.Open(name); ok {
				_ = g.Destroy()
			}
		}
		for _, d := range m.Parents() {
			_ = os.Remove(d)
		}
	})
	return m
}

func cgroupConfig(t *testing.T, m *fakeMaster, dir string, cg *cgroups.Manager) Config {
	cfg := testConfig(t, m, dir)
	pc := DefaultProcessConfig(filepath.Join(dir, "process"))
	pc.Cgroups = cg
	pe, err := NewProcessExecutor(pc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Executors = []Executor{pe}
	return cfg
}

// memHog allocates about mb MB: a line without a newline, which tail
// keeps whole in memory.
func memHog(mb int) string {
	return "head -c " + strconv.Itoa(mb<<20) + " /dev/zero | tail; echo survived; sleep 600"
}

// TestProcessTaskOverMemoryIsKilledWithReason: a task with mem 32 that
// allocates 200 MB is killed (the whole task, not only the process the
// kernel picked: its shell would sleep on) and reported TASK_FAILED with
// Mesos's REASON_CONTAINER_LIMITATION_MEMORY; a task within its limit runs
// on, in its own group with the limit set; the groups go with the tasks.
//
// The kernel tells of the kill (cgroups.Manager.WatchOOM): the fallback
// poll is set to an hour, so the hog's shell, sleeping on after tail was
// killed, ends within waitState's 10 s only through the event path.
func TestProcessTaskOverMemoryIsKilledWithReason(t *testing.T) {
	cg := testCgroups(t)
	defer func(p time.Duration) { oomPoll = p }(oomPoll)
	oomPoll = time.Hour
	m := newFakeMaster(t)
	dir := t.TempDir()
	a, _ := startAgent(t, cgroupConfig(t, m, dir, cg))

	hog := shTask("hog", memHog(200))
	hog.Spec.Resources.Mem = 32
	hog.Spec.Resources.Cpus = 0.25
	m.set(hog)
	calm := shTask("calm", "sleep 60")
	calm.Spec.Resources.Mem = 32
	calm.Spec.Resources.Cpus = 0.5
	m.set(calm)

	st := waitState(t, m, "hog", "TASK_FAILED")
	if st.Reason != "REASON_CONTAINER_LIMITATION_MEMORY" {
		t.Fatalf("hog failed with reason %q (%s), want REASON_CONTAINER_LIMITATION_MEMORY", st.Reason, st.Message)
	}
	if !strings.Contains(st.Message, "Memory limit exceeded: Requested: 32MB") {
		t.Errorf("hog's message %q does not say the limit", st.Message)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sandboxes", "hog", "stdout")); strings.Contains(string(b), "survived") {
		// The kernel killed tail; the shell went on until the task was ended.
		t.Logf("hog's shell ran on briefly: %q", b)
	}
	waitState(t, m, "calm", "TASK_RUNNING")
	pid := pidOf(t, a, "calm")
	g, ok := cg.Open("calm")
	if !ok {
		t.Fatal("calm has no cgroup")
	}
	found := false
	for _, p := range g.Pids() {
		found = found || p == pid
	}
	if !found {
		t.Fatalf("calm's process %d is not in its cgroup (%v)", pid, g.Pids())
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryLimitBytes != 32<<20 {
		t.Errorf("calm's memory limit is %d, want %d", s.MemoryLimitBytes, 32<<20)
	}
	// v1 keeps shares exactly; v2's cpu.weight is coarser (one weight is
	// about 26 shares), so 512 comes back as the nearest weight's shares.
	if want := uint64(512); cg.Version() == cgroups.V1 && s.CPUShares != want ||
		cg.Version() == cgroups.V2 && (s.CPUShares+27 < want || s.CPUShares > want+27) {
		t.Errorf("calm's cpu shares are %d, want 512 (%s)", s.CPUShares, cg.Version())
	}
	u, err := a.taskUsage("calm")
	if err != nil {
		t.Fatal(err)
	}
	if u.MemLimitBytes != 32<<20 || u.MemTotalBytes == 0 {
		t.Errorf("calm's usage %+v: want a 32 MB limit and some memory charged", u)
	}
	if _, ok := cg.Open("hog"); ok {
		t.Error("the hog's cgroup is still there after it ended")
	}
	time.Sleep(300 * time.Millisecond)
	if _, ok := m.last("calm", "TASK_FAILED"); ok {
		t.Fatal("the task within its limit failed")
	}
	m.setGoal("calm", "kill")
	waitState(t, m, "calm", "TASK_KILLED")
	eventually(t, 5*time.Second, "calm's cgroup removed", func() bool {
		_, ok := cg.Open("calm")
		return !ok
	})
}

// TestStartInGroupLeavesNoAgentThreadBehind: on v1 a task's process is
// forked by a thread moved into the task's group (groups made ahead and
// renamed): the process starts in its group in every hierarchy, and no
// thread of the agent stays there after; the groups made ahead are kept
// under the parent.
func TestStartInGroupLeavesNoAgentThreadBehind(t *testing.T) {
	cg := testCgroups(t)
	if cg.Version() != cgroups.V1 {
		t.Skipf("this path is cgroup v1's; here: %s (v2 clones into the group)", cg.Version())
	}
	for i := range 6 { // more than the pool holds: some made on the spot
		name := "thread-" + strconv.Itoa(i)
		g, err := cg.Create(name, cgroups.Limits{Cpus: 0.1, MemoryBytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := startInGroup(cmd, g); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		raw, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) == 3 && (slices.Contains(strings.Split(f[1], ","), "memory") || slices.Contains(strings.Split(f[1], ","), "cpu")) && !strings.HasSuffix(f[2], "/"+name) {
				t.Errorf("task %d's process is in %s, not in its group %s", i, line, name)
			}
		}
		if pids := g.Pids(); len(pids) != 1 || pids[0] != pid {
			t.Errorf("group %s holds %v, want only the task's process %d (a thread of the agent left behind?)", name, pids, pid)
		}
		b, _ := os.ReadFile(filepath.Join(g.Dir(), "memory.limit_in_bytes"))
		if strings.TrimSpace(string(b)) != strconv.Itoa(64<<20) {
			t.Errorf("group %s memory limit %q", name, b)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := g.Destroy(); err != nil {
			t.Error(err)
		}
	}
	self, _ := os.ReadFile("/proc/self/cgroup")
	if strings.Contains(string(self), "thread-") {
		t.Errorf("the test process is left in a task's group: %s", self)
	}
	var ready []string
	for range 100 {
		ready = nil
		for _, n := range cg.List() {
			if strings.HasPrefix(n, ".ready-") {
				ready = append(ready, n)
			}
		}
		if len(ready) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(ready) == 0 {
		t.Errorf("no groups made ahead under the parent: %v", cg.List())
	}
}
