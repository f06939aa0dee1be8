package marathon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// apiError is an error answer in Marathon's shape.
type apiError struct {
	Status int
	Body   api.ErrorBody
	// retry marks a store conflict: the state changed between reading
	// and writing; the request is run again on the new state.
	retry bool
}

func (e *apiError) Error() string {
	msg := e.Body.Message
	for _, d := range e.Body.Details {
		msg += fmt.Sprintf("; %s: %s", d.Path, strings.Join(d.Errors, ", "))
	}
	return msg
}

func invalidJSON(details ...api.ErrorDetail) *apiError {
	return &apiError{Status: 400, Body: api.ErrorBody{Message: "Invalid JSON", Details: details}}
}

func notValid(details ...api.ErrorDetail) *apiError {
	return &apiError{Status: 422, Body: api.ErrorBody{Message: "Object is not valid", Details: details}}
}

func errMsg(status int, format string, args ...any) *apiError {
	return &apiError{Status: status, Body: api.ErrorBody{Message: fmt.Sprintf(format, args...)}}
}

func appNotFound(id string) *apiError { return errMsg(404, "App '%s' does not exist", id) }

// Marathon's defaults for an app definition (app.raml, UpgradeStrategy.scala,
// docs/backoff.md), with weft's unreachableStrategy default from cfg.
func defaultApp(cfg *Config) api.App {
	return api.App{
		Instances:             1,
		Cpus:                  1,
		Mem:                   128,
		Env:                   map[string]api.EnvValue{},
		Labels:                map[string]string{},
		Constraints:           [][]string{},
		Fetch:                 []api.Fetch{},
		HealthChecks:          []api.HealthCheck{},
		ReadinessChecks:       []api.ReadinessCheck{},
		Dependencies:          []string{},
		BackoffSeconds:        1,
		BackoffFactor:         1.15,
		MaxLaunchDelaySeconds: 300,
		UpgradeStrategy:       api.UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1},
		KillSelection:         "YOUNGEST_FIRST",
		UnreachableStrategy: api.UnreachableStrategy{
			InactiveAfterSeconds: cfg.InactiveAfter.Seconds(),
			ExpungeAfterSeconds:  cfg.ExpungeAfter.Seconds(),
		},
		Secrets: map[string]api.Secret{},
	}
}

func defaultHealthCheck() api.HealthCheck {
	return api.HealthCheck{Protocol: "HTTP", Path: "/", GracePeriodSeconds: 300, IntervalSeconds: 60,
		TimeoutSeconds: 20, MaxConsecutiveFailures: 3, DelaySeconds: 15}
}

func defaultReadinessCheck() api.ReadinessCheck {
	return api.ReadinessCheck{Name: "readinessCheck", Protocol: "HTTP", Path: "/", PortName: "http-api",
		IntervalSeconds: 30, TimeoutSeconds: 10, HTTPStatusCodesForReady: []int{200}}
}

// parseObject decodes a request body that must be one JSON object and
// checks its types against t. It returns the top-level keys.
func parseObject(body []byte, t reflect.Type, prefix string) (map[string]json.RawMessage, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		return nil, invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.invalid.json: " + err.Error()}})
	}
	if dec.More() {
		return nil, invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.invalid.json: trailing data after the JSON value"}})
	}
	m, ok := top.(map[string]any)
	if !ok {
		p := prefix
		if p == "" {
			p = "/"
		}
		return nil, invalidJSON(api.ErrorDetail{Path: p, Errors: []string{"error.expected.jsobject"}})
	}
	var details []api.ErrorDetail
	checkTypes(m, t, prefix, &details)
	if len(details) > 0 {
		return nil, invalidJSON(details...)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		return nil, invalidJSON(api.ErrorDetail{Path: "/", Errors: []string{"error.invalid.json: " + err.Error()}})
	}
	return keys, nil
}

// outputOnly are fields a client may send back from a GET but that never
// change an app.
var outputOnly = []string{"version", "versionInfo", "tasksStaged", "tasksRunning", "tasksHealthy",
	"tasksUnhealthy", "deployments", "tasks", "lastTaskFailure", "readinessCheckResults", "taskStats"}

// mergeApp builds an app from base (nil: Marathon's defaults) with the
// top-level keys of an update laid over it: a key present in the update
// replaces the base's value whole (env and labels are replaced, not
// merged), an absent key keeps it. prefix is the JSON path of the update
// for error messages.
func mergeApp(cfg *Config, base *api.App, keys map[string]json.RawMessage, prefix string) (*api.App, map[string]bool, *apiError) {
	merged := map[string]json.RawMessage{}
	if base != nil {
		b, _ := json.Marshal(base)
		_ = json.Unmarshal(b, &merged)
	}
	for _, k := range outputOnly {
		delete(merged, k)
		delete(keys, k)
	}
	has := func(k string) bool {
		v, ok := keys[k]
		return ok && string(bytes.TrimSpace(v)) != "null"
	}
	// Switching representation drops the other one.
	if has("ports") || has("portDefinitions") {
		delete(merged, "ports")
		delete(merged, "portDefinitions")
	}
	if has("cmd") && !has("args") {
		delete(merged, "args")
	}
	if has("args") && !has("cmd") {
		delete(merged, "cmd")
	}
	// uris are the legacy form of fetch: an update giving uris replaces
	// the fetch list (it would otherwise be appended to the old one).
	if has("uris") && !has("fetch") {
		delete(merged, "fetch")
	}
	if has("container") && !has("networks") {
		var c api.Container
		if json.Unmarshal(keys["container"], &c) == nil && c.Docker != nil && c.Docker.Network != "" {
			delete(merged, "networks")
		}
	}
	for k, v := range keys {
		merged[k] = v
	}
	present := map[string]bool{}
	for k, v := range merged {
		if string(bytes.TrimSpace(v)) != "null" {
			present[k] = true
		}
	}
	if has("networks") {
		present["networks!"] = true
	}
	b, _ := json.Marshal(merged)
	app := defaultApp(cfg)
	if err := json.Unmarshal(b, &app); err != nil {
		return nil, nil, invalidJSON(api.ErrorDetail{Path: orRoot(prefix), Errors: []string{"error.invalid.json: " + err.Error()}})
	}
	// Nested objects with defaults of their own.
	if raw, ok := merged["healthChecks"]; ok {
		var elems []json.RawMessage
		_ = json.Unmarshal(raw, &elems)
		app.HealthChecks = []api.HealthCheck{}
		for _, e := range elems {
			hc := defaultHealthCheck()
			_ = json.Unmarshal(e, &hc)
			app.HealthChecks = append(app.HealthChecks, hc)
		}
	}
	if raw, ok := merged["readinessChecks"]; ok {
		var elems []json.RawMessage
		_ = json.Unmarshal(raw, &elems)
		app.ReadinessChecks = []api.ReadinessCheck{}
		for _, e := range elems {
			rc := defaultReadinessCheck()
			_ = json.Unmarshal(e, &rc)
			app.ReadinessChecks = append(app.ReadinessChecks, rc)
		}
	}
	if raw, ok := merged["fetch"]; ok {
		// An artifact is extracted unless it says otherwise (FetchUri's
		// defaults in Marathon: extract true, executable and cache false).
		var elems []json.RawMessage
		_ = json.Unmarshal(raw, &elems)
		app.Fetch = []api.Fetch{}
		for _, e := range elems {
			f := api.Fetch{Extract: true}
			_ = json.Unmarshal(e, &f)
			app.Fetch = append(app.Fetch, f)
		}
	}
	if raw, ok := merged["upgradeStrategy"]; ok {
		us := api.UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1}
		_ = json.Unmarshal(raw, &us)
		app.UpgradeStrategy = us
	}
	return &app, present, nil
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// normalizeApp brings an app to Marathon's canonical form: legacy docker
// networking into networks and container.portMappings, legacy ports into
// portDefinitions, one dynamic port by default, uris into fetch, health
// check port indexes, and no null collections.
func normalizeApp(app *api.App, present map[string]bool) {
	if app.Env == nil {
		app.Env = map[string]api.EnvValue{}
	}
	if app.Labels == nil {
		app.Labels = map[string]string{}
	}
	if app.Constraints == nil {
		app.Constraints = [][]string{}
	}
	if app.Fetch == nil {
		app.Fetch = []api.Fetch{}
	}
	if app.HealthChecks == nil {
		app.HealthChecks = []api.HealthCheck{}
	}
	if app.ReadinessChecks == nil {
		app.ReadinessChecks = []api.ReadinessCheck{}
	}
	if app.Dependencies == nil {
		app.Dependencies = []string{}
	}
	if app.Secrets == nil {
		app.Secrets = map[string]api.Secret{}
	}
	if app.KillSelection == "" {
		app.KillSelection = "YOUNGEST_FIRST"
	}
	for _, u := range app.Uris {
		l := strings.ToLower(u)
		extract := strings.HasSuffix(l, ".tgz") || strings.HasSuffix(l, ".tar.gz") || strings.HasSuffix(l, ".zip") ||
			strings.HasSuffix(l, ".tar") || strings.HasSuffix(l, ".tbz2") || strings.HasSuffix(l, ".txz") ||
			strings.HasSuffix(l, ".tar.bz2") || strings.HasSuffix(l, ".tar.xz")
		app.Fetch = append(app.Fetch, api.Fetch{URI: u, Extract: extract})
	}
	app.Uris = nil
	// Legacy docker networking → 1.5+ networks and container.portMappings.
	if c := app.Container; c != nil && c.Docker != nil {
		if len(c.Docker.PortMappings) > 0 && len(c.PortMappings) == 0 {
			c.PortMappings = c.Docker.PortMappings
		}
		c.Docker.PortMappings = nil
		if n := c.Docker.Network; n != "" && !present["networks!"] {
			switch strings.ToUpper(n) {
			case "BRIDGE":
				app.Networks = []api.Network{{Mode: "container/bridge"}}
			case "USER":
				name := ""
				if app.IPAddress != nil {
					name = app.IPAddress.NetworkName
				}
				app.Networks = []api.Network{{Mode: "container", Name: name}}
			default:
				app.Networks = []api.Network{{Mode: "host"}}
			}
			c.Docker.Network = ""
		}
	}
	// Legacy IP-per-task (ipAddress, Marathon < 1.5) is a container
	// network of that name, as Marathon 1.5+ reads it; ipAddress itself
	// is kept (its discovery ports name the task's ports).
	if ip := app.IPAddress; ip != nil && len(app.Networks) == 0 && !present["networks!"] {
		app.Networks = []api.Network{{Mode: "container", Name: ip.NetworkName, Labels: ip.Labels}}
	}
	if len(app.Networks) == 0 {
		app.Networks = []api.Network{{Mode: "host"}}
	}
	for i := range app.Networks {
		if app.Networks[i].Mode == "" {
			app.Networks[i].Mode = "host"
		}
	}
	if app.Container != nil {
		if app.Container.Type == "" {
			app.Container.Type = "DOCKER" // Marathon's default container type
		}
		for i := range app.Container.PortMappings {
			pm := &app.Container.PortMappings[i]
			if pm.Protocol == "" {
				pm.Protocol = "tcp"
			}
			if pm.HostPort == nil && networkMode(app) == "container/bridge" {
				zero := 0
				pm.HostPort = &zero
			}
		}
		if app.Container.Volumes == nil {
			app.Container.Volumes = []api.Volume{}
		}
		for i := range app.Container.Volumes {
			app.Container.Volumes[i].Persistent = persistentDefaults(app.Container.Volumes[i].Persistent)
		}
		if d := app.Container.Docker; d != nil && d.Parameters == nil {
			d.Parameters = []api.Parameter{}
		}
	}
	if networkMode(app) == "host" {
		if len(app.PortDefinitions) == 0 && len(app.Ports) > 0 {
			for _, p := range app.Ports {
				app.PortDefinitions = append(app.PortDefinitions, api.PortDefinition{Port: p, Protocol: "tcp"})
			}
		}
		if !present["portDefinitions"] && !present["ports"] && app.PortDefinitions == nil {
			app.PortDefinitions = []api.PortDefinition{{Port: 0, Protocol: "tcp", Name: "default"}}
		}
	}
	if app.PortDefinitions == nil {
		app.PortDefinitions = []api.PortDefinition{}
	}
	for i := range app.PortDefinitions {
		if app.PortDefinitions[i].Protocol == "" {
			app.PortDefinitions[i].Protocol = "tcp"
		}
	}
	for i := range app.HealthChecks {
		hc := &app.HealthChecks[i]
		hc.Protocol = strings.ToUpper(hc.Protocol)
		if hc.Protocol == "" {
			hc.Protocol = "HTTP"
		}
		switch hc.Protocol {
		case "COMMAND":
			hc.Path = ""
		case "TCP", "MESOS_TCP":
			hc.Path = ""
			fallthrough
		default:
			if hc.PortIndex == nil && hc.Port == nil {
				zero := 0
				hc.PortIndex = &zero
			}
		}
	}
	base := parentID(app.ID)
	for i, d := range app.Dependencies {
		if id, probs := canonicalID(d, base); len(probs) == 0 {
			app.Dependencies[i] = id
		}
	}
}

// networkMode is the app's networking: host, container/bridge or container.
func networkMode(app *api.App) string {
	if len(app.Networks) == 0 {
		return "host"
	}
	return app.Networks[0].Mode
}

// hostPortCount is how many host ports a task of app needs.
func portIndices(app *api.App) int {
	if app.Container != nil && len(app.Container.PortMappings) > 0 {
		return len(app.Container.PortMappings)
	}
	return len(app.PortDefinitions)
}

// servicePorts lists the app's service ports in port index order.
func servicePorts(app *api.App) []int {
	var out []int
	if app.Container != nil && len(app.Container.PortMappings) > 0 {
		for _, pm := range app.Container.PortMappings {
			out = append(out, pm.ServicePort)
		}
		return out
	}
	for _, pd := range app.PortDefinitions {
		out = append(out, pd.Port)
	}
	return out
}

// newVersion is the version timestamp of a change made at now: later than
// prev, so versions of one app always sort in order.
func newVersion(now time.Time, prev string) string {
	v := api.Timestamp(now)
	if prev != "" && v <= prev {
		if t, err := time.Parse("2006-01-02T15:04:05.000Z", prev); err == nil {
			v = api.Timestamp(t.Add(time.Millisecond))
		}
	}
	return v
}

// configVersion is when the app's configuration last changed: a task is
// of the current configuration when its version (the app's version at its
// launch) lies between configVersion and the app's version. Scaling moves
// the version but not the configuration; a rollback restores an app with
// its old version, so tasks launched for the abandoned one are newer than
// it and are replaced.
func configVersion(app *api.App) string {
	if app.VersionInfo != nil && app.VersionInfo.LastConfigChangeAt != "" {
		return app.VersionInfo.LastConfigChangeAt
	}
	return app.Version
}

// sameConfig reports whether a and b differ at most in instances and
// version fields: the change is a scale, not a new configuration.
func sameConfig(a, b *api.App) bool {
	x, y := *a, *b
	x.Instances, y.Instances = 0, 0
	x.Version, y.Version = "", ""
	x.VersionInfo, y.VersionInfo = nil, nil
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return bytes.Equal(bx, by)
}

// cloneApp deep-copies an app (store values are shared and immutable).
func cloneApp(a *api.App) *api.App {
	b, _ := json.Marshal(a)
	var out api.App
	_ = json.Unmarshal(b, &out)
	return &out
}

func sortStrings(s []string) { sort.Strings(s) }

// persistentDefaults fills a persistent volume's type ("root") and
// constraints ([]) as Marathon gives them back when a definition leaves
// them out; anything that is not an object is left for validation.
func persistentDefaults(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return raw
	}
	if _, ok := m["type"]; !ok {
		m["type"] = json.RawMessage(`"root"`)
	}
	if _, ok := m["constraints"]; !ok {
		m["constraints"] = json.RawMessage(`[]`)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}
