package cgroups

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestWatchOOMFakeV2: on a fake unified hierarchy the watch is an inotify
// watch on memory.events: a write that leaves oom_kill at 0 calls
// nothing, one that raises it calls fn once, and a stopped watch is
// silent. Two groups share the one watcher.
func TestWatchOOMFakeV2(t *testing.T) {
	_, mi := fakeV2(t)
	m, err := Detect(Config{MountInfo: mi, Parent: "weft/agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	fired := map[string]chan struct{}{}
	stops := map[string]func(){}
	for _, name := range []string{"a", "b"} {
		g, err := m.Create(name, Limits{MemoryBytes: 32 << 20})
		if err != nil {
			t.Fatal(err)
		}
		events := filepath.Join(g.Dir(), "memory.events")
		write(t, events, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
		ch := make(chan struct{}, 4)
		fired[name] = ch
		stops[name], err = m.WatchOOM(g, func() { ch <- struct{}{} })
		if err != nil {
			t.Fatal(err)
		}
	}
	a := filepath.Join(m.dirs[""], "a", "memory.events")
	write(t, a, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
	select {
	case <-fired["a"]:
		t.Fatal("fn called with oom_kill 0")
	case <-time.After(oomConfirm + 300*time.Millisecond):
	}
	write(t, a, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	select {
	case <-fired["a"]:
	case <-time.After(2 * time.Second):
		t.Fatal("no call within 2s of oom_kill 1")
	}
	write(t, a, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
	stops["b"]()
	write(t, filepath.Join(m.dirs[""], "b", "memory.events"), "oom_kill 1\n")
	time.Sleep(300 * time.Millisecond)
	if len(fired["a"]) != 0 || len(fired["b"]) != 0 {
		t.Fatalf("calls after the first: a %d more, b (stopped) %d", len(fired["a"]), len(fired["b"]))
	}
	stops["a"]()
	m.oom.mu.Lock()
	idle := m.oom.ep == nil
	m.oom.mu.Unlock()
	if !idle {
		t.Error("the watcher is still open with nothing watched")
	}
}

// TestWatchOOMRealHierarchy: on this host's real hierarchy, a group whose
// process the kernel kills for memory is told through the event path
// (inotify on v2, eventfd on v1) while the group's shell lives on, well
// before a poll would matter; a calm group beside it is not.
func TestWatchOOMRealHierarchy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	m, err := Detect(Config{Parent: "weft-test/" + hex.EncodeToString(b)})
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
			_ = os.Remove(filepath.Dir(d))
		}
	})
	start := func(name, script string) (*Group, *exec.Cmd, chan time.Time) {
		g, err := m.Create(name, Limits{Cpus: 0.25, MemoryBytes: 32 << 20})
		if err != nil {
			t.Fatal(err)
		}
		fired := make(chan time.Time, 2)
		stop, err := m.WatchOOM(g, func() { fired <- time.Now() })
		if err != nil {
			t.Fatalf("WatchOOM on %s: %v", m.Version(), err)
		}
		t.Cleanup(stop)
		// The shell waits on stdin until it is in its group.
		cmd := exec.Command("sh", "-c", "read go; "+script)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
		if err := g.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Write([]byte("\n")); err != nil {
			t.Fatal(err)
		}
		return g, cmd, fired
	}
	calm, _, calmFired := start("calm", "sleep 60")
	hog, cmd, hogFired := start("hog", "head -c "+strconv.Itoa(200<<20)+" /dev/zero | tail; sleep 60")
	began := time.Now()
	select {
	case at := <-hogFired:
		if d := at.Sub(began); d > 5*time.Second {
			t.Errorf("told %v after the hog started, want within 5s", d)
		}
		t.Logf("%s: told of the OOM kill %v after the hog started", m.Version(), at.Sub(began).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("no OOM call within 10s (oom_kill %d)", hog.OOMKills())
	}
	if hog.OOMKills() == 0 {
		t.Error("called with oom_kill 0")
	}
	// The shell outlived its killed child: only the event told.
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Errorf("the hog's shell is gone (%v): the test no longer shows the event path alone", err)
	}
	if len(hogFired) != 0 {
		t.Error("fn called twice")
	}
	select {
	case <-calmFired:
		t.Errorf("the calm group was told of an OOM kill (oom_kill %d)", calm.OOMKills())
	case <-time.After(300 * time.Millisecond):
	}
}
