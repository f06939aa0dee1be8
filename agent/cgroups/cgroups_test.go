package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tests below run the package against a cgroupfs laid out in a
// temporary directory (the kernel's files written by hand), for v1 and
// v2 alike; agent's TestProcessTaskOverMemoryIsKilledWithReason runs it
// against the host's real hierarchy.

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeV2 lays out a unified hierarchy with cpu and memory available.
func fakeV2(t *testing.T) (root, mountinfo string) {
	root = t.TempDir()
	write(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(t, filepath.Join(root, "cgroup.subtree_control"), "")
	mountinfo = filepath.Join(t.TempDir(), "mountinfo")
	write(t, mountinfo, "25 30 0:22 / /proc rw - proc proc rw\n"+
		"29 30 0:26 / "+root+" rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n")
	return root, mountinfo
}

// fakeV1 lays out a hybrid host: memory, cpu and cpuacct on v1 (cpu and
// cpuacct co-mounted, as most distributions do), and an empty unified
// hierarchy beside them.
func fakeV1(t *testing.T) (root, mountinfo string) {
	root = t.TempDir()
	noPool = true
	t.Cleanup(func() { noPool = false })
	for _, d := range []string{"memory", "cpu,cpuacct", "unified"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(root, "unified", "cgroup.controllers"), "")
	mountinfo = filepath.Join(t.TempDir(), "mountinfo")
	write(t, mountinfo,
		"30 25 0:27 / "+root+"/unified rw - cgroup2 cgroup2 rw\n"+
			"31 25 0:28 / "+root+"/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"+
			"32 25 0:29 / "+root+"/memory rw - cgroup cgroup rw,memory\n")
	return root, mountinfo
}

func TestDetectV2WritesLimits(t *testing.T) {
	root, mi := fakeV2(t)
	m, err := Detect(Config{MountInfo: mi, Parent: "weft/agent-1", CPUQuota: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != V2 {
		t.Fatalf("version %v, want v2", m.Version())
	}
	// cpu and memory are passed down from the root to the parent.
	for _, d := range []string{root, filepath.Join(root, "weft"), filepath.Join(root, "weft", "agent-1")} {
		got := read(t, filepath.Join(d, "cgroup.subtree_control"))
		if got != "+cpu +memory" {
			t.Errorf("%s/cgroup.subtree_control = %q, want cpu and memory enabled", d, got)
		}
	}
	g, err := m.Create("app.task-1", Limits{Cpus: 0.5, MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "weft", "agent-1", "app.task-1")
	if g.Dir() != dir {
		t.Fatalf("group dir %s, want %s", g.Dir(), dir)
	}
	want := map[string]string{
		"memory.max":       "33554432",
		"memory.swap.max":  "0",
		"memory.oom.group": "1",
		"cpu.weight":       "20", // 512 shares
		"cpu.max":          "50000 100000",
	}
	for f, v := range want {
		if got := read(t, filepath.Join(dir, f)); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
	fd, err := g.FD()
	if err != nil {
		t.Fatalf("a v2 group opens for CLONE_INTO_CGROUP: %v", err)
	}
	_ = closeFD(fd)

	// The kernel's accounting, as the files read.
	write(t, filepath.Join(dir, "cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
	write(t, filepath.Join(dir, "memory.current"), "12582912\n")
	write(t, filepath.Join(dir, "memory.peak"), "33554432\n")
	write(t, filepath.Join(dir, "memory.stat"), "anon 10485760\nfile 2097152\n")
	write(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUSeconds != 2.5 || s.CPUUserSeconds != 2 || s.CPUSystemSeconds != 0.5 {
		t.Errorf("cpu %+v", s)
	}
	if s.MemoryUsageBytes != 12<<20 || s.MemoryRSSBytes != 10<<20 || s.MemoryLimitBytes != 32<<20 || s.MemoryMaxUsageBytes != 32<<20 {
		t.Errorf("memory %+v", s)
	}
	if s.CPUQuotaCores != 0.5 || s.CPUShares < 500 || s.CPUShares > 530 {
		t.Errorf("cpu limits %+v: want quota 0.5 and about 512 shares", s)
	}
	if g.OOMKills() != 1 || s.OOMKills != 1 {
		t.Errorf("oom kills %d/%d, want 1", g.OOMKills(), s.OOMKills)
	}
	if got := m.List(); len(got) != 1 || got[0] != "app.task-1" {
		t.Errorf("List = %v", got)
	}
	if _, ok := m.Open("app.task-1"); !ok {
		t.Error("Open finds no group")
	}
	if _, err := m.Create("../escape", Limits{}); err == nil {
		t.Error("a group name with a slash was accepted")
	}
}

func TestDetectV1OnHybridHost(t *testing.T) {
	root, mi := fakeV1(t)
	m, err := Detect(Config{MountInfo: mi, Parent: "weft/agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != V1 {
		t.Fatalf("version %v, want v1 (the unified hierarchy has no controllers)", m.Version())
	}
	mem := filepath.Join(root, "memory", "weft", "agent-1")
	cpu := filepath.Join(root, "cpu,cpuacct", "weft", "agent-1")
	if got := m.Parents(); len(got) != 2 || got[0] != cpu || got[1] != mem {
		t.Fatalf("parents %v, want %s and %s", got, cpu, mem)
	}
	g, err := m.Create("t1", Limits{Cpus: 2, MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(mem, "t1", "memory.limit_in_bytes")); got != "67108864" {
		t.Errorf("memory.limit_in_bytes = %s", got)
	}
	if got := read(t, filepath.Join(cpu, "t1", "cpu.shares")); got != "2048" {
		t.Errorf("cpu.shares = %s", got)
	}
	if _, err := os.Stat(filepath.Join(cpu, "t1", "cpu.cfs_quota_us")); err == nil {
		t.Error("a quota was set without CPUQuota")
	}
	if _, err := g.FD(); err == nil {
		t.Error("a v1 group offered one directory to clone into")
	}
	write(t, filepath.Join(mem, "t1", "memory.usage_in_bytes"), "8388608\n")
	write(t, filepath.Join(mem, "t1", "memory.max_usage_in_bytes"), "67108864\n")
	write(t, filepath.Join(mem, "t1", "memory.stat"), "cache 0\nrss 4096\ntotal_cache 0\ntotal_rss 6291456\n")
	write(t, filepath.Join(mem, "t1", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	write(t, filepath.Join(cpu, "t1", "cpuacct.usage"), "1500000000\n")
	write(t, filepath.Join(cpu, "t1", "cpuacct.stat"), "user 120\nsystem 30\n")
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryUsageBytes != 8<<20 || s.MemoryRSSBytes != 6<<20 || s.MemoryLimitBytes != 64<<20 || s.MemoryMaxUsageBytes != 64<<20 {
		t.Errorf("memory %+v", s)
	}
	if s.CPUSeconds != 1.5 || s.CPUUserSeconds != 1.2 || s.CPUSystemSeconds != 0.3 || s.CPUShares != 2048 {
		t.Errorf("cpu %+v", s)
	}
	if g.OOMKills() != 2 {
		t.Errorf("oom kills %d, want 2", g.OOMKills())
	}
}

func TestDetectRefusesWithoutControllers(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "cgroup.controllers"), "hugetlb\n")
	mi := filepath.Join(t.TempDir(), "mountinfo")
	write(t, mi, "30 25 0:27 / "+root+" rw - cgroup2 cgroup2 rw\n")
	_, err := Detect(Config{MountInfo: mi, Parent: "weft/a"})
	if err == nil || !strings.Contains(err.Error(), "not memory and cpu") {
		t.Fatalf("err = %v, want one naming the missing controllers", err)
	}
}

func TestWeightKeepsShareRatios(t *testing.T) {
	for _, c := range []struct {
		shares, weight uint64
	}{{2, 1}, {1024, 39}, {262144, 10000}, {1, 1}, {1 << 20, 10000}} {
		if got := Weight(c.shares); got != c.weight {
			t.Errorf("Weight(%d) = %d, want %d", c.shares, got, c.weight)
		}
	}
	if Shares(0.001) != 2 || Shares(1.5) != 1536 {
		t.Errorf("Shares: %d %d", Shares(0.001), Shares(1.5))
	}
}

func closeFD(fd int) error { return os.NewFile(uintptr(fd), "cgroup").Close() }
