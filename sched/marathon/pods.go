package marathon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	pathpkg "path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Pods (Marathon 1.4+ /v2/pods). weft schedules a pod through an app it
// derives from the pod definition (podApp): the app carries the pod in
// App.Pod, so one task of it is one instance of the pod, placed, scaled,
// health-checked, killed and relaunched as a unit by the same machinery
// as apps, and dns and lb give it names and routes as they do apps. Such
// an app never shows in /v2/apps; /v2/pods shows the pod.

// Marathon's pod events (core/event/Events.scala PodEvent).
const (
	eventPodCreated = "pod_created_event"
	eventPodUpdated = "pod_updated_event"
	eventPodDeleted = "pod_deleted_event"
)

var podNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func podNotFound(id string) *apiError {
	return errMsg(404, "Pod '%s' does not exist", id)
}

// podRoutes adds /v2/pods to mux.
func (f *Framework) podRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/v2/pods", f.wrap(f.servePods))
	mux.HandleFunc("/v2/pods/", f.wrap(f.servePods))
}

// servePods dispatches /v2/pods[/{id}][::status|::versions[/{v}]|::instances[/{i}]].
func (f *Framework) servePods(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v2/pods"), "/")
	rawID, sub, hasSub := strings.Cut(rest, "::")
	if !hasSub {
		rawID = strings.TrimSuffix(rawID, "/")
		if rawID == "" {
			switch r.Method {
			case http.MethodGet:
				return f.listPods(w, r, m)
			case http.MethodPost:
				return f.createPod(w, r, m)
			}
			return methodNotAllowed()
		}
		switch r.Method {
		case http.MethodGet:
			return f.getPod(w, r, m, rawID)
		case http.MethodPut:
			return f.putPod(w, r, m, rawID)
		case http.MethodDelete:
			return f.deletePod(w, r, m, rawID)
		}
		return methodNotAllowed()
	}
	kind, arg, _ := strings.Cut(sub, "/")
	switch kind {
	case "status":
		if r.Method != http.MethodGet {
			return methodNotAllowed()
		}
		if rawID == "" {
			return f.allPodStatus(w, r, m)
		}
		return f.podStatus(w, r, m, rawID)
	case "versions":
		if r.Method != http.MethodGet {
			return methodNotAllowed()
		}
		return f.podVersions(w, r, m, rawID, arg)
	case "instances":
		if r.Method != http.MethodDelete {
			return methodNotAllowed()
		}
		return f.killPodInstances(w, r, m, rawID, arg)
	}
	return errMsg(404, "unknown pod resource '::%s': use ::status, ::versions or ::instances", kind)
}

// podOf returns the pod with id from the view, or nil.
func podOf(v *view, id string) *api.App {
	if a := v.apps[id]; a != nil && a.Pod != nil {
		return a
	}
	return nil
}

// podOut is the pod as the API shows it: its definition at the app's version.
func podOut(a *api.App) *api.Pod {
	p := *a.Pod
	p.Version = a.Version
	p.Scaling.Instances = a.Instances
	return &p
}

func (f *Framework) listPods(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	v := readView(m.Store())
	out := []*api.Pod{}
	for _, id := range v.appIDs {
		if a := podOf(v, id); a != nil && canRead(r.Context(), id) {
			out = append(out, podOut(a))
		}
	}
	writeJSON(w, 200, out)
	return nil
}

func (f *Framework) getPod(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	if a := sched.AuthzFrom(r.Context()); !a.CanReadApp(id) {
		return forbidden(a, sched.AccessRead, id)
	}
	a := podOf(readView(m.Store()), id)
	if a == nil {
		return podNotFound(id)
	}
	writeJSON(w, 200, podOut(a))
	return nil
}

// parsePod decodes and checks a pod definition; id is the id from the
// path of a PUT ("" for a POST).
func parsePod(body []byte, pathID string) (*api.Pod, *apiError) {
	p := &api.Pod{
		Scaling: api.PodScaling{Kind: "fixed", Instances: 1},
		Scheduling: api.PodScheduling{
			Backoff: api.PodBackoff{Backoff: 1, BackoffFactor: 1.15, MaxLaunchDelay: 3600},
			Upgrade: api.UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1},
		},
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, podJSONError(err)
	}
	if dec.More() {
		return nil, invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.invalid.json: trailing data after the JSON value"}})
	}
	// Defaults of nested objects inside arrays: resources and health checks.
	var raw struct {
		Containers []struct {
			Resources   json.RawMessage `json:"resources"`
			HealthCheck json.RawMessage `json:"healthCheck"`
		} `json:"containers"`
	}
	_ = json.Unmarshal(body, &raw)
	for i := range p.Containers {
		c := &p.Containers[i]
		res := api.PodResources{Cpus: 1, Mem: 128}
		if i < len(raw.Containers) && len(raw.Containers[i].Resources) > 0 {
			_ = json.Unmarshal(raw.Containers[i].Resources, &res)
		}
		c.Resources = res
		if c.HealthCheck != nil && i < len(raw.Containers) {
			hc := api.PodHealthCheck{GracePeriodSeconds: 300, IntervalSeconds: 60, MaxConsecutiveFailures: 3, TimeoutSeconds: 20, DelaySeconds: 15}
			_ = json.Unmarshal(raw.Containers[i].HealthCheck, &hc)
			c.HealthCheck = &hc
		}
	}
	if pathID != "" && p.ID == "" {
		p.ID = pathID
	}
	normalizePod(p)
	if details := validatePod(p); len(details) > 0 {
		return nil, notValid(details...)
	}
	return p, nil
}

// podJSONError turns a decoding error into Marathon's 422 naming the field.
func podJSONError(err error) *apiError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		path := "/" + strings.ReplaceAll(te.Field, ".", "/")
		return notValid(api.ErrorDetail{Path: path, Errors: []string{fmt.Sprintf("error.expected.%s, got a JSON %s", jsType(te.Type.Kind().String()), te.Value)}})
	case errors.As(err, &se):
		return invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{fmt.Sprintf("error.invalid.json: %v (at byte %d)", err, se.Offset)}})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return notValid(api.ErrorDetail{Path: "/" + field, Errors: []string{"error.unknown.property: weft does not know this pod field (Marathon 1.4+ pod.raml has no such key at this place)"}})
	}
	return notValid(api.ErrorDetail{Path: "/", Errors: []string{"error.invalid.json: " + err.Error()}})
}

func jsType(kind string) string {
	switch kind {
	case "string":
		return "jsstring"
	case "slice", "array":
		return "jsarray"
	case "struct", "map", "ptr":
		return "jsobject"
	case "bool":
		return "jsboolean"
	}
	return "jsnumber"
}

// normalizePod fills Marathon's defaults: no null collections, host
// networking when none is given, tcp endpoints.
func normalizePod(p *api.Pod) {
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if p.Environment == nil {
		p.Environment = map[string]api.EnvValue{}
	}
	if p.Secrets == nil {
		p.Secrets = map[string]api.Secret{}
	}
	if p.Volumes == nil {
		p.Volumes = []api.PodVolume{}
	}
	if len(p.Networks) == 0 {
		p.Networks = []api.PodNetwork{{Mode: "host"}}
	}
	for i := range p.Networks {
		if p.Networks[i].Labels == nil {
			p.Networks[i].Labels = map[string]string{}
		}
	}
	if p.Scaling.Kind == "" {
		p.Scaling.Kind = "fixed"
	}
	if p.Scheduling.Placement.Constraints == nil {
		p.Scheduling.Placement.Constraints = []api.PodConstraint{}
	}
	if p.Scheduling.Placement.AcceptedResourceRoles == nil {
		p.Scheduling.Placement.AcceptedResourceRoles = []string{}
	}
	for i := range p.Containers {
		c := &p.Containers[i]
		if c.Endpoints == nil {
			c.Endpoints = []api.PodEndpoint{}
		}
		for j := range c.Endpoints {
			e := &c.Endpoints[j]
			if len(e.Protocol) == 0 {
				e.Protocol = api.Protocols{"tcp"}
			}
			if e.Labels == nil {
				e.Labels = map[string]string{}
			}
		}
		if c.Environment == nil {
			c.Environment = map[string]api.EnvValue{}
		}
		if c.VolumeMounts == nil {
			c.VolumeMounts = []api.PodVolumeMount{}
		}
		if c.Artifacts == nil {
			c.Artifacts = []api.Fetch{}
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
	}
}

// validatePod checks a pod as Marathon does, and refuses what weft cannot
// honour, each with the JSON path of the field.
func validatePod(p *api.Pod) []api.ErrorDetail {
	var out []api.ErrorDetail
	add := func(path, format string, args ...any) {
		out = append(out, api.ErrorDetail{Path: path, Errors: []string{fmt.Sprintf(format, args...)}})
	}
	// name checks a volume's, container's or endpoint's name: its form,
	// and that no other of its kind in the pod has it.
	name := func(path, kind, n string, seen map[string]bool) {
		if !podNameRE.MatchString(n) {
			add(path+"/name", "got %q, expected a name of lowercase letters, digits and dashes", n)
		}
		if seen[n] {
			add(path+"/name", "%s name %q is used twice in the pod", kind, n)
		}
		seen[n] = true
	}
	if p.ID == "" {
		add("/id", "error.path.missing")
	} else if _, probs := canonicalID(p.ID, "/"); len(probs) > 0 {
		add("/id", "%s", strings.Join(probs, "; "))
	}
	if len(p.Containers) == 0 {
		add("/containers", "a pod needs at least one container")
	}
	if p.Scaling.Kind != "fixed" {
		add("/scaling/kind", "got %q, the only scaling policy is \"fixed\"", p.Scaling.Kind)
	}
	if p.Scaling.Instances < 0 || p.Scaling.Instances > MaxInstances {
		add("/scaling/instances", "got %d, expected 0 to %d", p.Scaling.Instances, MaxInstances)
	}
	if len(p.ID) > MaxIDLength {
		add("/id", "got %d bytes, expected at most %d", len(p.ID), MaxIDLength)
	}
	if len(p.Labels) > MaxLabels {
		add("/labels", "got %d labels, expected at most %d", len(p.Labels), MaxLabels)
	}
	if mi := p.Scaling.MaxInstances; mi != nil && *mi < p.Scaling.Instances {
		add("/scaling/maxInstances", "got %d, expected at least instances (%d)", *mi, p.Scaling.Instances)
	}
	b := p.Scheduling.Backoff
	if b.Backoff < 0 {
		add("/scheduling/backoff/backoff", "got %g, expected 0 or more", b.Backoff)
	}
	if b.BackoffFactor < 1 {
		add("/scheduling/backoff/backoffFactor", "got %g, expected 1.0 or more", b.BackoffFactor)
	}
	if b.MaxLaunchDelay < 0 {
		add("/scheduling/backoff/maxLaunchDelay", "got %g, expected 0 or more", b.MaxLaunchDelay)
	}
	u := p.Scheduling.Upgrade
	if u.MinimumHealthCapacity < 0 || u.MinimumHealthCapacity > 1 {
		add("/scheduling/upgrade/minimumHealthCapacity", "got %g, expected between 0.0 and 1.0", u.MinimumHealthCapacity)
	}
	if u.MaximumOverCapacity < 0 || u.MaximumOverCapacity > 1 {
		add("/scheduling/upgrade/maximumOverCapacity", "got %g, expected between 0.0 and 1.0", u.MaximumOverCapacity)
	}
	switch p.Scheduling.KillSelection {
	case "", "YOUNGEST_FIRST", "OLDEST_FIRST":
	default:
		add("/scheduling/killSelection", "got %q, expected YOUNGEST_FIRST or OLDEST_FIRST", p.Scheduling.KillSelection)
	}
	for i, c := range p.Scheduling.Placement.Constraints {
		l := []string{c.FieldName, c.Operator}
		if c.Value != "" {
			l = append(l, c.Value)
		}
		if msg := constraintProblem(l); msg != "" {
			add(fmt.Sprintf("/scheduling/placement/constraints(%d)", i), "%s", msg)
		}
	}
	if p.ExecutorResources != nil {
		if p.ExecutorResources.Cpus < 0 || p.ExecutorResources.Mem < 0 || p.ExecutorResources.Disk < 0 {
			add("/executorResources", "resources must be 0 or more")
		}
	}
	for k, e := range p.Environment {
		if e.Secret != "" {
			if _, ok := p.Secrets[e.Secret]; !ok {
				add("/environment/"+k, "references the undefined secret %q (add it to secrets)", e.Secret)
			}
		}
	}

	// Networks: one, host, container (any name: weft's overlay) or container/bridge.
	mode := ""
	if len(p.Networks) > 1 {
		add("/networks", "got %d networks; weft runs a pod on exactly one network", len(p.Networks))
	}
	for i, n := range p.Networks {
		switch n.Mode {
		case "host", "container", "container/bridge":
		default:
			add(fmt.Sprintf("/networks(%d)/mode", i), "got %q, expected host, container or container/bridge", n.Mode)
		}
		if i == 0 {
			mode = n.Mode
		}
		if n.Mode != "container" && n.Name != nil && *n.Name != "" {
			add(fmt.Sprintf("/networks(%d)/name", i), "only a container network has a name")
		}
	}

	// Volumes.
	vols := map[string]bool{}
	for i, v := range p.Volumes {
		path := fmt.Sprintf("/volumes(%d)", i)
		name(path, "volume", v.Name, vols)
		if len(v.Persistent) > 0 && string(v.Persistent) != "null" {
			add(path+"/persistent", "weft does not give pods persistent volumes (only apps with residency have them); use a host volume")
		}
		if v.Secret != "" {
			add(path+"/secret", "weft does not mount secret volumes in pods; pass the secret through environment")
		}
		if v.Host != "" && !strings.HasPrefix(v.Host, "/") {
			add(path+"/host", "got %q, expected an absolute path on the agent", v.Host)
		}
	}

	// Containers: all with images (Docker containers sharing the first's
	// network namespace) or none (processes on the host network).
	images := 0
	for _, c := range p.Containers {
		if c.Image != nil {
			images++
		}
	}
	commands := images == 0
	names := map[string]bool{}
	endpoints := map[string]bool{}
	for i, c := range p.Containers {
		path := fmt.Sprintf("/containers(%d)", i)
		name(path, "container", c.Name, names)
		r := c.Resources
		if r.Cpus < 0 || r.Mem < 0 || r.Disk < 0 || r.Gpus < 0 || r.Cpus > MaxCpus || r.Mem > MaxMem || r.Disk > MaxDisk {
			add(path+"/resources", "got cpus %g, mem %g, disk %g: each must be 0 or more, cpus at most %d, mem at most %d MB, disk at most %d MB", r.Cpus, r.Mem, r.Disk, MaxCpus, MaxMem, MaxDisk)
		}
		if r.Gpus > 0 {
			add(path+"/resources/gpus", "weft agents offer no GPUs")
		}
		if c.Image != nil {
			if c.Image.Kind != "DOCKER" {
				add(path+"/image/kind", "got %q: weft runs DOCKER images only", c.Image.Kind)
			}
			if c.Image.ID == "" {
				add(path+"/image/id", "error.path.missing")
			}
		} else if images > 0 {
			add(path+"/image", "weft runs a pod's containers either all as Docker containers sharing the first one's network namespace, or all as processes on the host network; this pod has images for some containers only: give every container an image, or none")
		} else if mode != "host" {
			add(path+"/image", "a container without an image runs as a process on the agent's host network; on a %q network every container needs an image (weft runs them as Docker containers sharing one network namespace)", mode)
		}
		if commands && c.Exec == nil {
			add(path+"/exec", "a container without an image needs a command (exec.command)")
		}
		if c.Exec != nil {
			cmd := c.Exec.Command
			if (cmd.Shell == "") == (len(cmd.Argv) == 0) {
				add(path+"/exec/command", "give exactly one of shell and argv")
			}
			if cmd.Shell != "" && c.Exec.OverrideEntrypoint != nil && !*c.Exec.OverrideEntrypoint {
				add(path+"/exec/overrideEntrypoint", "must not be false with command.shell")
			}
		}
		for k, e := range c.Environment {
			if e.Secret != "" {
				add(path+"/environment/"+k, "weft passes secrets to a pod through the pod's environment, which every container of the pod sees: move %s there", k)
			}
		}
		own := map[string]api.PodEndpoint{}
		for j, e := range c.Endpoints {
			ep := fmt.Sprintf("%s/endpoints(%d)", path, j)
			name(ep, "endpoint", e.Name, endpoints)
			own[e.Name] = e
			if e.ContainerPort != nil && (*e.ContainerPort < 0 || *e.ContainerPort > 65535) {
				add(ep+"/containerPort", "got %d, expected 0-65535", *e.ContainerPort)
			}
			if e.HostPort != nil && (*e.HostPort < 0 || *e.HostPort > 65535) {
				add(ep+"/hostPort", "got %d, expected 0-65535", *e.HostPort)
			}
			switch mode {
			case "host":
				if e.ContainerPort != nil && *e.ContainerPort != 0 {
					add(ep+"/containerPort", "a pod on host networking has no container ports; give hostPort (0: any free port)")
				}
			default:
				if e.ContainerPort == nil || *e.ContainerPort == 0 {
					add(ep+"/containerPort", "a pod on a container network needs the port its container listens on")
				}
			}
			for _, pr := range e.Protocol {
				if pr != "tcp" && pr != "udp" && pr != "http" && pr != "https" && pr != "http2" && pr != "grpc" {
					add(ep+"/protocol", "got %q, expected tcp or udp (http, https, http2 and grpc are tcp)", pr)
				}
			}
		}
		for j, vm := range c.VolumeMounts {
			mp := fmt.Sprintf("%s/volumeMounts(%d)", path, j)
			if !vols[vm.Name] {
				add(mp+"/name", "no pod volume is named %q", vm.Name)
			}
			if vm.MountPath == "" {
				add(mp+"/mountPath", "error.path.missing")
			} else if commands && (strings.HasPrefix(vm.MountPath, "/") || strings.HasPrefix(pathpkg.Clean(vm.MountPath), "..")) {
				add(mp+"/mountPath", "got %q: a container without an image sees a volume at a path inside its sandbox; give a relative path", vm.MountPath)
			}
		}
		if hc := c.HealthCheck; hc != nil {
			hp := path + "/healthCheck"
			n := 0
			if hc.HTTP != nil {
				n++
				if _, ok := own[hc.HTTP.Endpoint]; !ok {
					add(hp+"/http/endpoint", "container %s has no endpoint %q", c.Name, hc.HTTP.Endpoint)
				}
				if s := hc.HTTP.Scheme; s != "" && s != "HTTP" && s != "HTTPS" {
					add(hp+"/http/scheme", "got %q, expected HTTP or HTTPS", s)
				}
			}
			if hc.TCP != nil {
				n++
				if _, ok := own[hc.TCP.Endpoint]; !ok {
					add(hp+"/tcp/endpoint", "container %s has no endpoint %q", c.Name, hc.TCP.Endpoint)
				}
			}
			if hc.Exec != nil {
				n++
				if (hc.Exec.Command.Shell == "") == (len(hc.Exec.Command.Argv) == 0) {
					add(hp+"/exec/command", "give exactly one of shell and argv")
				}
			}
			if n != 1 {
				add(hp, "a health check has exactly one of http, tcp and exec")
			}
			if hc.IntervalSeconds < 1 || hc.TimeoutSeconds < 1 || hc.GracePeriodSeconds < 0 || hc.MaxConsecutiveFailures < 0 || hc.DelaySeconds < 0 {
				add(hp, "intervalSeconds and timeoutSeconds must be 1 or more, the others 0 or more")
			}
		}
	}
	return out
}

// podNetworkMode is the pod's network mode.
func podNetworkMode(p *api.Pod) string {
	if len(p.Networks) == 0 {
		return "host"
	}
	return p.Networks[0].Mode
}

// podApp derives the app that schedules the pod: resources summed over the
// containers (plus the executor's, as Marathon reserves them), every
// endpoint a port mapping in container order, each container's health
// check an app health check on its endpoint's port index.
func podApp(cfg *Config, p *api.Pod) *api.App {
	app := defaultApp(cfg)
	app.ID = p.ID
	app.Instances = p.Scaling.Instances
	app.Cpus, app.Mem, app.Disk = 0, 0, 0
	if er := p.ExecutorResources; er != nil {
		app.Cpus, app.Mem, app.Disk = er.Cpus, er.Mem, er.Disk
	}
	for _, c := range p.Containers {
		app.Cpus += c.Resources.Cpus
		app.Mem += c.Resources.Mem
		app.Disk += c.Resources.Disk
	}
	for k, v := range p.Labels {
		app.Labels[k] = v
	}
	for k, v := range p.Environment {
		app.Env[k] = v
	}
	for k, v := range p.Secrets {
		app.Secrets[k] = v
	}
	app.User = p.User
	s := p.Scheduling
	app.BackoffSeconds, app.BackoffFactor, app.MaxLaunchDelaySeconds = s.Backoff.Backoff, s.Backoff.BackoffFactor, s.Backoff.MaxLaunchDelay
	app.UpgradeStrategy = s.Upgrade
	if s.KillSelection != "" {
		app.KillSelection = s.KillSelection
	}
	if s.UnreachableStrategy != nil {
		app.UnreachableStrategy = *s.UnreachableStrategy
	}
	for _, c := range s.Placement.Constraints {
		l := []string{c.FieldName, c.Operator}
		if c.Value != "" {
			l = append(l, c.Value)
		}
		app.Constraints = append(app.Constraints, l)
	}
	app.AcceptedResourceRoles = s.Placement.AcceptedResourceRoles
	mode := podNetworkMode(p)
	if mode != "host" {
		n := api.Network{Mode: mode, Labels: p.Networks[0].Labels}
		if p.Networks[0].Name != nil {
			n.Name = *p.Networks[0].Name
		}
		app.Networks = []api.Network{n}
	}
	// A pod of command containers is a MESOS container: no Docker needed.
	ctr := &api.Container{Type: "MESOS", Volumes: []api.Volume{}, PortMappings: []api.PortMapping{}}
	if len(p.Containers) > 0 && p.Containers[0].Image != nil {
		ctr.Type = "DOCKER"
		ctr.Docker = &api.Docker{Image: p.Containers[0].Image.ID, Parameters: []api.Parameter{}}
	}
	index := map[string]int{}
	app.PortDefinitions = []api.PortDefinition{}
	for _, c := range p.Containers {
		for _, e := range c.Endpoints {
			proto := "tcp"
			for _, pr := range e.Protocol {
				if pr == "udp" {
					proto = "udp"
				}
			}
			index[e.Name] = len(ctr.PortMappings)
			pm := api.PortMapping{Name: e.Name, Protocol: proto, Labels: e.Labels}
			if e.ContainerPort != nil {
				pm.ContainerPort = *e.ContainerPort
			}
			switch {
			case e.HostPort != nil:
				hp := *e.HostPort
				pm.HostPort = &hp
			case mode != "container":
				zero := 0
				pm.HostPort = &zero
			}
			ctr.PortMappings = append(ctr.PortMappings, pm)
			if mode == "host" {
				app.PortDefinitions = append(app.PortDefinitions, api.PortDefinition{Name: e.Name, Protocol: proto, Labels: e.Labels})
			}
		}
	}
	app.Container = ctr
	for _, c := range p.Containers {
		hc := c.HealthCheck
		if hc == nil {
			continue
		}
		h := api.HealthCheck{GracePeriodSeconds: hc.GracePeriodSeconds, IntervalSeconds: hc.IntervalSeconds,
			TimeoutSeconds: hc.TimeoutSeconds, MaxConsecutiveFailures: hc.MaxConsecutiveFailures, DelaySeconds: hc.DelaySeconds}
		switch {
		case hc.HTTP != nil:
			h.Protocol = "MESOS_HTTP"
			if hc.HTTP.Scheme == "HTTPS" {
				h.Protocol = "MESOS_HTTPS"
			}
			h.Path = hc.HTTP.Path
			if h.Path == "" {
				h.Path = "/"
			}
			i := index[hc.HTTP.Endpoint]
			h.PortIndex = &i
		case hc.TCP != nil:
			h.Protocol = "MESOS_TCP"
			i := index[hc.TCP.Endpoint]
			h.PortIndex = &i
		case hc.Exec != nil:
			h.Protocol = "COMMAND"
			h.Command = &api.CommandCheck{Value: execCheckCommand(hc.Exec.Command)}
		}
		app.HealthChecks = append(app.HealthChecks, h)
	}
	pc := *p
	app.Pod = &pc
	return &app
}

func execCheckCommand(c api.PodCommand) string {
	if c.Shell != "" {
		return c.Shell
	}
	q := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// podTaskSpec is how an agent runs one instance of the pod behind app.
// hostPorts are the ports allocated to the instance, one per endpoint
// with a host port, in endpoint order.
func podTaskSpec(app *api.App, taskID string, hostPorts []int, base map[string]string) *api.PodTaskSpec {
	p := app.Pod
	spec := &api.PodTaskSpec{Volumes: map[string]string{}}
	for _, v := range p.Volumes {
		spec.Volumes[v.Name] = v.Host
	}
	// ENDPOINT_<NAME>: the port an endpoint is reached at (its host port
	// when it has one, else its container port), as Mesos's pods set.
	epEnv := map[string]string{}
	k := 0
	mode := podNetworkMode(p)
	for _, c := range p.Containers {
		for _, e := range c.Endpoints {
			name := "ENDPOINT_" + strings.ToUpper(strings.ReplaceAll(e.Name, "-", "_"))
			hasHost := e.HostPort != nil || mode != "container"
			switch {
			case hasHost && k < len(hostPorts):
				epEnv[name] = fmt.Sprint(hostPorts[k])
			case e.ContainerPort != nil:
				epEnv[name] = fmt.Sprint(*e.ContainerPort)
			}
			if hasHost {
				k++
			}
		}
	}
	for _, c := range p.Containers {
		tc := api.PodTaskContainer{Name: c.Name, Resources: api.Resources{Cpus: c.Resources.Cpus, Mem: c.Resources.Mem, Disk: c.Resources.Disk},
			Mounts: c.VolumeMounts, Fetch: c.Artifacts, Env: map[string]string{}}
		if c.Image != nil {
			tc.Image, tc.ForcePull = c.Image.ID, c.Image.ForcePull
		}
		if c.Exec != nil {
			tc.Shell, tc.Argv = c.Exec.Command.Shell, c.Exec.Command.Argv
		}
		for k, v := range base {
			tc.Env[k] = v
		}
		for k, v := range epEnv {
			tc.Env[k] = v
		}
		for k, v := range c.Environment {
			if v.Secret == "" {
				tc.Env[k] = v.Value
			}
		}
		tc.Env["MESOS_TASK_ID"] = taskID + "." + c.Name
		tc.Env["MARATHON_CONTAINER_NAME"] = c.Name
		if hc := c.HealthCheck; hc != nil && hc.Exec != nil {
			tc.ExecCheck = execCheckCommand(hc.Exec.Command)
		}
		spec.Containers = append(spec.Containers, tc)
	}
	return spec
}

// podEvent is Marathon's PodEvent.
func podEvent(typ string, r *http.Request) api.Event {
	return api.NewEvent(typ, map[string]any{"clientIp": clientIP(r), "uri": r.URL.Path})
}

func (f *Framework) createPod(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	p, aerr := parsePod(body, "")
	if aerr != nil {
		return aerr
	}
	id, _ := canonicalID(p.ID, "/")
	p.ID = id
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	st := m.Store()
	v := readView(st)
	if _, ok := v.apps[id]; ok {
		return errMsg(409, "Pod '%s' already exists", id)
	}
	if msg := pathClash(v, id); msg != "" {
		return notValid(api.ErrorDetail{Path: "/id", Errors: []string{msg}})
	}
	app, aerr := f.preparePod(v, nil, p, m.Now())
	if aerr != nil {
		return aerr
	}
	c := change{To: app}
	ops := append([]sched.Op{sched.Check(sched.TableApps, id, 0)}, appOps(c)...)
	res, aerr := f.deploy(r.Context(), m, v, []change{c}, boolParam(r, "force"), ops, podEvent(eventPodCreated, r))
	if aerr != nil {
		return aerr
	}
	w.Header().Set("Location", "/v2/pods"+id)
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	writeJSON(w, 201, podOut(app))
	return nil
}

// preparePod derives the app of p, gives its endpoints service ports for
// the lb (kept across updates) and versions it.
func (f *Framework) preparePod(v *view, existing *api.App, p *api.Pod, now time.Time) (*api.App, *apiError) {
	app := podApp(&f.cfg, p)
	used := map[int]string{}
	for _, oid := range v.appIDs {
		if oid == app.ID {
			continue
		}
		for _, sp := range servicePorts(v.apps[oid]) {
			if sp != 0 {
				used[sp] = oid
			}
		}
	}
	var prev []int
	if existing != nil {
		prev = servicePorts(existing)
	}
	if details := assignServicePorts(app, used, f.cfg.ReservedServicePorts, prev, f.cfg.ServicePortMin, f.cfg.ServicePortMax); len(details) > 0 {
		return nil, notValid(details...)
	}
	prevVersion := ""
	if existing != nil {
		prevVersion = existing.Version
	}
	app.Version = newVersion(now, prevVersion)
	if existing != nil && sameConfig(existing, app) {
		app.VersionInfo = &api.VersionInfo{LastScalingAt: app.Version, LastConfigChangeAt: configVersion(existing)}
	} else {
		app.VersionInfo = &api.VersionInfo{LastScalingAt: app.Version, LastConfigChangeAt: app.Version}
	}
	app.Pod.Version = app.Version
	return app, nil
}

func (f *Framework) putPod(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, probs := canonicalID(rawID, "/")
	if len(probs) > 0 {
		return notValid(api.ErrorDetail{Path: "/id", Errors: probs})
	}
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	p, aerr := parsePod(body, id)
	if aerr != nil {
		return aerr
	}
	if pid, _ := canonicalID(p.ID, "/"); pid != id {
		return notValid(api.ErrorDetail{Path: "/id", Errors: []string{fmt.Sprintf("the pod's id %q differs from the path's %q", pid, id)}})
	}
	p.ID = id
	st := m.Store()
	v := readView(st)
	existing := v.apps[id]
	if existing != nil && existing.Pod == nil {
		return errMsg(409, "'%s' is an app, not a pod: change it through /v2/apps", id)
	}
	if existing == nil {
		if msg := pathClash(v, id); msg != "" {
			return notValid(api.ErrorDetail{Path: "/id", Errors: []string{msg}})
		}
	}
	app, aerr := f.preparePod(v, existing, p, m.Now())
	if aerr != nil {
		return aerr
	}
	idx := uint64(0)
	typ := eventPodCreated
	if existing != nil {
		e, _ := st.Get(sched.TableApps, id)
		idx = e.ModifyIndex
		typ = eventPodUpdated
	}
	c := change{From: existing, To: app}
	ops := append([]sched.Op{sched.Check(sched.TableApps, id, idx)}, appOps(c)...)
	res, aerr := f.deploy(r.Context(), m, v, []change{c}, boolParam(r, "force"), ops, podEvent(typ, r))
	if aerr != nil {
		return aerr
	}
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	status := 200
	if existing == nil {
		status = 201
		w.Header().Set("Location", "/v2/pods"+id)
	}
	writeJSON(w, status, podOut(app))
	return nil
}

func (f *Framework) deletePod(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	st := m.Store()
	v := readView(st)
	app := podOf(v, id)
	if app == nil {
		return podNotFound(id)
	}
	e, _ := st.Get(sched.TableApps, id)
	ops := []sched.Op{sched.Check(sched.TableApps, id, e.ModifyIndex), sched.Delete(sched.TableApps, id),
		sched.Delete(sched.TableMeta, metaLastFailure+id)}
	for _, ve := range st.ListPrefix(sched.TableAppVersions, id+"@") {
		ops = append(ops, sched.Delete(sched.TableAppVersions, ve.Key))
	}
	res, aerr := f.deploy(r.Context(), m, v, []change{{From: app}}, boolParam(r, "force"), ops, podEvent(eventPodDeleted, r))
	if aerr != nil {
		return aerr
	}
	f.resetDelay(id)
	w.Header().Set("Marathon-Deployment-Id", res.DeploymentID)
	writeJSON(w, 202, res)
	return nil
}

func (f *Framework) podVersions(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID, version string) *apiError {
	id, _ := canonicalID(rawID, "/")
	if a := sched.AuthzFrom(r.Context()); !a.CanReadApp(id) {
		return forbidden(a, sched.AccessRead, id)
	}
	st := m.Store()
	if podOf(readView(st), id) == nil {
		return podNotFound(id)
	}
	if version != "" {
		e, ok := st.Get(sched.TableAppVersions, id+"@"+version)
		if !ok || e.Value.(*api.App).Pod == nil {
			return errMsg(404, "Pod '%s' has no version '%s'", id, version)
		}
		writeJSON(w, 200, podOut(e.Value.(*api.App)))
		return nil
	}
	out := []string{}
	for _, ve := range st.ListPrefix(sched.TableAppVersions, id+"@") {
		out = append(out, strings.TrimPrefix(ve.Key, id+"@"))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	writeJSON(w, 200, out)
	return nil
}

// killPodInstances kills one instance (DELETE ::instances/{id}) or those
// listed in the body (DELETE ::instances, a JSON array of instance ids).
// The pod keeps its scale: the instances are replaced.
func (f *Framework) killPodInstances(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID, instance string) *apiError {
	id, _ := canonicalID(rawID, "/")
	if a := sched.AuthzFrom(r.Context()); !a.CanWriteApp(id) {
		return forbidden(a, sched.AccessWrite, id)
	}
	st := m.Store()
	v := readView(st)
	app := podOf(v, id)
	if app == nil {
		return podNotFound(id)
	}
	want := map[string]bool{}
	if instance != "" {
		want[instance] = true
	} else {
		body, aerr := readBody(r)
		if aerr != nil {
			return aerr
		}
		var ids []string
		if err := json.Unmarshal(body, &ids); err != nil {
			return invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.expected.jsarray of instance ids"}})
		}
		for _, i := range ids {
			want[i] = true
		}
	}
	var ops []sched.Op
	out := []api.PodInstanceStatus{}
	now := m.Now()
	for _, te := range v.tasks[id] {
		if !want[te.rec.Task.ID] || api.Terminal(te.rec.Task.State) {
			continue
		}
		ops = append(ops, sched.Check(sched.TableTasks, te.rec.Task.ID, te.idx),
			sched.Put(sched.TableTasks, te.rec.Task.ID, killed(te.rec, "killed through the API")))
		out = append(out, instanceStatus(app, te.rec, now))
	}
	if len(out) == 0 {
		if instance != "" {
			return errMsg(404, "Instance '%s' of pod '%s' does not exist", instance, id)
		}
		writeJSON(w, 200, out)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if _, err := st.Apply(ctx, ops); err != nil {
		return storeError(err)
	}
	m.Revive()
	if instance != "" {
		writeJSON(w, 200, out[0])
		return nil
	}
	writeJSON(w, 200, out)
	return nil
}

func (f *Framework) podStatus(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, rawID string) *apiError {
	id, _ := canonicalID(rawID, "/")
	if a := sched.AuthzFrom(r.Context()); !a.CanReadApp(id) {
		return forbidden(a, sched.AccessRead, id)
	}
	v := readView(m.Store())
	app := podOf(v, id)
	if app == nil {
		return podNotFound(id)
	}
	writeJSON(w, 200, buildPodStatus(v, app, m.Now()))
	return nil
}

func (f *Framework) allPodStatus(w http.ResponseWriter, r *http.Request, m sched.MasterHandle) *apiError {
	v := readView(m.Store())
	out := []api.PodStatus{}
	for _, id := range v.appIDs {
		if app := podOf(v, id); app != nil && canRead(r.Context(), id) {
			out = append(out, buildPodStatus(v, app, m.Now()))
		}
	}
	writeJSON(w, 200, out)
	return nil
}

// buildPodStatus is a pod's status: STABLE when as many instances are
// STABLE as the pod wants, else DEGRADED.
func buildPodStatus(v *view, app *api.App, now time.Time) api.PodStatus {
	ts := api.Timestamp(now)
	st := api.PodStatus{ID: app.ID, Spec: podOut(app), StatusSince: app.Version, LastUpdated: ts, LastChanged: app.Version,
		Instances: []api.PodInstanceStatus{}, TerminationHistory: []api.TerminationHistory{}}
	stable := 0
	for _, te := range v.tasks[app.ID] {
		t := te.rec.Task
		if api.Terminal(t.State) {
			continue
		}
		is := instanceStatus(app, te.rec, now)
		if is.Status == "STABLE" {
			stable++
		}
		st.Instances = append(st.Instances, is)
	}
	st.Status = "DEGRADED"
	if stable == app.Instances && len(st.Instances) == app.Instances {
		st.Status = "STABLE"
	}
	return st
}

// instanceStatus is one instance (one task of the pod's app) as Marathon's
// PodInstanceStatus; its containers share the instance's task state, as
// they are started, checked and killed together.
func instanceStatus(app *api.App, rec *sched.TaskRecord, now time.Time) api.PodInstanceStatus {
	t := rec.Task
	ts := api.Timestamp(now)
	since := t.StagedAt
	if t.StartedAt != "" {
		since = t.StartedAt
	}
	if since == "" {
		since = t.Version
	}
	status := "STAGING"
	switch {
	case t.State == api.TaskRunning:
		status = "STABLE"
		if healthy, ok := t.Healthy(); len(app.HealthChecks) > 0 && (!ok || !healthy) {
			status = "DEGRADED"
		}
	case t.State == api.TaskKilling || api.Terminal(t.State) || rec.Goal == api.GoalKill:
		status = "TERMINAL"
	case t.State == "" && t.SlaveID == "":
		status = "PENDING"
	}
	p := app.Pod
	is := api.PodInstanceStatus{ID: t.ID, Status: status, StatusSince: since, Message: t.Message, Conditions: []any{},
		AgentHostname: t.Host, AgentID: t.SlaveID, Resources: api.PodResources{Cpus: app.Cpus, Mem: app.Mem, Disk: app.Disk},
		Networks: []api.PodNetworkStatus{}, Containers: []api.PodContainerStatus{},
		SpecReference: "/v2/pods" + app.ID + "::versions/" + t.Version, LastUpdated: ts, LastChanged: since}
	if len(t.IPAddresses) > 0 {
		ns := api.PodNetworkStatus{Addresses: []string{}}
		if len(app.Networks) > 0 {
			ns.Name = app.Networks[0].Name
		}
		for _, a := range t.IPAddresses {
			ns.Addresses = append(ns.Addresses, a.IPAddress)
		}
		is.Networks = append(is.Networks, ns)
	}
	mode := podNetworkMode(p)
	k := 0
	healthy, hok := t.Healthy()
	for _, c := range p.Containers {
		cs := api.PodContainerStatus{Name: c.Name, Status: t.State, StatusSince: since, Conditions: []any{},
			ContainerID: t.ID + "." + c.Name, Endpoints: []api.PodEndpointStatus{},
			Resources: c.Resources, LastUpdated: ts, LastChanged: since}
		if cs.Status == "" {
			cs.Status = api.TaskStaging
		}
		if api.Terminal(t.State) {
			cs.Termination = &api.PodTerminationStatus{ExitCode: t.ExitStatus, Message: t.Message}
		}
		for _, e := range c.Endpoints {
			es := api.PodEndpointStatus{Name: e.Name}
			if e.HostPort != nil || mode != "container" {
				if k < len(t.Ports) {
					es.AllocatedHostPort = t.Ports[k]
				}
				k++
			}
			if hc := c.HealthCheck; hc != nil && hok && ((hc.HTTP != nil && hc.HTTP.Endpoint == e.Name) || (hc.TCP != nil && hc.TCP.Endpoint == e.Name)) {
				h := healthy
				es.Healthy = &h
			}
			cs.Endpoints = append(cs.Endpoints, es)
		}
		is.Containers = append(is.Containers, cs)
	}
	return is
}

// withoutPods drops the ids of pods from ids (a new slice).
func withoutPods(v *view, ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if a := v.apps[id]; a == nil || a.Pod == nil {
			out = append(out, id)
		}
	}
	return out
}
