package marathon

import (
	"slices"
	"sort"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Deployment actions (Marathon's names).
const (
	ActionStart   = "StartApplication"
	ActionScale   = "ScaleApplication"
	ActionRestart = "RestartApplication"
	ActionStop    = "StopApplication"
)

// change is one app's part of a deployment: From is the app before (nil:
// created), To after (nil: deleted).
type change struct {
	From, To *api.App
	// groupDeps are the dependencies the app takes from its groups.
	groupDeps []string
}

func (c change) id() string {
	if c.To != nil {
		return c.To.ID
	}
	return c.From.ID
}

// action is what a deployment does to an app for this change.
func (c change) action() string {
	switch {
	case c.From == nil:
		return ActionStart
	case c.To == nil:
		return ActionStop
	case configVersion(c.From) != configVersion(c.To):
		return ActionRestart
	default:
		return ActionScale
	}
}

// A stored plan lists every run spec it changes under AffectedApps and in
// its actions' App, pods included (a pod is scheduled through its app,
// see podApp), so that the deployment machinery and the ACL checks treat
// both alike; AffectedPods says which of them are pods. The API and the
// events show the plan as Marathon does, through marathonDeployment and
// marathonStep.

// marathonDeployment is d as Marathon's /v2/deployments shows it: pods
// under affectedPods only, and in the actions as "pod" with the pod
// actions' names (Marathon's DeploymentAction.actionName).
func marathonDeployment(d api.Deployment) api.Deployment {
	// Marathon's currentActions carry readinessCheckResults, [] when
	// no readiness check runs (its DeploymentActionInfo); steps do not.
	cur := make([]api.DeploymentAction, len(d.CurrentActions))
	for i, a := range d.CurrentActions {
		if a.ReadinessCheckResults == nil {
			a.ReadinessCheckResults = []api.ReadinessResult{}
		}
		cur[i] = a
	}
	d.CurrentActions = cur
	if len(d.AffectedPods) == 0 {
		return d
	}
	apps := []string{}
	for _, id := range d.AffectedApps {
		if !slices.Contains(d.AffectedPods, id) {
			apps = append(apps, id)
		}
	}
	d.AffectedApps = apps
	steps := make([]api.DeploymentStep, len(d.Steps))
	for i, s := range d.Steps {
		steps[i] = marathonStep(&d, s)
	}
	d.Steps = steps
	d.CurrentActions = marathonActions(&d, d.CurrentActions)
	return d
}

// marathonStep is step s of d as Marathon shows it (see marathonDeployment).
func marathonStep(d *api.Deployment, s api.DeploymentStep) api.DeploymentStep {
	return api.DeploymentStep{Actions: marathonActions(d, s.Actions)}
}

func marathonActions(d *api.Deployment, as []api.DeploymentAction) []api.DeploymentAction {
	if len(d.AffectedPods) == 0 || as == nil {
		return as
	}
	out := make([]api.DeploymentAction, len(as))
	for i, a := range as {
		if slices.Contains(d.AffectedPods, a.App) {
			a.Action = strings.Replace(a.Action, "Application", "Pod", 1)
			a.Pod, a.App = a.App, ""
		}
		out[i] = a
	}
	return out
}

// buildPlan turns changes into a deployment plan: apps that depend on
// other apps of the same deployment come in later steps (Marathon orders
// by dependencies), stops come last in reverse dependency order. Pure.
func buildPlan(id, version string, changes []change) api.Deployment {
	d := api.Deployment{ID: id, Version: version, AffectedApps: []string{}, AffectedPods: []string{},
		Steps: []api.DeploymentStep{}, CurrentActions: []api.DeploymentAction{}}
	byID := map[string]change{}
	for _, c := range changes {
		byID[c.id()] = c
		d.AffectedApps = append(d.AffectedApps, c.id())
		if (c.To != nil && c.To.Pod != nil) || (c.From != nil && c.From.Pod != nil) {
			d.AffectedPods = append(d.AffectedPods, c.id())
		}
	}
	sort.Strings(d.AffectedApps)
	sort.Strings(d.AffectedPods)
	// level = 1 + the highest level of a dependency inside this deployment.
	level := map[string]int{}
	var depth func(id string, seen map[string]bool) int
	depth = func(id string, seen map[string]bool) int {
		if l, ok := level[id]; ok {
			return l
		}
		if seen[id] {
			return 0 // a cycle: Marathon refuses it; weft just stops climbing
		}
		seen[id] = true
		c := byID[id]
		app := c.To
		if app == nil {
			app = c.From
		}
		l := 0
		deps := append(append([]string(nil), app.Dependencies...), c.groupDeps...)
		for _, dep := range deps {
			// A dependency is an app or a group: every app under it.
			for _, other := range d.AffectedApps {
				if other == id || (other != dep && !strings.HasPrefix(other, strings.TrimSuffix(dep, "/")+"/")) {
					continue
				}
				if dl := depth(other, seen) + 1; dl > l {
					l = dl
				}
			}
		}
		level[id] = l
		return l
	}
	maxRun, maxStop := -1, -1
	for _, id := range d.AffectedApps {
		l := depth(id, map[string]bool{})
		if byID[id].To == nil {
			if l > maxStop {
				maxStop = l
			}
		} else if l > maxRun {
			maxRun = l
		}
	}
	for l := 0; l <= maxRun; l++ {
		var step api.DeploymentStep
		for _, id := range d.AffectedApps {
			if c := byID[id]; c.To != nil && level[id] == l {
				step.Actions = append(step.Actions, api.DeploymentAction{Action: c.action(), App: id})
			}
		}
		if len(step.Actions) > 0 {
			d.Steps = append(d.Steps, step)
		}
	}
	for l := maxStop; l >= 0; l-- {
		var step api.DeploymentStep
		for _, id := range d.AffectedApps {
			if c := byID[id]; c.To == nil && level[id] == l {
				step.Actions = append(step.Actions, api.DeploymentAction{Action: ActionStop, App: id})
			}
		}
		if len(step.Actions) > 0 {
			d.Steps = append(d.Steps, step)
		}
	}
	d.TotalSteps = len(d.Steps)
	if len(d.Steps) > 0 {
		d.CurrentStep = 1
		d.CurrentActions = d.Steps[0].Actions
	}
	return d
}
