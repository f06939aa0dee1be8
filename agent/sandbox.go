package agent

import (
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// sandboxEntry is one sandbox dir and, if its task has ended, when.
type sandboxEntry struct {
	Name   string
	Live   bool      // its task runs (or starts) here
	DoneAt time.Time // when its task ended (dir mtime when unknown)
}

// sandboxesToRemove picks the finished sandboxes to delete: those that
// ended more than keep ago, and beyond the newest keepCount.
func sandboxesToRemove(entries []sandboxEntry, now time.Time, keep time.Duration, keepCount int) []string {
	var done []sandboxEntry
	for _, e := range entries {
		if !e.Live {
			done = append(done, e)
		}
	}
	sort.SliceStable(done, func(i, j int) bool { return done[i].DoneAt.After(done[j].DoneAt) })
	var out []string
	for i, e := range done {
		if i >= keepCount || now.Sub(e.DoneAt) > keep {
			out = append(out, e.Name)
		}
	}
	sort.Strings(out)
	return out
}

// gcKeep is how long finished sandboxes are kept with the disk used
// fraction full: delay * max(0, 1 - headroom - used), Mesos's rule.
func gcKeep(delay time.Duration, headroom, used float64) time.Duration {
	f := max(0, 1-headroom-used)
	return time.Duration(float64(delay) * f)
}

// diskUsage is the used fraction of the file system holding dir.
func diskUsage(dir string) (float64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	if st.Blocks == 0 {
		return 0, nil
	}
	// Blocks less those free to unprivileged users, as df counts them.
	used := float64(st.Blocks - st.Bfree)
	return used / (used + float64(st.Bavail)), nil
}

// gcSandboxes removes old sandboxes of finished tasks.
func (a *Agent) gcSandboxes() {
	ents, err := os.ReadDir(a.sandboxes)
	if err != nil {
		a.log.Warn("listing sandboxes", "err", err)
		return
	}
	a.mu.Lock()
	live := map[string]bool{}
	doneAt := map[string]time.Time{}
	for _, t := range a.tasks {
		name := filepath.Base(t.sandbox)
		if t.finished {
			doneAt[name] = t.doneAt
		} else {
			live[name] = true
		}
	}
	for id := range a.recovered {
		live[sanitizeID(id)] = true
	}
	a.mu.Unlock()
	var entries []sandboxEntry
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		se := sandboxEntry{Name: e.Name(), Live: live[e.Name()], DoneAt: doneAt[e.Name()]}
		if se.DoneAt.IsZero() {
			if fi, err := e.Info(); err == nil {
				se.DoneAt = fi.ModTime()
			}
		}
		entries = append(entries, se)
	}
	keep := a.cfg.SandboxKeep
	usage := a.cfg.DiskUsage
	if usage == nil {
		usage = diskUsage
	}
	if used, err := usage(a.sandboxes); err != nil {
		a.log.Warn("reading the sandboxes' disk use; sandboxes are kept for --gc-delay regardless", "err", err)
	} else {
		keep = gcKeep(keep, a.cfg.GCDiskHeadroom, used)
	}
	for _, name := range sandboxesToRemove(entries, a.cfg.Now(), keep, a.cfg.SandboxKeepCount) {
		if err := os.RemoveAll(filepath.Join(a.sandboxes, name)); err != nil {
			a.log.Warn("removing sandbox", "sandbox", name, "err", err)
		} else {
			a.log.Debug("removed the sandbox of a finished task", "sandbox", name)
		}
	}
}
