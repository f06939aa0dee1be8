package lb

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// Blue/green deploys as marathon-lb's zdd.py drives them. zdd.py starts
// the new colour as a second app with the same HAPROXY_DEPLOYMENT_GROUP,
// HAPROXY_0_PORT set to the group's service port (its own service port
// is the other colour's, HAPROXY_DEPLOYMENT_ALT_PORT), and
// HAPROXY_DEPLOYMENT_STARTED_AT / _TARGET_INSTANCES. Like marathon-lb's
// get_apps, the routing table then serves the apps of one group as one
// app whose id is the group ("/" + group): the older app's definition and
// labels, the tasks of both. As many of the older app's tasks (by task id)
// as the new app has healthy instances are marked draining, keeping
// at least TARGET_INSTANCES serving: a draining backend takes no new
// connections or requests, keeps the ones it has, and is listed as MAINT
// in the stats, where zdd.py waits for it to be idle before it kills it.

// deployTimeLayouts are the forms HAPROXY_DEPLOYMENT_STARTED_AT takes:
// zdd.py writes Python's datetime.now().isoformat() (no zone).
var deployTimeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02"}

func parseDeployTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, l := range deployTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// mergeDeploymentGroups returns the apps with each deployment group folded
// into one app, the tasks by (new) app id, and the ids of draining tasks.
func mergeDeploymentGroups(apps []*api.App, tasks map[string][]*api.Task) ([]*api.App, map[string][]*api.Task, map[string]bool, []Problem) {
	var out []*api.App
	var problems []Problem
	var draining map[string]bool
	groups := map[string]*api.App{}
	var order []string
	byID := append([]*api.App(nil), apps...)
	sort.SliceStable(byID, func(i, j int) bool { return byID[i].ID < byID[j].ID })
	merged := map[string][]*api.Task{}
	for _, a := range byID {
		g := strings.TrimSpace(a.Labels["HAPROXY_DEPLOYMENT_GROUP"])
		if g == "" {
			out = append(out, a)
			merged[a.ID] = tasks[a.ID]
			continue
		}
		if g[0] != '/' {
			g = "/" + g
		}
		cur := *a
		cur.ID = g
		curTasks := tasks[a.ID]
		prev, seen := groups[g]
		if !seen {
			groups[g] = &cur
			order = append(order, g)
			merged[g] = curTasks
			continue
		}
		started := func(x *api.App) time.Time {
			v, ok := x.Labels["HAPROXY_DEPLOYMENT_STARTED_AT"]
			if !ok {
				return time.Time{}
			}
			t, ok := parseDeployTime(v)
			if !ok {
				problems = append(problems, Problem{AppID: g, PortIndex: -1, Label: "HAPROXY_DEPLOYMENT_STARTED_AT",
					Message: fmt.Sprintf("%q is not a date (ISO 8601); taken as the oldest", v)})
			}
			return t
		}
		old, oldTasks, nw, newTasks := prev, merged[g], &cur, curTasks
		if !started(prev).Before(started(&cur)) {
			old, oldTasks, nw, newTasks = &cur, curTasks, prev, merged[g]
		}
		if _, ok := nw.Labels["HAPROXY_DEPLOYMENT_NEW_INSTANCES"]; ok {
			if nw.VersionInfo != nil && old.VersionInfo != nil {
				ns, err1 := time.Parse(time.RFC3339Nano, nw.VersionInfo.LastScalingAt)
				os, err2 := time.Parse(time.RFC3339Nano, old.VersionInfo.LastScalingAt)
				if err1 == nil && err2 == nil && os.After(ns) {
					old, oldTasks, nw, newTasks = nw, newTasks, old, oldTasks
				}
			}
		}
		// As marathon-lb: the new colour's TARGET_INSTANCES stay serving,
		// for a plain zdd deploy as for a hybrid one.
		target := 1
		if v, ok := nw.Labels["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"]; ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				problems = append(problems, Problem{AppID: g, PortIndex: -1, Label: "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
					Message: fmt.Sprintf("%q is not a number of instances; 1 is kept serving", v)})
			} else {
				target = n
			}
		}
		healthyNew := nw.Instances
		if len(nw.HealthChecks) > 0 {
			healthyNew = 0
			for _, tk := range newTasks {
				for _, r := range tk.HealthCheckResults {
					if r.Alive {
						healthyNew++
						break
					}
				}
			}
		}
		sortedOld := append([]*api.Task(nil), oldTasks...)
		sort.SliceStable(sortedOld, func(i, j int) bool { return sortedOld[i].ID < sortedOld[j].ID })
		n := min(len(sortedOld), healthyNew, max(0, healthyNew+old.Instances-target))
		for _, tk := range sortedOld[:n] {
			if draining == nil {
				draining = map[string]bool{}
			}
			draining[tk.ID] = true
		}
		groups[g] = old
		merged[g] = append(sortedOld, newTasks...)
	}
	for _, g := range order {
		out = append(out, groups[g])
	}
	return out, merged, draining, problems
}
