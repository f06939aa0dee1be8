package ui

import (
	"encoding/json"
	"sort"
	"strings"
)

// tokenSelf is GET /v1/acl/token/self (api.ACLTokenSelf's JSON): who the
// token is and its policies' rules. Open is true while the cluster has no
// ACLs; a management token may do everything.
type tokenSelf struct {
	Name       string `json:"name"`
	Management bool   `json:"management"`
	Open       bool   `json:"open"`
	Rules      []struct {
		Apps map[string]string `json:"apps"`
		Jobs map[string]string `json:"jobs"`
	} `json:"rules"`
}

// rules are what a token may write; the UI hides actions the token may
// not take (the API refuses them anyway). nil rules allow everything.
type rules struct {
	apps, jobs []pattern
}

// pattern is one grant: an exact name, or a prefix (a pattern ending in
// "*"; "/team-a/*" also covers the group "/team-a").
type pattern struct {
	text   string
	exact  bool
	prefix string
	access int // 0 none/deny, 1 read, 2 write
}

func parseRules(self tokenSelf) *rules {
	if self.Open || self.Management {
		return nil
	}
	apps, jobs := map[string]string{}, map[string]string{}
	for _, r := range self.Rules {
		mergeAccess(apps, r.Apps)
		mergeAccess(jobs, r.Jobs)
	}
	return &rules{apps: compile(apps), jobs: compile(jobs)}
}

// mergeAccess keeps the stronger access where two policies name the same
// pattern.
func mergeAccess(into, from map[string]string) {
	for p, a := range from {
		if accessLevel(a) > accessLevel(into[p]) {
			into[p] = a
		}
	}
}

func accessLevel(a string) int {
	switch strings.ToLower(a) {
	case "write":
		return 2
	case "read":
		return 1
	}
	return 0
}

func compile(m map[string]string) []pattern {
	out := make([]pattern, 0, len(m))
	for p, a := range m {
		pt := pattern{text: p, access: accessLevel(a)}
		if strings.HasSuffix(p, "*") {
			pt.prefix = strings.TrimSuffix(p, "*")
		} else {
			pt.exact = true
		}
		out = append(out, pt)
	}
	// The most specific first: longer patterns, exact before prefix.
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].text) != len(out[j].text) {
			return len(out[i].text) > len(out[j].text)
		}
		return out[i].exact && !out[j].exact
	})
	return out
}

func accessOf(ps []pattern, name string) int {
	for _, p := range ps {
		switch {
		case p.exact && name == p.text,
			!p.exact && strings.HasPrefix(name, p.prefix),
			!p.exact && strings.HasSuffix(p.prefix, "/") && name != "" && name == strings.TrimSuffix(p.prefix, "/"):
			return p.access
		}
	}
	return 0
}

func (r *rules) canWriteApp(id string) bool { return r == nil || accessOf(r.apps, id) == 2 }
func (r *rules) canWriteJob(name string) bool {
	return r == nil || accessOf(r.jobs, name) == 2
}

// canWriteSomeApp: whether creating an app can succeed anywhere.
func (r *rules) canWriteSomeApp() bool {
	if r == nil {
		return true
	}
	for _, p := range r.apps {
		if p.access == 2 {
			return true
		}
	}
	return false
}

// decodeSelf reads a token/self answer.
func decodeSelf(b []byte) (tokenSelf, bool) {
	var s tokenSelf
	return s, json.Unmarshal(b, &s) == nil
}
