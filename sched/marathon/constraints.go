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

// meetsConstraints checks every constraint of an app. placed are the
// agents of all its live tasks; GROUP_BY looks instead at current (the
// tasks of its current version: a rolling restart does not count the old
// ones it replaces) and at groups, the agents the app could use, so that
// neither masters nor agents it may not run on make a group, as Marathon
// counts only the values of usable offers and of the app's tasks.
func meetsConstraints(cs [][]string, cand facts, placed, current, groups []facts) bool {
	for _, c := range cs {
		ok := false
		if len(c) >= 2 && strings.EqualFold(c[1], "GROUP_BY") {
			ok = meetsConstraint(c, cand, current, append(append([]facts(nil), groups...), current...))
		} else {
			ok = meetsConstraint(c, cand, placed, nil)
		}
		if !ok {
			return false
		}
	}
	return true
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
