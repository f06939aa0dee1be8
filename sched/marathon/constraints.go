package marathon

import (
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/weftnet/weft/sched/api"
)

// facts are what constraints can look at on an agent: its hostname, its
// site and its attributes; and, to tell which agents an app could use at
// all (GROUP_BY's groups), whether it runs tasks, its resource role, its
// docker capability and its total resources.
type facts struct {
	Host  string
	Site  string
	Attrs map[string]string

	Agent  bool          // an alive node that runs tasks (not a master only)
	Role   string        // resource role of its offers: "*" or e.g. slave_public
	Docker bool          // it can run Docker containers
	Total  api.Resources // all it has, used or not
}

// value is the agent's value for a constraint field: hostname (or
// @hostname), site (@region and @zone are aliases of weft's site), or an
// attribute. ok is false when the agent lacks it.
func (f facts) value(field string) (string, bool) {
	switch field {
	case "hostname", "@hostname":
		return f.Host, f.Host != ""
	case "site", "@region", "@zone":
		if f.Site == "" {
			v, ok := f.Attrs[strings.TrimPrefix(field, "@")]
			return v, ok
		}
		return f.Site, true
	}
	v, ok := f.Attrs[field]
	return v, ok
}

var (
	reMu    sync.Mutex
	reCache = map[string]*regexp.Regexp{}
)

// fullMatch reports whether s matches pattern as a whole (Java's
// Pattern.matches, which Marathon uses).
func fullMatch(pattern, s string) bool {
	reMu.Lock()
	re, ok := reCache[pattern]
	if !ok {
		var err error
		re, err = regexp.Compile("^(?:" + pattern + ")$")
		if err != nil {
			re = nil
		}
		if len(reCache) > 1024 {
			reCache = map[string]*regexp.Regexp{}
		}
		reCache[pattern] = re
	}
	reMu.Unlock()
	return re != nil && re.MatchString(s)
}

// meetsConstraint decides whether a task of an app may go on the agent
// described by cand, given the agents its other tasks run on (placed) and
// every agent of the cluster (all, for GROUP_BY's groups). An agent that
// lacks the field matches only UNLIKE. Pure: the framework and the table
// tests call it the same way.
func meetsConstraint(c []string, cand facts, placed []facts, all []facts) bool {
	if len(c) < 2 {
		return true
	}
	field, op, value := c[0], strings.ToUpper(c[1]), ""
	if len(c) > 2 {
		value = c[2]
	}
	v, ok := cand.value(field)
	if !ok {
		return op == "UNLIKE"
	}
	count := func(val string) int {
		n := 0
		for _, p := range placed {
			if pv, ok := p.value(field); ok && pv == val {
				n++
			}
		}
		return n
	}
	switch op {
	case "UNIQUE":
		return count(v) == 0
	case "CLUSTER":
		if value != "" {
			return v == value
		}
		for _, p := range placed {
			if pv, ok := p.value(field); ok {
				return pv == v
			}
		}
		return true
	case "IS":
		return v == value
	case "LIKE":
		return fullMatch(value, v)
	case "UNLIKE":
		return !fullMatch(value, v)
	case "MAX_PER":
		n, err := strconv.Atoi(value)
		if err != nil {
			return false
		}
		return count(v) < n
	case "GROUP_BY":
		groups := map[string]int{}
		for _, a := range all {
			if av, ok := a.value(field); ok {
				groups[av] = 0
			}
		}
		groups[v] += 0
		for _, p := range placed {
			if pv, ok := p.value(field); ok {
				groups[pv]++
			}
		}
		min := -1
		for _, n := range groups {
			if min < 0 || n < min {
				min = n
			}
		}
		if want, err := strconv.Atoi(value); err == nil && want > len(groups) {
			min = 0
		}
		return groups[v] <= min
	}
	return false
}

// appConstraints checks an app's constraints against candidate agents while
// its tasks are placed one by one, as meetsConstraint would with the same
// placed agents, but in time independent of the cluster's size: the counts
// per value are kept, not recounted for every candidate. placed are the
// agents of all the app's live tasks; GROUP_BY looks instead at current
// (the tasks of its current version: a rolling restart does not count the
// old ones it replaces) and at groups, the agents the app could use, so
// that neither masters nor agents it may not run on make a group, as
// Marathon counts only the values of usable offers and of the app's tasks.
type appConstraints []*constraintCount

// constraintCount is one constraint with the counts it decides from.
type constraintCount struct {
	c            []string
	field, op    string
	value        string
	n            map[string]int // tasks per value of field (current ones for GROUP_BY)
	first        string         // CLUSTER without a value: the first task's value
	hasFirst     bool
	groups       map[string]bool // GROUP_BY: the values of usable agents and current tasks
	min          int             // GROUP_BY: least tasks in a group; -1 when to recount
	maxPer       int             // MAX_PER's limit
	maxPerFailed bool            // MAX_PER's value is not a number
}

func newAppConstraints(cs [][]string, placed, current, groups []facts) appConstraints {
	out := make(appConstraints, 0, len(cs))
	for _, c := range cs {
		if len(c) < 2 {
			continue
		}
		cc := &constraintCount{c: c, field: c[0], op: strings.ToUpper(c[1]), n: map[string]int{}, min: -1}
		if len(c) > 2 {
			cc.value = c[2]
		}
		from := placed
		switch cc.op {
		case "GROUP_BY":
			from = current
			cc.groups = map[string]bool{}
			for _, a := range groups {
				if v, ok := a.value(cc.field); ok {
					cc.groups[v] = true
				}
			}
		case "MAX_PER":
			var err error
			cc.maxPer, err = strconv.Atoi(cc.value)
			cc.maxPerFailed = err != nil
		}
		for _, f := range from {
			cc.count(f)
		}
		out = append(out, cc)
	}
	return out
}

// count adds a task on the agent f.
func (cc *constraintCount) count(f facts) {
	v, ok := f.value(cc.field)
	if !ok {
		return
	}
	cc.n[v]++
	if !cc.hasFirst {
		cc.first, cc.hasFirst = v, true
	}
	if cc.groups != nil {
		cc.groups[v] = true
		cc.min = -1
	}
}

// placed records a task of the app placed on the agent f.
func (acs appConstraints) placed(f facts) {
	for _, cc := range acs {
		cc.count(f)
	}
}

// meet reports whether a task of the app may go on the agent cand.
func (acs appConstraints) meet(cand facts) bool {
	for _, cc := range acs {
		if !cc.meets(cand) {
			return false
		}
	}
	return true
}

func (cc *constraintCount) meets(cand facts) bool {
	v, ok := cand.value(cc.field)
	if !ok {
		return cc.op == "UNLIKE"
	}
	switch cc.op {
	case "UNIQUE":
		return cc.n[v] == 0
	case "MAX_PER":
		return !cc.maxPerFailed && cc.n[v] < cc.maxPer
	case "CLUSTER":
		if cc.value != "" {
			return v == cc.value
		}
		return !cc.hasFirst || cc.first == v
	case "GROUP_BY":
		if !cc.groups[v] {
			return true // a group of its own, empty: the least loaded
		}
		if want, err := strconv.Atoi(cc.value); err == nil && want > len(cc.groups) {
			return cc.n[v] == 0
		}
		if cc.min < 0 {
			cc.min = -1
			for g := range cc.groups {
				if n := cc.n[g]; cc.min < 0 || n < cc.min {
					cc.min = n
				}
			}
		}
		return cc.n[v] <= cc.min
	}
	return meetsConstraint(cc.c, cand, nil, nil)
}

// staticConstraint reports whether c depends on the agent alone (not on
// where the app's tasks are).
func staticConstraint(c []string) bool {
	if len(c) < 2 {
		return true
	}
	switch strings.ToUpper(c[1]) {
	case "LIKE", "UNLIKE", "IS":
		return true
	case "CLUSTER":
		return len(c) > 2 && c[2] != ""
	}
	return false
}

// usableAgents are the agents a task of app could ever run on: alive
// agents whose role the app accepts, with Docker for a Docker app, large
// enough for one task, that meet the app's constraints on the agent alone.
func usableAgents(app *api.App, agents map[string]facts) []facts {
	docker := app.Container != nil && strings.EqualFold(app.Container.Type, "DOCKER")
	var out []facts
	for _, a := range agents {
		if !a.Agent || !roleAccepted(app.AcceptedResourceRoles, a.Role) || (docker && !a.Docker) {
			continue
		}
		if a.Total.Cpus+1e-9 < app.Cpus || a.Total.Mem+1e-9 < app.Mem || a.Total.Disk+1e-9 < app.Disk || a.Total.Gpus < app.Gpus {
			continue
		}
		ok := true
		for _, c := range app.Constraints {
			if staticConstraint(c) && !meetsConstraint(c, a, nil, nil) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, a)
		}
	}
	return out
}

// roleAccepted reports whether an offer of agent role offerRole may run a
// task of an app with acceptedResourceRoles accepted. Without
// acceptedResourceRoles an app takes only unreserved ("*") resources, as
// Marathon's default --default_accepted_resource_roles does; "slave_public"
// agents serve only apps that list it.
func roleAccepted(accepted []string, offerRole string) bool {
	if offerRole == "" {
		offerRole = "*"
	}
	if len(accepted) == 0 {
		return offerRole == "*"
	}
	for _, r := range accepted {
		if r == offerRole {
			return true
		}
	}
	return false
}
