// Package cgroups gives each process task a control group of its own, on
// cgroup v1 (one hierarchy per controller) or v2 (the unified hierarchy):
// a memory limit, a cpu share (and optionally a CFS quota), usage read
// back from the group, OOM kills detected, and the group killed and
// removed once the task is over.
//
// Groups live under one parent per agent (Config.Parent, e.g.
// "weft/<agent>"), so agents sharing a host never touch each other's
// groups. The package reads and writes cgroupfs files only; it imports no
// weft package.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Version is the cgroup hierarchy in use.
type Version int

// Versions.
const (
	None Version = 0
	V1   Version = 1
	V2   Version = 2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "cgroups-v1"
	case V2:
		return "cgroups-v2"
	}
	return "no-cgroups"
}

// Config says where to find the hierarchies and where weft's groups go.
type Config struct {
	// MountInfo is the mount table to search (default /proc/self/mountinfo).
	MountInfo string
	// Parent is the path of the agent's parent group below each
	// hierarchy's root, e.g. "weft/agent-1". Required.
	Parent string
	// CPUQuota also caps each task at its cpus with a CFS quota
	// (cpu.cfs_quota_us / cpu.max), as Mesos's --cgroups_enable_cfs does;
	// without it cpus only weighs the task against the others (shares).
	CPUQuota bool
	// CPUPeriod is the CFS period used with CPUQuota (default 100 ms).
	CPUPeriod time.Duration
}

// Manager creates and opens task groups.
type Manager struct {
	cfg     Config
	version Version
	// v1: controller ("memory", "cpu", "cpuacct") -> the parent's dir;
	// v2: "" -> the parent's dir.
	dirs map[string]string
	// v2: the hierarchy's mount point (for enabling controllers).
	mount string

	// v1: groups made ahead of need, renamed to a task's when it starts
	// (a v1 mkdir of memory and cpu groups is most of a launch's cgroup
	// cost; v1 renames within a parent, v2 does not rename at all).
	poolMu   sync.Mutex
	pool     []string
	poolSeq  int
	poolOnce sync.Once
	poolKick chan struct{}

	oom oomWatcher // WatchOOM's
}

// poolSize is how many v1 groups are kept made ahead.
const poolSize = 4

// poolPrefix names the groups made ahead; a leftover one (after a
// restart) is removed like any group of no task.
const poolPrefix = ".ready-"

// v1Controllers are the v1 hierarchies weft uses; memory and cpu are
// required, cpuacct is read for usage when present.
var v1Controllers = []string{"memory", "cpu", "cpuacct"}

// Detect finds the cgroup hierarchy weft can use. It returns an error
// saying why when none fits (not root, no memory or cpu controller,
// controllers bound elsewhere); callers then run tasks without limits.
func Detect(cfg Config) (*Manager, error) {
	if cfg.Parent == "" {
		return nil, errors.New("cgroups: no parent group given")
	}
	if cfg.MountInfo == "" {
		cfg.MountInfo = "/proc/self/mountinfo"
	}
	if cfg.CPUPeriod <= 0 {
		cfg.CPUPeriod = 100 * time.Millisecond
	}
	raw, err := os.ReadFile(cfg.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	mounts := parseMountInfo(string(raw))
	m := &Manager{cfg: cfg, dirs: map[string]string{}}
	// v1 first: on a hybrid host the memory controller is bound to v1
	// and the unified mount has none of the controllers.
	for _, mt := range mounts {
		if mt.fsType != "cgroup" {
			continue
		}
		for _, c := range v1Controllers {
			if slices.Contains(mt.options, c) && m.dirs[c] == "" {
				m.dirs[c] = filepath.Join(mt.point, cfg.Parent)
			}
		}
	}
	if m.dirs["memory"] != "" && m.dirs["cpu"] != "" {
		m.version = V1
		return m, m.checkWritable()
	}
	var v2why string
	for _, mt := range mounts {
		if mt.fsType != "cgroup2" {
			continue
		}
		ctrl, err := os.ReadFile(filepath.Join(mt.point, "cgroup.controllers"))
		if err != nil {
			v2why = err.Error()
			continue
		}
		have := strings.Fields(string(ctrl))
		if !slices.Contains(have, "memory") || !slices.Contains(have, "cpu") {
			v2why = fmt.Sprintf("the cgroup2 hierarchy at %s has controllers %q, not memory and cpu", mt.point, have)
			continue
		}
		m.version, m.mount = V2, mt.point
		m.dirs = map[string]string{"": filepath.Join(mt.point, cfg.Parent)}
		return m, m.checkWritable()
	}
	if v2why != "" {
		return nil, errors.New("no usable cgroup hierarchy: " + v2why)
	}
	return nil, errors.New("no cgroup hierarchy with the memory and cpu controllers is mounted")
}

// checkWritable creates the parent groups, proving the agent may.
func (m *Manager) checkWritable() error {
	if err := m.ensureParent(); err != nil {
		return err
	}
	return nil
}

func (m *Manager) ensureParent() error {
	if m.version == V2 {
		// Every group from the root down to the parent must pass cpu and
		// memory on to its children.
		rel := strings.Split(filepath.Clean(m.cfg.Parent), string(filepath.Separator))
		dir := m.mount
		for _, part := range append([]string{""}, rel...) {
			if part != "" {
				dir = filepath.Join(dir, part)
				if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
					return fmt.Errorf("creating cgroup %s: %w", dir, err)
				}
			}
			if err := enableControllers(dir); err != nil {
				return err
			}
		}
		return nil
	}
	for c, dir := range m.dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the %s cgroup %s: %w", c, dir, err)
		}
	}
	return nil
}

// enableControllers turns on cpu and memory for dir's children (v2).
func enableControllers(dir string) error {
	p := filepath.Join(dir, "cgroup.subtree_control")
	cur, _ := os.ReadFile(p)
	on := strings.Fields(string(cur))
	var add []string
	for _, c := range []string{"cpu", "memory"} {
		if !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(p, []byte(strings.Join(add, " ")), 0o644); err != nil {
		return fmt.Errorf("enabling the cpu and memory controllers in %s: %w", dir, err)
	}
	return nil
}

// Version is the hierarchy in use.
func (m *Manager) Version() Version { return m.version }

// Parents are the agent's parent groups (one per v1 controller, or one).
func (m *Manager) Parents() []string {
	var out []string
	for _, d := range m.dirs {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// Limits are what one task may use.
type Limits struct {
	// Cpus is the task's cpus: shares (v1 cpu.shares = cpus*1024, v2 the
	// same shares mapped to cpu.weight) and, with Config.CPUQuota, a CFS
	// quota of cpus cores. 0 leaves the default.
	Cpus float64
	// MemoryBytes is the hard memory limit; 0 means none.
	MemoryBytes int64
}

// Group is one task's control group.
type Group struct {
	m    *Manager
	name string
	dirs map[string]string // like Manager.dirs, for this group
}

// Name is the group's name below the parent.
func (g *Group) Name() string { return g.name }

// Dir is the group's directory (v2), or its memory hierarchy's (v1).
func (g *Group) Dir() string {
	if d, ok := g.dirs[""]; ok {
		return d
	}
	return g.dirs["memory"]
}

func (m *Manager) group(name string) (*Group, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n") {
		return nil, fmt.Errorf("cgroups: bad group name %q", name)
	}
	g := &Group{m: m, name: name, dirs: map[string]string{}}
	for c, d := range m.dirs {
		g.dirs[c] = filepath.Join(d, name)
	}
	return g, nil
}

// Create makes the group name (replacing a leftover of the same name) and
// sets its limits.
func (m *Manager) Create(name string, l Limits) (*Group, error) {
	g, err := m.group(name)
	if err != nil {
		return nil, err
	}
	if m.version == V1 {
		if !noPool {
			m.poolOnce.Do(m.startPool)
		}
		if !noPool && m.fromPool(g) {
			if err := g.setLimits(l); err != nil {
				g.Destroy()
				return nil, err
			}
			return g, nil
		}
	}
	if err := m.ensureParent(); err != nil {
		return nil, err
	}
	for _, d := range g.dirs {
		if _, err := os.Stat(d); err == nil {
			g.Destroy()
			break
		}
	}
	for c, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			g.Destroy()
			return nil, fmt.Errorf("creating the task's %scgroup %s: %w", prefix(c), d, err)
		}
	}
	if err := g.setLimits(l); err != nil {
		g.Destroy()
		return nil, err
	}
	return g, nil
}

// noPool turns the pool off for tests on a fake hierarchy: t.TempDir
// removes it while the pool's goroutine may still be making groups in it.
var noPool bool

// startPool starts the goroutine that keeps poolSize groups made ahead.
func (m *Manager) startPool() {
	m.poolKick = make(chan struct{}, 1)
	m.poolKick <- struct{}{}
	go func() {
		for range m.poolKick {
			m.fillPool()
		}
	}()
}

func (m *Manager) fillPool() {
	if m.ensureParent() != nil {
		return
	}
	for {
		m.poolMu.Lock()
		if len(m.pool) >= poolSize {
			m.poolMu.Unlock()
			return
		}
		m.poolSeq++
		name := fmt.Sprintf("%s%d-%d", poolPrefix, os.Getpid(), m.poolSeq)
		m.poolMu.Unlock()
		g, _ := m.group(name)
		ok := true
		for _, d := range g.dirs {
			if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
				ok = false
			}
		}
		if !ok {
			g.Destroy()
			return
		}
		m.poolMu.Lock()
		m.pool = append(m.pool, name)
		m.poolMu.Unlock()
	}
}

// fromPool renames a group made ahead to g's name, in each hierarchy;
// false when there is none ready or the rename fails (g is then made as
// without a pool).
func (m *Manager) fromPool(g *Group) bool {
	m.poolMu.Lock()
	var name string
	if n := len(m.pool); n > 0 {
		name, m.pool = m.pool[n-1], m.pool[:n-1]
	}
	m.poolMu.Unlock()
	select {
	case m.poolKick <- struct{}{}:
	default:
	}
	if name == "" {
		return false
	}
	ready, _ := m.group(name)
	for _, d := range g.dirs {
		if _, err := os.Stat(d); err == nil {
			// A leftover of the same name: Create replaces it the slow way.
			m.poolMu.Lock()
			m.pool = append(m.pool, name)
			m.poolMu.Unlock()
			return false
		}
	}
	renamed := map[string]string{} // from -> to (cpu and cpuacct often share a dir)
	for c, d := range ready.dirs {
		if _, ok := renamed[d]; ok {
			continue
		}
		if err := os.Rename(d, g.dirs[c]); err != nil {
			for from, to := range renamed {
				_ = os.Rename(to, from)
			}
			ready.Destroy()
			return false
		}
		renamed[d] = g.dirs[c]
	}
	return true
}

func prefix(c string) string {
	if c == "" {
		return ""
	}
	return c + " "
}

// Open returns the existing group name (after an agent restart), or
// false when it is not there.
func (m *Manager) Open(name string) (*Group, bool) {
	g, err := m.group(name)
	if err != nil {
		return nil, false
	}
	if _, err := os.Stat(g.Dir()); err != nil {
		return nil, false
	}
	return g, true
}

// List returns the names of the groups under the agent's parent.
func (m *Manager) List() []string {
	var out []string
	for _, d := range m.Parents() {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() && !slices.Contains(out, e.Name()) {
				out = append(out, e.Name())
			}
		}
	}
	slices.Sort(out)
	return out
}

// Shares is cpu.shares for cpus (Mesos: cpus*1024, at least 2).
func Shares(cpus float64) uint64 {
	s := uint64(cpus * 1024)
	if s < 2 {
		s = 2
	}
	return s
}

// Weight maps v1 shares [2, 262144] onto v2's cpu.weight [1, 10000], as
// the OCI runtimes do: 1024 shares (one cpu) give weight 39, and the
// ratio between two tasks is about kept.
func Weight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

func (g *Group) setLimits(l Limits) error {
	m := g.m
	period := uint64(m.cfg.CPUPeriod / time.Microsecond)
	quota := uint64(l.Cpus * float64(period))
	if quota < 1000 {
		quota = 1000 // the kernel's floor
	}
	var writes [][2]string // file, value
	if m.version == V2 {
		d := g.dirs[""]
		if l.MemoryBytes > 0 {
			writes = append(writes,
				[2]string{filepath.Join(d, "memory.max"), strconv.FormatInt(l.MemoryBytes, 10)},
				[2]string{filepath.Join(d, "memory.swap.max"), "0"},
				[2]string{filepath.Join(d, "memory.oom.group"), "1"})
		}
		if l.Cpus > 0 {
			writes = append(writes, [2]string{filepath.Join(d, "cpu.weight"), strconv.FormatUint(Weight(Shares(l.Cpus)), 10)})
			if m.cfg.CPUQuota {
				writes = append(writes, [2]string{filepath.Join(d, "cpu.max"), fmt.Sprintf("%d %d", quota, period)})
			}
		}
	} else {
		if l.MemoryBytes > 0 {
			writes = append(writes, [2]string{filepath.Join(g.dirs["memory"], "memory.limit_in_bytes"), strconv.FormatInt(l.MemoryBytes, 10)})
			// Without swap accounting the limit is the whole story; with it,
			// memory plus swap gets the same limit, so swap cannot stretch it.
			if _, err := os.Stat(filepath.Join(g.dirs["memory"], "memory.memsw.limit_in_bytes")); err == nil {
				writes = append(writes, [2]string{filepath.Join(g.dirs["memory"], "memory.memsw.limit_in_bytes"), strconv.FormatInt(l.MemoryBytes, 10)})
			}
		}
		if l.Cpus > 0 {
			writes = append(writes, [2]string{filepath.Join(g.dirs["cpu"], "cpu.shares"), strconv.FormatUint(Shares(l.Cpus), 10)})
			if m.cfg.CPUQuota {
				writes = append(writes,
					[2]string{filepath.Join(g.dirs["cpu"], "cpu.cfs_period_us"), strconv.FormatUint(period, 10)},
					[2]string{filepath.Join(g.dirs["cpu"], "cpu.cfs_quota_us"), strconv.FormatUint(quota, 10)})
			}
		}
	}
	for _, w := range writes {
		if err := os.WriteFile(w[0], []byte(w[1]), 0o644); err != nil {
			if errors.Is(err, os.ErrNotExist) && (strings.HasSuffix(w[0], "swap.max") || strings.HasSuffix(w[0], "oom.group")) {
				continue // a kernel without swap accounting or oom.group
			}
			return fmt.Errorf("setting %s to %s: %w", w[0], w[1], err)
		}
	}
	return nil
}

// FD opens the group's directory for clone3's CLONE_INTO_CGROUP
// (syscall.SysProcAttr.CgroupFD); v2 only. The caller closes it.
func (g *Group) FD() (int, error) {
	d, ok := g.dirs[""]
	if !ok {
		return -1, errors.New("cgroups: a v1 group has no single directory to clone into")
	}
	return unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// Add moves process pid (with its threads) into the group.
func (g *Group) Add(pid int) error {
	for c, d := range g.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving process %d into the %scgroup: %w", pid, prefix(c), err)
		}
	}
	return nil
}

// Pids lists the processes in the group.
func (g *Group) Pids() []int {
	raw, err := os.ReadFile(filepath.Join(g.Dir(), "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// OOMKills is how many processes of the group the kernel killed for
// exceeding its memory limit (v1 memory.oom_control, v2 memory.events).
func (g *Group) OOMKills() uint64 {
	if d, ok := g.dirs[""]; ok {
		return readKey(filepath.Join(d, "memory.events"), "oom_kill")
	}
	return readKey(filepath.Join(g.dirs["memory"], "memory.oom_control"), "oom_kill")
}

// Kill SIGKILLs every process of the group until it is empty or wait
// has passed; it reports whether the group is empty.
func (g *Group) Kill(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	if d, ok := g.dirs[""]; ok {
		_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0o644)
	}
	for {
		pids := g.Pids()
		if len(pids) == 0 {
			return true
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Destroy kills what is left in the group and removes it.
func (g *Group) Destroy() error {
	g.Kill(2 * time.Second)
	var errs []error
	for _, d := range g.dirs {
		var err error
		for i := 0; i < 50; i++ {
			err = syscall.Rmdir(d)
			if err == nil || err == syscall.ENOENT {
				err = nil
				break
			}
			if err != syscall.EBUSY {
				break
			}
			time.Sleep(10 * time.Millisecond) // exited processes still leaving
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// Stats is a group's usage and limits.
type Stats struct {
	CPUUserSeconds      float64 // user time of every process the group has held
	CPUSystemSeconds    float64
	CPUSeconds          float64 // user + system, exact (cpuacct.usage / usage_usec)
	MemoryUsageBytes    uint64  // memory charged now (page cache included)
	MemoryRSSBytes      uint64  // anonymous memory (rss)
	MemoryMaxUsageBytes uint64  // the most charged at once (v2: memory.peak, where the kernel has it)
	MemoryLimitBytes    uint64  // 0: no limit
	CPUShares           uint64  // v1 cpu.shares (v2: derived from cpu.weight)
	CPUQuotaCores       float64 // 0: no quota
	OOMKills            uint64
}

// userHZ is the unit of cpuacct.stat (USER_HZ, 100 on Linux).
const userHZ = 100

// Stats reads the group's usage.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	if d, ok := g.dirs[""]; ok {
		if _, err := os.Stat(d); err != nil {
			return s, err
		}
		cpu := readKeys(filepath.Join(d, "cpu.stat"))
		s.CPUSeconds = float64(cpu["usage_usec"]) / 1e6
		s.CPUUserSeconds = float64(cpu["user_usec"]) / 1e6
		s.CPUSystemSeconds = float64(cpu["system_usec"]) / 1e6
		s.MemoryUsageBytes = readUint(filepath.Join(d, "memory.current"))
		s.MemoryMaxUsageBytes = readUint(filepath.Join(d, "memory.peak"))
		s.MemoryRSSBytes = readKeys(filepath.Join(d, "memory.stat"))["anon"]
		s.MemoryLimitBytes = readUint(filepath.Join(d, "memory.max")) // "max" reads as 0
		if w := readUint(filepath.Join(d, "cpu.weight")); w > 0 {
			s.CPUShares = 2 + ((w-1)*262142+9998)/9999
		}
		s.CPUQuotaCores = readQuotaV2(filepath.Join(d, "cpu.max"))
		s.OOMKills = readKey(filepath.Join(d, "memory.events"), "oom_kill")
		return s, nil
	}
	md := g.dirs["memory"]
	if _, err := os.Stat(md); err != nil {
		return s, err
	}
	s.MemoryUsageBytes = readUint(filepath.Join(md, "memory.usage_in_bytes"))
	s.MemoryMaxUsageBytes = readUint(filepath.Join(md, "memory.max_usage_in_bytes"))
	ms := readKeys(filepath.Join(md, "memory.stat"))
	s.MemoryRSSBytes = ms["total_rss"]
	if _, ok := ms["total_rss"]; !ok {
		s.MemoryRSSBytes = ms["rss"]
	}
	if lim := readUint(filepath.Join(md, "memory.limit_in_bytes")); lim < 1<<62 {
		s.MemoryLimitBytes = lim
	}
	s.OOMKills = readKey(filepath.Join(md, "memory.oom_control"), "oom_kill")
	cd := g.dirs["cpu"]
	s.CPUShares = readUint(filepath.Join(cd, "cpu.shares"))
	if q, err := strconv.ParseInt(readString(filepath.Join(cd, "cpu.cfs_quota_us")), 10, 64); err == nil && q > 0 {
		if p := readUint(filepath.Join(cd, "cpu.cfs_period_us")); p > 0 {
			s.CPUQuotaCores = float64(q) / float64(p)
		}
	}
	ad := g.dirs["cpuacct"]
	if ad == "" {
		ad = cd
	}
	s.CPUSeconds = float64(readUint(filepath.Join(ad, "cpuacct.usage"))) / 1e9
	st := readKeys(filepath.Join(ad, "cpuacct.stat"))
	s.CPUUserSeconds = float64(st["user"]) / userHZ
	s.CPUSystemSeconds = float64(st["system"]) / userHZ
	return s, nil
}

func readQuotaV2(path string) float64 {
	f := strings.Fields(readString(path))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	q, err1 := strconv.ParseFloat(f[0], 64)
	p, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || p == 0 {
		return 0
	}
	return q / p
}

func readString(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

func readUint(path string) uint64 {
	n, _ := strconv.ParseUint(readString(path), 10, 64)
	return n
}

// readKeys reads a flat keyed file ("key value" per line).
func readKeys(path string) map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func readKey(path, key string) uint64 { return readKeys(path)[key] }

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point   string
	fsType  string
	options []string // super options (v1: the controllers)
}

// parseMountInfo reads the cgroup mounts of a mountinfo table.
func parseMountInfo(s string) []mount {
	var out []mount
	for _, line := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf := strings.Fields(pre)
		qf := strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		if qf[0] != "cgroup" && qf[0] != "cgroup2" {
			continue
		}
		out = append(out, mount{point: unescape(pf[4]), fsType: qf[0], options: strings.Split(qf[2], ",")})
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EnterThread moves the calling OS thread, which the caller has locked
// (runtime.LockOSThread), into g in each v1 hierarchy: a process the
// thread forks meanwhile starts in g, before it runs anything, with no
// stop at its exec. v1 moves a single thread through its hierarchy's
// "tasks" file; the memory controller charges the agent's memory to its
// own group still (the thread is not its mm's owner). restore moves the
// thread back to where it was; it is non-nil whenever some hierarchy was
// entered, also with an error. v2 has CLONE_INTO_CGROUP (FD) instead.
func (g *Group) EnterThread() (restore func() error, err error) {
	if g.m.version != V1 {
		return nil, errors.New("cgroups: EnterThread is for v1 (v2 clones into the group)")
	}
	tid := strconv.Itoa(unix.Gettid())
	raw, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups: the thread's groups: %w", err)
	}
	// controller -> the thread's path in its hierarchy
	cur := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			cur[c] = f[2]
		}
	}
	var back []string // tasks files to return to
	restore = func() error {
		var errs []error
		for _, f := range back {
			if err := os.WriteFile(f, []byte(tid), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("cgroups: moving the agent's thread back to %s: %w", filepath.Dir(f), err))
			}
		}
		return errors.Join(errs...)
	}
	done := map[string]bool{} // dirs entered (cpu and cpuacct often share one)
	for _, c := range slices.Sorted(maps.Keys(g.dirs)) {
		d := g.dirs[c]
		if done[d] {
			continue
		}
		path, ok := cur[c]
		if !ok {
			return restore, fmt.Errorf("cgroups: the thread has no %s group", c)
		}
		mount := strings.TrimSuffix(g.m.dirs[c], "/"+g.m.cfg.Parent)
		from := filepath.Join(mount, path, "tasks")
		if err := os.WriteFile(filepath.Join(d, "tasks"), []byte(tid), 0o644); err != nil {
			return restore, fmt.Errorf("cgroups: moving the agent's thread into the %scgroup: %w", prefix(c), err)
		}
		done[d] = true
		back = append(back, from)
	}
	return restore, nil
}
