package chronos

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Constraint operators: Chronos's EQUALS, LIKE and UNLIKE, and Marathon's.
var constraintOps = map[string]bool{
	"EQUALS": true, "LIKE": true, "UNLIKE": true,
	"CLUSTER": true, "IS": true, "UNIQUE": true, "GROUP_BY": true, "MAX_PER": true,
}

// validateConstraints checks a job's constraints at submit.
func validateConstraints(cs [][]string) error {
	for i, c := range cs {
		if len(c) < 2 || len(c) > 3 {
			return fmt.Errorf("constraint %d %q: want [attribute, operator] or [attribute, operator, value]", i, c)
		}
		op := strings.ToUpper(c[1])
		if !constraintOps[op] {
			return fmt.Errorf("constraint %d: unknown operator %q (use EQUALS, LIKE, UNLIKE, CLUSTER, IS, UNIQUE, GROUP_BY or MAX_PER)", i, c[1])
		}
		switch op {
		case "EQUALS", "LIKE", "UNLIKE", "IS":
			if len(c) != 3 {
				return fmt.Errorf("constraint %d: %s needs a value", i, op)
			}
		case "MAX_PER":
			if len(c) != 3 {
				return fmt.Errorf("constraint %d: MAX_PER needs a number", i)
			}
			if n, err := strconv.Atoi(c[2]); err != nil || n < 1 {
				return fmt.Errorf("constraint %d: MAX_PER value %q is not a positive number", i, c[2])
			}
		}
		if op == "LIKE" || op == "UNLIKE" {
			if _, err := regexp.Compile("^(?:" + c[2] + ")$"); err != nil {
				return fmt.Errorf("constraint %d: %q is not a regular expression: %v", i, c[2], err)
			}
		}
	}
	return nil
}

// attribute reads a constraint's field from an offer: hostname, site (also
// @zone and @region), or an agent attribute.
func attribute(o *api.Offer, name string) (string, bool) {
	switch name {
	case "hostname", "@hostname":
		return o.Hostname, true
	case "site", "@zone", "@region":
		if v, ok := o.Attributes[name]; ok {
			return v, true
		}
		return o.Site, o.Site != ""
	}
	v, ok := o.Attributes[name]
	return v, ok
}

// constraintsMatch reports whether an offer satisfies every constraint of a
// job, given where the job's tasks already run.
func constraintsMatch(cs [][]string, o *api.Offer, running []api.Offer) bool {
	for _, c := range cs {
		if len(c) < 2 {
			continue
		}
		val, has := attribute(o, c[0])
		want := ""
		if len(c) > 2 {
			want = c[2]
		}
		same := 0
		for i := range running {
			if v, ok := attribute(&running[i], c[0]); ok && has && v == val {
				same++
			}
		}
		switch strings.ToUpper(c[1]) {
		case "EQUALS", "IS":
			if !has || val != want {
				return false
			}
		case "CLUSTER":
			if want != "" && (!has || val != want) {
				return false
			}
		case "LIKE":
			if !has || !regexp.MustCompile("^(?:"+want+")$").MatchString(val) {
				return false
			}
		case "UNLIKE":
			if has && regexp.MustCompile("^(?:"+want+")$").MatchString(val) {
				return false
			}
		case "UNIQUE":
			if !has || same > 0 {
				return false
			}
		case "MAX_PER":
			n, _ := strconv.Atoi(want)
			if !has || same >= n {
				return false
			}
		case "GROUP_BY":
			if !has {
				return false
			}
		}
	}
	return true
}
