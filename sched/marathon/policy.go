package marathon

import (
	"math"
	"sort"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// nextBackoff is Marathon's launch delay after a task of app failed or
// finished: backoffSeconds the first time, then the previous delay times
// backoffFactor, never more than maxLaunchDelaySeconds.
func nextBackoff(prev time.Duration, app *api.App) time.Duration {
	max := time.Duration(app.MaxLaunchDelaySeconds * float64(time.Second))
	var d time.Duration
	if prev <= 0 {
		d = time.Duration(app.BackoffSeconds * float64(time.Second))
	} else {
		d = time.Duration(float64(prev) * app.BackoffFactor)
	}
	if d > max {
		d = max
	}
	return d
}

// growsBackoff reports whether a task ending in state counts as a failure
// for the launch backoff: FAILED, FINISHED and ERROR do, KILLED does not
// (and LOST, GONE or DROPPED are the agent's fault, not the app's).
func growsBackoff(state string) bool {
	switch state {
	case api.TaskFailed, api.TaskFinished, api.TaskError:
		return true
	}
	return false
}

// selectKills picks n of tasks to kill when an app scales down: tasks that
// are not running yet (unreachable, staging, starting) go first, then
// killSelection decides: YOUNGEST_FIRST (Marathon's default) kills the
// most recently staged, OLDEST_FIRST the oldest.
func selectKills(tasks []*sched.TaskRecord, n int, selection string) []*sched.TaskRecord {
	if n <= 0 {
		return nil
	}
	rank := func(t *sched.TaskRecord) int {
		switch t.Task.State {
		case api.TaskUnreachable, api.TaskUnknown:
			return 0
		case api.TaskStaging, api.TaskStarting:
			return 1
		}
		if h, ok := t.Task.Healthy(); ok && !h {
			return 2
		}
		return 3
	}
	s := append([]*sched.TaskRecord(nil), tasks...)
	sort.SliceStable(s, func(i, j int) bool {
		ri, rj := rank(s[i]), rank(s[j])
		if ri != rj {
			return ri < rj
		}
		if s[i].Task.StagedAt != s[j].Task.StagedAt {
			if selection == "OLDEST_FIRST" {
				return s[i].Task.StagedAt < s[j].Task.StagedAt
			}
			return s[i].Task.StagedAt > s[j].Task.StagedAt
		}
		return s[i].Task.ID > s[j].Task.ID
	})
	if n > len(s) {
		n = len(s)
	}
	return s[:n]
}

// upgradeBounds are the task counts a deployment of an app with n
// instances must stay within: at least minHealthy healthy tasks, at most
// maxTotal tasks in all (UpgradeStrategy: ceil(n × minimumHealthCapacity),
// n + floor(n × maximumOverCapacity)).
func upgradeBounds(n int, us api.UpgradeStrategy) (minHealthy, maxTotal int) {
	minHealthy = int(math.Ceil(float64(n)*us.MinimumHealthCapacity - 1e-9))
	maxTotal = n + int(math.Floor(float64(n)*us.MaximumOverCapacity+1e-9))
	return
}

// upgradeStep decides one step of replacing old tasks with new ones.
// newActive and oldActive count tasks that should run; healthyNew and
// healthyOld count those that are up (running, and healthy and ready when
// the app has checks); oldNotUp counts old tasks that are not up. It
// returns how many new tasks may launch now and how many old ones may be
// killed now (not-up old tasks first), keeping healthy ≥ minHealthy and
// total ≤ maxTotal, and never stalling.
func upgradeStep(n, newActive, oldActive, healthyNew, healthyOld, oldNotUp int, us api.UpgradeStrategy) (launch, kill int) {
	minHealthy, maxTotal := upgradeBounds(n, us)
	launch = n - newActive
	if room := maxTotal - newActive - oldActive; launch > room {
		launch = room
	}
	if launch < 0 {
		launch = 0
	}
	if oldActive == 0 {
		return launch, 0
	}
	if healthyNew >= n {
		return launch, oldActive
	}
	kill = oldNotUp
	if k := healthyNew + healthyOld - minHealthy; k > 0 {
		kill += k
	}
	// Kill old ones beyond what n needs once new ones are coming.
	if over := newActive + oldActive - maxTotal; over > kill {
		kill = over
	}
	if kill > oldActive {
		kill = oldActive
	}
	if launch == 0 && kill == 0 && newActive < n && healthyNew == newActive {
		// minimumHealthCapacity 1 with maximumOverCapacity 0 cannot move
		// without going under: Marathon then replaces one at a time. Only
		// once every new task started so far is up: while one is still
		// starting, killing another old one would go under the minimum.
		kill = 1
	}
	return launch, kill
}
