package marathon

import (
	"fmt"
	"net/http"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// AppProblems is what weft keeps of an app's definition without honouring
// it, or runs differently from Marathon: GET /v1/apps/problems. Marathon's
// own responses stay as Marathon's; strict clients never see these.
type AppProblems struct {
	AppID    string   `json:"appId"`
	Problems []string `json:"problems"`
}

// appProblems lists, for one app, the fields weft keeps and returns on GET
// but does not honour, and the container networks it maps onto its own.
// Pure: the table test calls it directly.
func appProblems(app *api.App) []string {
	var out []string
	for i, n := range app.Networks {
		if n.Mode == "container" && n.Name != "" && n.Name != WeftNetwork {
			out = append(out, fmt.Sprintf("networks[%d]: container network %q runs on weft's overlay network %q", i, n.Name, WeftNetwork))
		}
	}
	if ip := app.IPAddress; ip != nil && ip.NetworkName != "" && ip.NetworkName != WeftNetwork {
		out = append(out, fmt.Sprintf("ipAddress.networkName: network %q runs on weft's overlay network %q", ip.NetworkName, WeftNetwork))
	}
	if len(app.Check) > 0 {
		out = append(out, "check: kept, not run (weft runs healthChecks and readinessChecks)")
	}
	if len(app.ResourceLimits) > 0 {
		out = append(out, "resourceLimits: kept, not enforced (tasks are limited to cpus and mem)")
	}
	if len(app.ExecutorResources) > 0 {
		out = append(out, "executorResources: kept, not used (weft runs tasks without a Mesos executor)")
	}
	if c := app.Container; c != nil {
		if len(c.LinuxInfo) > 0 {
			out = append(out, "container.linuxInfo: kept, not applied (no seccomp profile or IPC namespace settings)")
		}
		if d := c.Docker; d != nil {
			if d.PullConfig != nil {
				out = append(out, "container.docker.pullConfig: kept, not used (agents pull with their Docker Engine's credentials)")
			}
			if len(d.Credential) > 0 {
				out = append(out, "container.docker.credential: kept, not used (agents pull with their Docker Engine's credentials)")
			}
		}
		for i, v := range c.Volumes {
			if v.Secret != "" && v.HostPath == "" {
				out = append(out, fmt.Sprintf("container.volumes[%d]: secret volume %q kept, not mounted (use an env secret)", i, v.Secret))
			}
		}
	}
	return out
}

// serveAppProblems is GET /v1/apps/problems: every app the token may read
// that has problems.
func (f *Framework) serveAppProblems(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
	}
	v := readView(m.Store())
	out := []AppProblems{}
	for _, id := range v.appIDs {
		if !canRead(r.Context(), id) {
			continue
		}
		if ps := appProblems(v.apps[id]); len(ps) > 0 {
			out = append(out, AppProblems{AppID: id, Problems: ps})
		}
	}
	writeJSON(w, 200, map[string]any{"apps": out})
	return nil
}
