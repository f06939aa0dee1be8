package marathon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// metaOutcome keys how each deployment ended, so that a client that looks
// after the end (a CI job between its PUT and `weft deployment watch`)
// still learns it. Outcomes are kept for outcomeTTL.
const (
	metaOutcome = "marathon/deploymentOutcome/" // + deployment id → api.DeploymentOutcome
	outcomeTTL  = time.Hour
)

// outcomeOp records how deployment id, of apps, ended.
func outcomeOp(id, status, reason string, now time.Time, apps ...string) sched.Op {
	return sched.Put(sched.TableMeta, metaOutcome+id, api.DeploymentOutcome{ID: id, Status: status, Reason: reason, At: api.Timestamp(now), AffectedApps: apps})
}

// pruneOutcomes deletes outcomes older than outcomeTTL, at most once a
// minute.
func (f *Framework) pruneOutcomes(ctx context.Context, st *sched.Store, now time.Time) {
	f.mu.Lock()
	due := now.Sub(f.outcomesPruned) >= time.Minute
	if due {
		f.outcomesPruned = now
	}
	f.mu.Unlock()
	if !due {
		return
	}
	var ops []sched.Op
	cutoff := api.Timestamp(now.Add(-outcomeTTL))
	for _, e := range st.List(sched.TableMeta) {
		if !strings.HasPrefix(e.Key, metaOutcome) {
			continue
		}
		if o, ok := decodeOutcome(e.Value); !ok || o.At < cutoff {
			ops = append(ops, sched.Delete(sched.TableMeta, e.Key))
		}
	}
	if len(ops) > 0 {
		if _, err := st.Apply(ctx, ops); err != nil && ctx.Err() == nil {
			f.log.Warn("pruning deployment outcomes", "err", err)
		}
	}
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
