package lb

import (
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Incremental updates. A change of the cluster touches a few apps (a task
// started, an app scaled), while BuildTable looks at every app and task:
// with 1,000 apps that is most of the lb's work per change, on the node
// that also runs the master. When the State comes from the same Mirror as
// the one the table was built from (api.State.ChangedSince tells what
// changed), the proxy recomputes the services of the apps whose definition
// or tasks changed and keeps every other app's. Anything the patch cannot
// reproduce exactly as BuildTable would (other nodes or config, blue/green
// deployment groups, a service port claimed twice, many apps at once)
// rebuilds the whole table.

// tableBuild is what a build or a patch of the table leaves for the next
// update.
type tableBuild struct {
	st       *api.State
	cfg      TableConfig
	table    *Table
	problems []Problem
	// merged: some app is in a blue/green deployment group.
	merged bool
	// patchable: apps and appTasks are kept, and the table can be patched
	// (no deployment group, no service port claimed twice).
	patchable bool
	apps      map[string]*builtApp // app id → what it gave
	appTasks  map[string][]string  // app id → its tasks' ids, sorted
	// withProblems are the apps that gave problems.
	withProblems map[string]bool
}

// builtApp is what one app contributes to the table.
type builtApp struct {
	age      string // appAge
	svcs     []*Service
	problems []Problem
}

// deploymentGroup reports whether app is in a blue/green deployment group
// (served merged with the other apps of the group).
func deploymentGroup(app *api.App) bool {
	return strings.TrimSpace(app.Labels["HAPROXY_DEPLOYMENT_GROUP"]) != ""
}

// maxPatchApps: beyond this many changed apps, a rebuild is as cheap.
func maxPatchApps(n int) int { return max(16, n/8) }

// updateTable returns the table for st: prev patched when it can be, else
// built anew.
func updateTable(prev *tableBuild, st *api.State, cfg TableConfig) *tableBuild {
	if b, ok := patchTable(prev, st, cfg); ok {
		return b
	}
	return buildFull(st, cfg)
}

// patchTable returns prev updated to st, or false when st needs a full
// build. The result equals buildFull(st, cfg). prev must not be used again.
func patchTable(prev *tableBuild, st *api.State, cfg TableConfig) (*tableBuild, bool) {
	if prev == nil || !prev.patchable || st == nil || !reflect.DeepEqual(prev.cfg, cfg) ||
		!reflect.DeepEqual(prev.st.Nodes, st.Nodes) {
		return nil, false
	}
	chApps, chTasks, ok := st.ChangedSince(prev.st)
	if !ok || len(chApps)+len(chTasks) > maxPatchApps(len(prev.apps)) {
		return nil, false
	}
	// The apps to look at again: those changed, and those of the tasks
	// changed (before and after).
	affected := make(map[string]bool, len(chApps)+len(chTasks))
	for id := range chApps {
		affected[id] = true
	}
	for id := range affected {
		if a := prev.st.App(id); a != nil && deploymentGroup(a) {
			return nil, false
		}
		if a := st.App(id); a != nil && deploymentGroup(a) {
			return nil, false
		}
	}
	// From here on prev's maps are updated in place: prev is used up.
	b := &tableBuild{st: st, cfg: cfg, patchable: true, apps: prev.apps, appTasks: prev.appTasks, withProblems: prev.withProblems}
	prev.patchable = false
	if len(chTasks) > 0 {
		for id := range chTasks {
			if old := prev.st.Task(id); old != nil {
				affected[old.AppID] = true
				l := b.appTasks[old.AppID]
				if i, found := slices.BinarySearch(l, id); found {
					l = slices.Delete(slices.Clone(l), i, i+1)
					if len(l) == 0 {
						delete(b.appTasks, old.AppID)
					} else {
						b.appTasks[old.AppID] = l
					}
				}
			}
			if cur := st.Task(id); cur != nil {
				affected[cur.AppID] = true
				l := b.appTasks[cur.AppID]
				if i, found := slices.BinarySearch(l, id); !found {
					b.appTasks[cur.AppID] = slices.Insert(slices.Clone(l), i, id)
				}
			}
		}
	}
	for id := range affected {
		if a := st.App(id); a != nil && deploymentGroup(a) {
			return nil, false // an app joined a group
		}
	}
	nodes := map[string]*api.Node{}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		nodes["id:"+n.ID] = n
		nodes["name:"+n.Name] = n
	}
	for id := range affected {
		delete(b.apps, id)
		delete(b.withProblems, id)
		app := st.App(id)
		if app == nil {
			continue
		}
		ids := b.appTasks[id]
		tasks := make([]*api.Task, 0, len(ids))
		for _, tid := range ids {
			if tk := st.Task(tid); tk != nil {
				tasks = append(tasks, tk)
			}
		}
		svcs, ps := appServices(app, tasks, nodes, cfg, nil)
		b.apps[id] = &builtApp{age: appAge(app), svcs: svcs, problems: ps}
		if len(ps) > 0 {
			b.withProblems[id] = true
		}
	}

	// The services: prev's without the affected apps', with their new ones.
	t := &Table{Index: st.Index, ByPort: make(map[int]*Service, len(prev.table.Services))}
	for _, s := range prev.table.Services {
		if !affected[s.AppID] {
			t.Services = append(t.Services, s)
			t.ByPort[s.ServicePort] = s
		}
	}
	for id := range affected {
		if ba := b.apps[id]; ba != nil {
			for _, s := range ba.svcs {
				if _, taken := t.ByPort[s.ServicePort]; taken {
					return nil, false // which app keeps it depends on their ages
				}
				t.ByPort[s.ServicePort] = s
				t.Services = append(t.Services, s)
			}
		}
	}
	sort.Slice(t.Services, func(i, j int) bool { return t.Services[i].ServicePort < t.Services[j].ServicePort })
	t.index()

	// The problems, app by app as BuildTable orders them: older apps first.
	with := make([]string, 0, len(b.withProblems))
	for id := range b.withProblems {
		with = append(with, id)
	}
	sort.Slice(with, func(i, j int) bool {
		ai, aj := b.apps[with[i]].age, b.apps[with[j]].age
		if ai != aj {
			return ai < aj
		}
		return with[i] < with[j]
	})
	for _, id := range with {
		b.problems = append(b.problems, b.apps[id].problems...)
	}
	t.Problems = b.problems
	b.table = t
	return b, true
}
