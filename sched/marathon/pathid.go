package marathon

import (
	"regexp"
	"strings"
)

// segmentRE is Marathon's rule for one segment of an app or group id
// (PathId.ID_PATH_SEGMENT_PATTERN without its "." / ".." alternative,
// which canonicalID handles itself).
var segmentRE = regexp.MustCompile(`^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$`)

// Marathon's messages for bad ids, word for word.
const (
	msgIDPattern  = `must fully match regular expression '^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$'`
	msgIDReserved = "must not end with any of the following reserved keywords: restart, tasks, versions, ., .."
	msgIDEmpty    = "Path must contain at least one path element"
)

var reservedLast = map[string]bool{"restart": true, "tasks": true, "versions": true, ".": true, "..": true}

// splitID splits an id into its non-empty segments.
func splitID(id string) []string {
	var out []string
	for _, s := range strings.Split(id, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// canonicalID resolves raw against the absolute group base (relative ids,
// "." and ".." as Marathon's PathId.canonicalPath does) and checks
// Marathon's id rules. It returns the absolute id ("/a/b") and the
// problems found, each one of Marathon's messages for path /id.
func canonicalID(raw, base string) (string, []string) {
	segs := splitID(raw)
	var problems []string
	for _, s := range segs {
		if s != "." && s != ".." && !segmentRE.MatchString(s) {
			problems = append(problems, msgIDPattern)
			break
		}
	}
	if n := len(segs); n > 0 && reservedLast[segs[n-1]] {
		problems = append(problems, msgIDReserved)
	}
	var all []string
	if !strings.HasPrefix(raw, "/") {
		all = append(all, splitID(base)...)
	}
	all = append(all, segs...)
	var out []string
	for _, s := range all {
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	if len(out) == 0 && len(problems) == 0 {
		problems = append(problems, msgIDEmpty)
	}
	id := "/" + strings.Join(out, "/")
	return id, append(problems, idLengthProblems(id)...)
}

// parentID is the group an id lives in ("/" for top-level apps).
func parentID(id string) string {
	segs := splitID(id)
	if len(segs) <= 1 {
		return "/"
	}
	return "/" + strings.Join(segs[:len(segs)-1], "/")
}

// taskIDPrefix is the app part of a task id, Marathon's safePath:
// "/ssk2/whereisbot" → "ssk2_whereisbot".
func taskIDPrefix(appID string) string {
	return strings.Join(splitID(appID), "_")
}
