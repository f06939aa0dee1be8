package marathon

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// forbidden is Marathon's 403 for a token without access to a path.
func forbidden(a *sched.Authz, want sched.Access, id string) *apiError {
	return errMsg(403, "Not Authorized to perform this action: %s", sched.ForbiddenApp(a, want, id))
}

// canRead is whether the request's token may see the app or group id.
func canRead(ctx context.Context, id string) bool {
	return sched.AuthzFrom(ctx).CanReadApp(id)
}

// secretStore is what of the master tells whether a secret exists.
type secretStore interface{ SecretExists(name string) bool }

// authorizeChanges checks a deployment's changes against the request's
// token: write on every app it touches, read on every secret a new
// definition refers to, and that those secrets exist.
func authorizeChanges(ctx context.Context, m sched.MasterHandle, changes []change) *apiError {
	a := sched.AuthzFrom(ctx)
	for _, c := range changes {
		if id := c.id(); !a.CanWriteApp(id) {
			return forbidden(a, sched.AccessWrite, id)
		}
		if c.To == nil {
			continue
		}
		for env, v := range c.To.Env {
			if v.Secret == "" {
				continue
			}
			if s, ok := c.To.Secrets[v.Secret]; !ok || s.Source == "" {
				return notValid(api.ErrorDetail{Path: "/env/" + env, Errors: []string{fmt.Sprintf("references secret %q, which is not declared in secrets (e.g. \"secrets\": {%q: {\"source\": \"NAME\"}})", v.Secret, v.Secret)}})
			}
		}
		for key, s := range c.To.Secrets {
			if s.Source == "" {
				return notValid(api.ErrorDetail{Path: "/secrets/" + key + "/source", Errors: []string{"error.path.missing: the name of a secret in weft's store"}})
			}
			if a.Secret(storeName(s.Source)) < sched.AccessRead {
				return errMsg(403, "Not Authorized to perform this action: token %q has no read access to secret %s (secrets/%s of %s)", a.Label(), s.Source, key, c.To.ID)
			}
			if ss, ok := m.(secretStore); ok && !ss.SecretExists(storeName(s.Source)) {
				return errMsg(422, "secrets/%s of %s: secret %q does not exist (weft secret put %s)", key, c.To.ID, s.Source, storeName(s.Source))
			}
		}
	}
	return nil
}

// appPathOf is the app a request under /v2/apps/ is about, by the same
// rules serveApp routes it, or "" for a group listing ("/x/*").
func appPathOf(segs []string) string {
	n := len(segs)
	switch {
	case n == 0 || segs[n-1] == "*":
		return ""
	case n >= 2 && (segs[n-1] == "restart" || segs[n-1] == "tasks" || segs[n-1] == "versions"):
		return "/" + strings.Join(segs[:n-1], "/")
	case n >= 3 && (segs[n-2] == "tasks" || segs[n-2] == "versions"):
		return "/" + strings.Join(segs[:n-2], "/")
	}
	return "/" + strings.Join(segs, "/")
}

// deniedApp is the first of ids the token lacks want on, or "".
func deniedApp(a *sched.Authz, want sched.Access, ids []string) string {
	for _, id := range ids {
		if a.App(id) < want {
			return id
		}
	}
	return ""
}

func hasPrefixed(ids []string, prefix string) bool {
	for _, id := range ids {
		if strings.HasPrefix(id, prefix) {
			return true
		}
	}
	return false
}

// cacheKey keeps cached listings apart per URL and per caller scope:
// filtered listings differ by token.
func cacheKey(r *http.Request) string {
	return sched.AuthzFrom(r.Context()).ScopeKey() + r.URL.Path + "?" + r.URL.RawQuery
}

// storeName is the name in weft's secret store of a Marathon secret
// source: DC/OS writes secret paths with or without a leading slash
// ("/mesos-docker/pullConfig"), both naming the same secret.
func storeName(source string) string { return strings.TrimPrefix(source, "/") }
