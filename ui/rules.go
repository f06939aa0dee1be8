package ui

import (
	"encoding/json"
	"strings"
)

// rules are what a token may write, as GET /v1/acl/token/self reports
// them; the UI hides actions the token may not take (the API refuses them
// anyway). nil rules (open mode, or a shape the UI does not read) hide
// nothing.
type rules struct {
	apps, jobs []grant
}

type grant struct {
	prefix string
	write  bool
}

// parseRules reads the token's policy rules. It understands rules given
// as lists of {"prefix"|"path"|"name", "access"|"policy"} under "apps"
// (or "marathon") and "jobs" (or "chronos").
func parseRules(raw json.RawMessage) *rules {
	var m map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	r := &rules{}
	known := false
	for key, v := range m {
		var gs []map[string]any
		if json.Unmarshal(v, &gs) != nil {
			continue
		}
		var out []grant
		for _, g := range gs {
			p := firstString(g, "prefix", "path", "name")
			a := firstString(g, "access", "policy")
			out = append(out, grant{prefix: strings.TrimSuffix(p, "*"), write: a == "write"})
		}
		switch key {
		case "apps", "marathon", "app":
			r.apps, known = out, true
		case "jobs", "chronos", "job":
			r.jobs, known = out, true
		}
	}
	if !known {
		return nil
	}
	return r
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok {
			return s
		}
	}
	return ""
}

func (r *rules) canWriteApp(id string) bool {
	if r == nil {
		return true
	}
	return canWrite(r.apps, id)
}

func (r *rules) canWriteJob(name string) bool {
	if r == nil {
		return true
	}
	return canWrite(r.jobs, name)
}

// canWrite: the longest matching prefix decides.
func canWrite(gs []grant, name string) bool {
	best, write := -1, false
	for _, g := range gs {
		if strings.HasPrefix(name, g.prefix) && len(g.prefix) > best {
			best, write = len(g.prefix), g.write
		}
	}
	return write
}
