package ui

import (
	"encoding/hex"
	"hash/fnv"
	"html/template"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// seg is one coloured part of a health bar, in percent of its width.
type seg struct {
	X, W  float64
	Class string
}

// Segs lays the bar's parts end to end.
func (b bar) Segs() []seg {
	var out []seg
	x := 0.0
	for _, p := range []struct {
		w float64
		c string
	}{{b.Healthy, "healthy"}, {b.Unhealthy, "unhealthy"}, {b.Running, "running"}, {b.Staged, "staged"}, {b.Missing, "missing"}} {
		if p.w > 0 {
			out = append(out, seg{X: x, W: p.w, Class: p.c})
			x += p.w
		}
	}
	return out
}

var funcs = template.FuncMap{
	"join": strings.Join,
	"num":  fmtNum,
	"gib": func(mb float64) string {
		if mb >= 1024 {
			return strconv.FormatFloat(mb/1024, 'f', 1, 64) + " GiB"
		}
		return strconv.FormatFloat(mb, 'f', 0, 64) + " MiB"
	},
	"pathEsc": pathEscape,
	"live": func(nav string) bool {
		switch nav {
		case "apps", "app", "nodes", "jobs", "job", "mesh":
			return true
		}
		return false
	},
	"sortedKeys": func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	},
	"lower":   strings.ToLower,
	"asset":   assetURL,
	"treectx": func(n *groupNode, d *appsData) treeCtx { return treeCtx{N: n, D: d} },
}

// treeCtx is one level of the group tree template.
type treeCtx struct {
	N *groupNode
	D *appsData
}

// fmtNum writes whole numbers without decimals, others with two.
func fmtNum(f float64) string {
	if f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// assetVersions are the static files' content hashes, by name.
var assetVersions = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for _, name := range []string{"ui.css", "ui.js"} {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			panic("ui: " + err.Error()) // a broken build
		}
		h := fnv.New64a()
		_, _ = h.Write(b)
		out[name] = hex.EncodeToString(h.Sum(nil))
	}
	return out
})

// assetURL is the address of a static file with its content hash, so a
// page never runs with an older script or stylesheet the browser kept,
// and the browser may keep them for long.
func assetURL(name string) string {
	if v, ok := assetVersions()[name]; ok {
		return "/ui/static/" + name + "?v=" + v
	}
	return "/ui/static/" + name
}
