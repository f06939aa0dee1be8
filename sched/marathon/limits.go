package marathon

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Limits of the Marathon API (docs/limits.md lists them all). Each is far
// above any real definition and below what would hurt weft: a value past
// one is refused with Marathon's 422 body naming the JSON path.
const (
	// MaxBody is the largest request body of /v2/apps and the other
	// Marathon routes; MaxGroupBody that of /v2/groups, which carries many
	// apps at once.
	MaxBody      = 1 << 20
	MaxGroupBody = 8 << 20
	// MaxIDLength bounds a whole app or group id, so a task id (the id's
	// segments joined by '_', a '.' and a 36-character UUID) fits a
	// 255-byte file name; MaxSegmentLength is one DNS label.
	MaxIDLength      = 200
	MaxSegmentLength = 63
	// Label limits, per label map (app, port definition, port mapping).
	MaxLabels         = 256
	MaxLabelKeyLength = 255
	MaxLabelValueLen  = 16 << 10
	// Resource and count ranges.
	MaxCpus      = 4096
	MaxMem       = 16 << 20 // MB: 16 TiB
	MaxDisk      = 1 << 30  // MB: 1 PiB
	MaxGpus      = 128
	MaxInstances = 100000
	// MaxConstraintValue bounds a constraint's value (a LIKE regex).
	MaxConstraintValue = 1024
)

// bodyLimit is the request body limit of a path.
func bodyLimit(path string) int {
	if path == "/v2/groups" || strings.HasPrefix(path, "/v2/groups/") {
		return MaxGroupBody
	}
	return MaxBody
}

// encodedSlash reports a path whose id part hides a '/' as %2F: the
// router would read "a%2Fb" as two segments, so an id is never written
// that way.
func encodedSlash(r *http.Request) bool {
	return strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%2f")
}

const msgEncodedSlash = "must not contain an encoded '/' (%2F): give a nested id as path segments (/v2/apps/a/b)"

// idLengthProblems checks the lengths of a canonical id's segments and of
// the whole id.
func idLengthProblems(id string) []string {
	var out []string
	for _, s := range splitID(id) {
		if len(s) > MaxSegmentLength {
			out = append(out, fmt.Sprintf("path segment '%s…' is %d characters, expected %d or less (a DNS label)", s[:16], len(s), MaxSegmentLength))
			break
		}
	}
	if len(id) > MaxIDLength {
		out = append(out, fmt.Sprintf("is %d characters, expected %d or less (task ids must fit a file name)", len(id), MaxIDLength))
	}
	return out
}

// multiLineLabel reports a marathon-lb template label, whose value is a
// piece of HAProxy configuration spanning lines (weft's lb ignores them,
// but definitions written for marathon-lb carry them).
func multiLineLabel(key string) bool {
	if !strings.HasPrefix(key, "HAPROXY_") {
		return false
	}
	for _, s := range []string{"_HEAD", "_GLUE", "_OPTIONS", "_ACL", "_TEMPLATE"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

// labelProblems checks one label map; path is its JSON path ("/labels").
func labelProblems(labels map[string]string, path string) []api.ErrorDetail {
	var out []api.ErrorDetail
	add := func(p, msg string) { out = append(out, api.ErrorDetail{Path: p, Errors: []string{msg}}) }
	if len(labels) > MaxLabels {
		add(path, fmt.Sprintf("got %d labels, expected %d or less", len(labels), MaxLabels))
		return out
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := labels[k]
		kp := path + "/" + k
		if len(k) > MaxLabelKeyLength {
			kp = path + "/" + k[:32] + "…"
		}
		switch {
		case k == "":
			add(path, "a label key must not be empty")
		case len(k) > MaxLabelKeyLength:
			add(kp, fmt.Sprintf("key is %d bytes, expected %d or less", len(k), MaxLabelKeyLength))
		case strings.ContainsAny(k, "\r\n\x00"):
			add(path+"/"+strconv.Quote(k), "key must not contain CR, LF or NUL")
		}
		switch {
		case len(v) > MaxLabelValueLen:
			add(kp, fmt.Sprintf("value is %d bytes, expected %d or less", len(v), MaxLabelValueLen))
		case strings.ContainsRune(v, 0):
			add(kp, "value must not contain NUL")
		case strings.ContainsAny(v, "\r\n") && !multiLineLabel(k):
			add(kp, "value must not contain CR or LF (only marathon-lb template labels, HAPROXY_*_HEAD and the like, may span lines)")
		}
	}
	return out
}

// limitProblems checks an app against the limits above.
func limitProblems(app *api.App, prefix string) []api.ErrorDetail {
	var out []api.ErrorDetail
	add := func(path, msg string) {
		out = append(out, api.ErrorDetail{Path: prefix + path, Errors: []string{msg}})
	}
	atMost := func(path string, v, max float64) {
		if math.IsNaN(v) || v > max {
			got := fmtFloat(v)
			if v >= 1e21 {
				got = strconv.FormatFloat(v, 'g', -1, 64)
			}
			add(path, fmt.Sprintf("got %s, expected %s or less", got, fmtFloat(max)))
		}
	}
	atMost("/cpus", app.Cpus, MaxCpus)
	atMost("/mem", app.Mem, MaxMem)
	atMost("/disk", app.Disk, MaxDisk)
	if app.Gpus > MaxGpus {
		add("/gpus", fmt.Sprintf("got %d, expected %d or less", app.Gpus, MaxGpus))
	}
	if app.Instances > MaxInstances {
		add("/instances", fmt.Sprintf("got %d, expected %d or less", app.Instances, MaxInstances))
	}
	for _, d := range labelProblems(app.Labels, "/labels") {
		d.Path = prefix + d.Path
		out = append(out, d)
	}
	for i, pd := range app.PortDefinitions {
		for _, d := range labelProblems(pd.Labels, fmt.Sprintf("/portDefinitions(%d)/labels", i)) {
			d.Path = prefix + d.Path
			out = append(out, d)
		}
	}
	if c := app.Container; c != nil {
		for i, pm := range c.PortMappings {
			for _, d := range labelProblems(pm.Labels, fmt.Sprintf("/container/portMappings(%d)/labels", i)) {
				d.Path = prefix + d.Path
				out = append(out, d)
			}
		}
	}
	for i, c := range app.Constraints {
		if len(c) == 3 && len(c[2]) > MaxConstraintValue {
			add(fmt.Sprintf("/constraints(%d)", i), fmt.Sprintf("value is %d bytes, expected %d or less", len(c[2]), MaxConstraintValue))
		}
	}
	return out
}
