package marathon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// metaOutcome keys how each deployment ended, so that a client that looks
// after the end (a CI job between its PUT and `weft deployment watch`)
// still learns it. Outcomes are kept for outcomeTTL, and at most the
// maxOutcomes newest: a client that deploys hundreds of times a second
// would otherwise grow the state (and each scan of it) without bound.
const (
	metaOutcome = "marathon/deploymentOutcome/" // + deployment id → api.DeploymentOutcome
	outcomeTTL  = time.Hour
	maxOutcomes = 1000
	// maxAppVersions is how many versions of each app (and pod) are kept,
	// the newest; the current one is always kept.
	maxAppVersions = 50
	// pruneEvery is how often the leader prunes outcomes and versions.
	pruneEvery = 10 * time.Second
)

// outcomeOp records how deployment id, of apps, ended.
func outcomeOp(id, status, reason string, now time.Time, apps ...string) sched.Op {
	return sched.Put(sched.TableMeta, metaOutcome+id, api.DeploymentOutcome{ID: id, Status: status, Reason: reason, At: api.Timestamp(now), AffectedApps: apps})
}

// prune deletes outcomes older than outcomeTTL or beyond the maxOutcomes
// newest, and each app's versions beyond the maxAppVersions newest, at
// most once every pruneEvery.
func (f *Framework) prune(ctx context.Context, st *sched.Store, now time.Time) {
	f.mu.Lock()
	due := now.Sub(f.outcomesPruned) >= pruneEvery
	if due {
		f.outcomesPruned = now
	}
	f.mu.Unlock()
	if !due {
		return
	}
	ops := pruneOps(st.ListPrefix(sched.TableMeta, metaOutcome), st.List(sched.TableAppVersions), st.List(sched.TableApps), now)
	// In bounded batches: one raft entry stays small.
	for len(ops) > 0 && ctx.Err() == nil {
		n := min(len(ops), 1000)
		if _, err := st.Apply(ctx, ops[:n]); err != nil {
			if ctx.Err() == nil {
				f.log.Warn("pruning deployment outcomes and app versions", "err", err)
			}
			return
		}
		ops = ops[n:]
	}
}

// pruneOps are the deletes prune makes, given the outcomes, every app
// version (keys "id@version", sorted) and the apps. Pure.
func pruneOps(outcomes, versions, apps []sched.Entry, now time.Time) []sched.Op {
	var ops []sched.Op
	cutoff := api.Timestamp(now.Add(-outcomeTTL))
	type kept struct {
		key, at string
	}
	var keep []kept
	for _, e := range outcomes {
		if o, ok := decodeOutcome(e.Value); !ok || o.At < cutoff {
			ops = append(ops, sched.Delete(sched.TableMeta, e.Key))
		} else {
			keep = append(keep, kept{e.Key, o.At})
		}
	}
	if len(keep) > maxOutcomes {
		sort.Slice(keep, func(i, j int) bool {
			return keep[i].at > keep[j].at || keep[i].at == keep[j].at && keep[i].key > keep[j].key
		})
		for _, k := range keep[maxOutcomes:] {
			ops = append(ops, sched.Delete(sched.TableMeta, k.key))
		}
	}
	current := map[string]bool{}
	for _, a := range apps {
		if app, ok := a.Value.(*api.App); ok {
			current[app.ID+"@"+app.Version] = true
		}
	}
	// Versions sort by app, then by time (the version is a fixed-width
	// UTC timestamp): the oldest of each app come first.
	for i := 0; i < len(versions); {
		id, _, _ := strings.Cut(versions[i].Key, "@")
		j := i
		for j < len(versions) && strings.HasPrefix(versions[j].Key, id+"@") {
			j++
		}
		for k := i; k < j-maxAppVersions; k++ {
			if !current[versions[k].Key] {
				ops = append(ops, sched.Delete(sched.TableAppVersions, versions[k].Key))
			}
		}
		i = j
	}
	return ops
}

func decodeOutcome(v any) (api.DeploymentOutcome, bool) {
	var o api.DeploymentOutcome
	switch x := v.(type) {
	case *json.RawMessage:
		if x == nil || json.Unmarshal(*x, &o) != nil {
			return o, false
		}
	case api.DeploymentOutcome:
		o = x
	case *api.DeploymentOutcome:
		o = *x
	default:
		return o, false
	}
	return o, o.ID != ""
}

// serveOutcome is weft's GET /v1/deployments/{id}: whether a deployment
// is running, succeeded or failed (rolled back, superseded by a forced
// change, stopped), and why; 404 for an id that never was (or ended more
// than outcomeTTL ago). Marathon's /v2/deployments forgets a deployment
// the moment it ends.
func (f *Framework) serveOutcome(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
	}
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/deployments/"), "/")
	st := m.Store()
	if e, ok := st.Get(sched.TableDeployments, id); ok && id != "" {
		d := e.Value.(*api.Deployment)
		if aerr := outcomeReadable(r, id, d.AffectedApps); aerr != nil {
			return aerr
		}
		writeJSON(w, 200, api.DeploymentOutcome{ID: id, Status: api.DeploymentRunning, AffectedApps: d.AffectedApps})
		return nil
	}
	if e, ok := st.Get(sched.TableMeta, metaOutcome+id); ok && id != "" {
		if o, ok := decodeOutcome(e.Value); ok {
			if aerr := outcomeReadable(r, id, o.AffectedApps); aerr != nil {
				return aerr
			}
			writeJSON(w, 200, o)
			return nil
		}
	}
	return errMsg(404, "no deployment %q is running or ended in the last %v", id, outcomeTTL)
}

// outcomeReadable refuses a deployment's outcome to a token that may not
// read every app of it (an outcome recorded before outcomes named their
// apps: a token that may read every app).
func outcomeReadable(r *http.Request, id string, apps []string) *apiError {
	a := sched.AuthzFrom(r.Context())
	if a.Full() {
		return nil
	}
	if len(apps) == 0 {
		apps = []string{"/"}
	}
	for _, app := range apps {
		if !a.CanReadApp(app) {
			return &apiError{Status: http.StatusForbidden, Body: api.ErrorBody{Message: fmt.Sprintf("Not Authorized to perform this action: token %q may not read every app of deployment %s", a.Label(), id)}}
		}
	}
	return nil
}
