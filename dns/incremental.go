package dns

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

// Incremental updates. A task change touches one task group (a Marathon
// app's running tasks, or a Chronos job's): the server recomputes the
// records of the groups whose tasks or app changed, and recompiles only
// the names those groups have (before or after), into a copy of the names
// map; every other name keeps its compiled answers. With 1,000 apps × 3
// tasks a rebuild allocates tens of MB per change, about ten times the CPU
// and allocations of a one-task update (BenchmarkBuildRecords against
// BenchmarkSetStateOneTask). Anything else (nodes, the leader, the record
// config, a new site, many groups at once) rebuilds the whole table.
//
// A group's SRV records point only at names of the same group (or, for the
// cluster records, at cluster names), so recompiling the names of the
// changed groups also renews every SRV answer's additional addresses.

// groupOut is what one task group contributes to the table.
type groupOut struct {
	key   string
	fw    string
	app   *api.App    // the app the records were made from (states are never modified)
	tasks []*api.Task // its running tasks, by id
	recs  []Record    // its records (deduplicated within the group)
	enum  []*EnumTask
	seen  map[recKey]bool // while building only
}

// buildInfo is what the build of a table leaves for the next update.
type buildInfo struct {
	st      *api.State
	cfg     RecordConfig        // with defaults, Serial zeroed
	others  map[string][]Record // records outside task groups, by name, in build order
	groups  map[string]*groupOut
	keys    []string               // group keys, sorted
	contrib map[string][]*groupOut // name → groups with records of that name
	kids    map[string]int         // in-zone name → its direct children in names
}

// groupTasks groups the running tasks of st as taskRecords does: by
// framework and app (Chronos: by job name), each group's tasks by id,
// groups by key.
func groupTasks(st *api.State) []*taskGroup {
	apps := make(map[string]*api.App, len(st.Apps))
	for i := range st.Apps {
		apps[st.Apps[i].ID] = st.Apps[i]
	}
	groups := map[string]*taskGroup{}
	var order []*taskGroup
	for i := range st.Tasks {
		t := st.Tasks[i]
		if t.State != api.TaskRunning {
			continue
		}
		fw := t.Framework
		if fw == "" {
			fw = "marathon"
		}
		key := fw + "\x00" + t.AppID
		if fw == "chronos" {
			key = fw + "\x00" + t.Name
		}
		g := groups[key]
		if g == nil {
			g = &taskGroup{framework: fw, key: key}
			if fw == "marathon" {
				g.app = apps[t.AppID]
				g.hasHC = g.app != nil && len(g.app.HealthChecks) > 0
			}
			groups[key] = g
			order = append(order, g)
		}
		g.tasks = append(g.tasks, t)
	}
	slices.SortFunc(order, func(a, c *taskGroup) int { return strings.Compare(a.key, c.key) })
	for _, g := range order {
		slices.SortFunc(g.tasks, func(a, c *api.Task) int { return strings.Compare(a.ID, c.ID) })
	}
	return order
}

// taskKey is the key of the task group t is in (see groupTasks).
func taskKey(t *api.Task) (fw, key string) {
	fw = t.Framework
	if fw == "" {
		fw = "marathon"
	}
	if fw == "chronos" {
		return fw, fw + "\x00" + t.Name
	}
	return fw, fw + "\x00" + t.AppID
}

// changedGroups returns, by key, the task groups of st that may differ
// from info's: those of the apps and the running tasks (before or after)
// st.ChangedSince(info.st) names, each with all its running tasks; a
// group without any is left out (see goneKeys). all is false; ok is false
// when the State does not tell what changed.
func changedGroups(info *buildInfo, st *api.State) (groups []*taskGroup, all, ok bool) {
	chApps, chTasks, ok := st.ChangedSince(info.st)
	if !ok || len(chApps)+len(chTasks) > maxPatchGroups(len(info.groups)) {
		return nil, false, false
	}
	affected := make(map[string]string, len(chApps)+2*len(chTasks)) // key → framework
	for id := range chApps {
		affected["marathon\x00"+id] = "marathon"
	}
	for id := range chTasks {
		if t := info.st.Task(id); t != nil && t.State == api.TaskRunning {
			fw, k := taskKey(t)
			affected[k] = fw
		}
		if t := st.Task(id); t != nil && t.State == api.TaskRunning {
			fw, k := taskKey(t)
			affected[k] = fw
		}
	}
	for _, key := range slices.Sorted(maps.Keys(affected)) {
		var tasks []*api.Task
		if prev := info.groups[key]; prev != nil {
			for _, t := range prev.tasks {
				if chTasks[t.ID] {
					continue
				}
				cur := st.Task(t.ID)
				if cur == nil {
					return nil, false, false // a task gone unannounced: not a Mirror's
				}
				tasks = append(tasks, cur)
			}
		}
		for id := range chTasks {
			if t := st.Task(id); t != nil && t.State == api.TaskRunning {
				if _, k := taskKey(t); k == key {
					tasks = append(tasks, t)
				}
			}
		}
		if len(tasks) == 0 {
			continue
		}
		slices.SortFunc(tasks, func(a, c *api.Task) int { return strings.Compare(a.ID, c.ID) })
		g := &taskGroup{framework: affected[key], key: key, tasks: tasks}
		if g.framework == "marathon" {
			g.app = st.App(tasks[0].AppID)
			g.hasHC = g.app != nil && len(g.app.HealthChecks) > 0
		}
		groups = append(groups, g)
	}
	return groups, false, true
}

// goneKeys are the keys of info's groups that changedGroups looked at and
// found no running task of (present: the groups it returned).
func goneKeys(info *buildInfo, st *api.State, present map[string]bool) []string {
	chApps, chTasks, _ := st.ChangedSince(info.st)
	var out []string
	check := func(k string) {
		if _, ok := info.groups[k]; ok && !present[k] && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	for id := range chApps {
		check("marathon\x00" + id)
	}
	for id := range chTasks {
		if t := info.st.Task(id); t != nil && t.State == api.TaskRunning {
			_, k := taskKey(t)
			check(k)
		}
	}
	return out
}

// sameGroup: g would give the records out was made from.
func sameGroup(g *taskGroup, out *groupOut) bool {
	if len(g.tasks) != len(out.tasks) || (g.app == nil) != (out.app == nil) {
		return false
	}
	if g.app != nil && !same(g.app, out.app, (*api.App).Rev) {
		return false
	}
	for i, t := range g.tasks {
		if !same(t, out.tasks[i], (*api.Task).Rev) {
			return false
		}
	}
	return true
}

// same: a and b are equal. From a Mirror's States (a Rev), the Rev says
// so without a deep comparison of every task of every group per change.
func same[T any](a, b *T, rev func(*T) uint64) bool {
	if a == b {
		return true
	}
	if ra, rb := rev(a), rev(b); ra != 0 || rb != 0 {
		return ra == rb
	}
	return reflect.DeepEqual(a, b)
}

func sameRecordConfig(a, b RecordConfig) bool {
	a.Serial, b.Serial = 0, 0
	return reflect.DeepEqual(a, b)
}

// maxPatchGroups: beyond this many changed groups, a rebuild is cheaper.
func maxPatchGroups(n int) int { return max(16, n/8) }

// patch returns old updated to st, or false when st needs a rebuild.
// rc is the record config with defaults applied (Serial set).
func patch(old *Table, info *buildInfo, st *api.State, rc RecordConfig) (*Table, *buildInfo, bool) {
	if old == nil || info == nil || info.st == nil || st == nil || !sameRecordConfig(rc, info.cfg) ||
		st.Leader != info.st.Leader || !reflect.DeepEqual(st.Nodes, info.st.Nodes) {
		return nil, nil, false
	}
	groups, all, ok := changedGroups(info, st)
	if !ok {
		groups, all = groupTasks(st), true
	}
	var changed []*groupOut // new outputs
	var gone []*groupOut    // outputs replaced or removed
	var added []string      // keys of the changed groups that are new
	present := make(map[string]bool, len(groups))
	b := &builder{cfg: info.cfg, zone: info.cfg.Domain + ".", label: RFC1123, nodes: map[string]*api.Node{}, seen: map[recKey]bool{}}
	if info.cfg.EnforceRFC952 {
		b.label = RFC952
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		b.nodes[n.ID] = n
	}
	b.blocks = blocksOf(st)
	limit := maxPatchGroups(len(info.groups))
	for _, g := range groups {
		present[g.key] = true
		prev := info.groups[g.key]
		if prev != nil && sameGroup(g, prev) {
			continue
		}
		if len(changed) >= limit {
			return nil, nil, false
		}
		out := b.group(g)
		for _, r := range out.recs {
			if r.Site != "" && old.sites[r.Site] == 0 {
				return nil, nil, false // a new site: ids are assigned in a full build
			}
		}
		changed = append(changed, out)
		if prev != nil {
			gone = append(gone, prev)
		} else {
			added = append(added, g.key)
		}
	}
	if all {
		for k, g := range info.groups {
			if !present[k] {
				gone = append(gone, g)
			}
		}
	} else {
		for _, k := range goneKeys(info, st, present) {
			gone = append(gone, info.groups[k])
		}
	}
	if len(gone) > limit {
		return nil, nil, false
	}
	// From here on the update cannot fail: info's indexes are updated in
	// place (only the updater uses them).
	ni := &buildInfo{st: st, cfg: info.cfg, others: info.others, contrib: info.contrib, kids: info.kids}
	ni.groups = info.groups
	// A group in gone and not changed went (each changed group that was
	// there before is in gone too).
	ck := make(map[string]*groupOut, len(changed))
	for _, g := range changed {
		ck[g.key] = g
	}
	removed := map[string]bool{}
	for _, g := range gone {
		if ck[g.key] == nil {
			removed[g.key] = true
		}
	}
	affected := map[string]bool{old.zone: true} // the SOA's serial changes
	for _, g := range gone {
		delete(ni.groups, g.key)
		for _, r := range g.recs {
			affected[r.Name] = true
		}
		for n := range namesOf(g.recs) {
			ni.contrib[n] = slices.DeleteFunc(ni.contrib[n], func(x *groupOut) bool { return x == g })
			if len(ni.contrib[n]) == 0 {
				delete(ni.contrib, n)
			}
		}
	}
	for _, g := range changed {
		ni.groups[g.key] = g
		for _, r := range g.recs {
			affected[r.Name] = true
		}
		for n := range namesOf(g.recs) {
			ni.contrib[n] = append(ni.contrib[n], g)
		}
	}

	t := &Table{
		cfg: rc, zone: old.zone, zoneWire: old.zoneWire,
		names: old.names.cow(), sites: old.sites, nodeSite: old.nodeSite, block24: old.block24,
		count: old.count, patched: true,
	}
	ni.keys, t.groups = mergeGroups(info.keys, old.groups, ni.groups, ck, added, removed)
	names := slices.Sorted(maps.Keys(affected))
	recs := make(map[string][]Record, len(names))
	for _, n := range names {
		rs := ni.recordsOf(n)
		recs[n] = rs
		t.count += len(rs) - countOf(old.names.get(n))
	}
	hasRecs := func(n string) bool {
		if rs, ok := recs[n]; ok {
			return len(rs) > 0
		}
		return countOf(t.names.get(n)) > 0
	}
	for _, n := range names {
		if len(recs[n]) == 0 {
			t.dropName(n, ni.kids, hasRecs)
		} else {
			t.addName(n, ni.kids)
			t.names.set(n, &entry{}) // fresh: the old entry is still served
		}
	}
	for _, pass := range []int{0, 1} {
		for _, n := range names {
			if rs := recs[n]; len(rs) > 0 {
				t.compileName(t.names.get(n), n, rs, pass)
			}
		}
	}
	return t, ni, true
}

// mergeGroups returns the sorted group keys and the groups in their order
// after a patch: keys (sorted) without the removed ones, with the added
// ones in their places, each group the changed one of its key, else
// old's (in keys order when old is; a full build's table has none), else
// groups'. None of the arguments is modified.
func mergeGroups(keys []string, old []*groupOut, groups map[string]*groupOut, changed map[string]*groupOut, added []string, removed map[string]bool) ([]string, []*groupOut) {
	if len(added) == 0 && len(removed) == 0 && len(old) == len(keys) {
		// The same groups: old's, with the changed ones replaced.
		out := slices.Clone(old)
		for k, g := range changed {
			i, _ := slices.BinarySearch(keys, k)
			out[i] = g
		}
		return keys, out
	}
	added = slices.Sorted(slices.Values(added))
	n := len(keys) + len(added) - len(removed)
	nk, ng := make([]string, 0, n), make([]*groupOut, 0, n)
	take := func(i int, k string) {
		g := changed[k]
		switch {
		case g != nil:
		case i >= 0 && len(old) == len(keys):
			g = old[i]
		default:
			g = groups[k]
		}
		nk, ng = append(nk, k), append(ng, g)
	}
	j := 0
	for i, k := range keys {
		for ; j < len(added) && added[j] < k; j++ {
			take(-1, added[j])
		}
		if !removed[k] {
			take(i, k)
		}
	}
	for ; j < len(added); j++ {
		take(-1, added[j])
	}
	return nk, ng
}

func namesOf(rs []Record) map[string]bool {
	m := make(map[string]bool, len(rs))
	for _, r := range rs {
		m[r.Name] = true
	}
	return m
}

// recordsOf is every record of name, deduplicated and sorted as a full
// build orders them: the zone's SOA, the records outside task groups, then
// the groups' in key order.
func (bi *buildInfo) recordsOf(name string) []Record {
	var rs []Record
	seen := map[recKey]bool{}
	add := func(r Record) {
		k := recKey{r.Name, r.Type, r.IP, r.Target, r.Port}
		if !seen[k] {
			seen[k] = true
			rs = append(rs, r)
		}
	}
	if name == bi.cfg.Domain+"." {
		add(Record{Name: name, Type: mdns.TypeSOA})
	}
	for _, r := range bi.others[name] {
		add(r)
	}
	gs := slices.Clone(bi.contrib[name])
	slices.SortFunc(gs, func(a, c *groupOut) int { return strings.Compare(a.key, c.key) })
	for _, g := range gs {
		for _, r := range g.recs {
			if r.Name == name {
				add(r)
			}
		}
	}
	slices.SortFunc(rs, compareRecords)
	return rs
}

func countOf(e *entry) int {
	if e == nil {
		return 0
	}
	n := 0
	for _, a := range [...]*answer{e.soa, e.ns, e.a, e.aaaa, e.srv, e.ptr} {
		if a != nil {
			n += len(a.records)
		}
	}
	return n
}

// parentName is name without its first label, or "" at the top.
func parentName(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return ""
	}
	return name[i+1:]
}

// addName makes name and its missing ancestors inside the zone present.
func (t *Table) addName(name string, kids map[string]int) {
	if t.names.has(name) {
		return
	}
	t.names.set(name, &entry{})
	if name == t.zone || t.zoneOffset(name) == 0 {
		return
	}
	p := parentName(name)
	kids[p]++
	t.addName(p, kids)
}

// dropName removes name when nothing is below it (else it stays, as an
// empty non-terminal), and ancestors that were there only for it.
func (t *Table) dropName(name string, kids map[string]int, hasRecs func(string) bool) {
	if name == t.zone {
		return
	}
	if !t.names.has(name) {
		return
	}
	inZone := t.zoneOffset(name) > 0
	if inZone && kids[name] > 0 {
		t.names.set(name, &entry{})
		return
	}
	t.names.del(name)
	delete(kids, name)
	if !inZone {
		return
	}
	p := parentName(name)
	kids[p]--
	if t.names.has(p) && p != t.zone && !hasRecs(p) {
		t.dropName(p, kids, hasRecs)
	}
}
