package marathon

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// WeftNetwork is the one container network agents provide; DockerMinMem is
// the smallest memory limit (MB) the Docker Engine accepts.
const (
	WeftNetwork  = "weft"
	DockerMinMem = 6
)

// Marathon's validation messages, word for word where Marathon has one.
const (
	msgCmdArgs        = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
	msgHealthPort     = "Health check port indices must address an element of the ports array or container port mappings."
	msgConstraintOp   = "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"
	msgConstraintLen  = "Each constraint must have either 2 or 3 fields"
	msgPortsUnique    = "Ports must be unique."
	msgPortNames      = "Port names must be unique."
	msgHostPortDefs   = "portDefinitions are only allowed with host-networking"
	msgHostMappings   = "portMappings are not allowed with host-networking"
	msgBothNetworks   = "must not specify both container.docker.network and networks"
	msgEmptyImage     = "must not be empty"
	msgDockerMissing  = "is not defined"
	msgKillSelection  = "is not one of (YOUNGEST_FIRST,OLDEST_FIRST)"
	msgHealthProtocol = "is not one of (HTTP,HTTPS,TCP,COMMAND,MESOS_HTTP,MESOS_HTTPS,MESOS_TCP)"
)

func fmtFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// validateApp checks an app in canonical form against Marathon's rules and
// returns every violation with its JSON path. prefix is prepended to paths
// (for apps inside an array: "(0)").
func validateApp(app *api.App, prefix string) []api.ErrorDetail {
	var out []api.ErrorDetail
	add := func(path, msg string) {
		out = append(out, api.ErrorDetail{Path: prefix + path, Errors: []string{msg}})
	}
	if app.ID == "" {
		add("/id", "error.path.missing")
	}
	cmd := app.Cmd != nil && *app.Cmd != ""
	args := len(app.Args) > 0
	container := app.Container != nil && app.Container.Docker != nil && app.Container.Docker.Image != ""
	if !((cmd != args) || (!(cmd && args) && container)) {
		add("/", msgCmdArgs)
	}
	nonNeg := func(path string, v float64) {
		if v < 0 {
			add(path, fmt.Sprintf("got %s, expected 0.0 or more", fmtFloat(v)))
		}
	}
	nonNeg("/cpus", app.Cpus)
	nonNeg("/mem", app.Mem)
	nonNeg("/disk", app.Disk)
	if app.Gpus < 0 {
		add("/gpus", fmt.Sprintf("got %d, expected 0 or more", app.Gpus))
	}
	if app.Instances < 0 {
		add("/instances", fmt.Sprintf("got %d, expected 0 or more", app.Instances))
	}
	nonNeg("/backoffSeconds", app.BackoffSeconds)
	if app.BackoffFactor < 1 {
		add("/backoffFactor", fmt.Sprintf("got %s, expected 1.0 or more", fmtFloat(app.BackoffFactor)))
	}
	nonNeg("/maxLaunchDelaySeconds", app.MaxLaunchDelaySeconds)
	between := func(path string, v float64) {
		if v < 0 || v > 1 {
			add(path, fmt.Sprintf("got %s, expected between 0.0 and 1.0", fmtFloat(v)))
		}
	}
	between("/upgradeStrategy/minimumHealthCapacity", app.UpgradeStrategy.MinimumHealthCapacity)
	between("/upgradeStrategy/maximumOverCapacity", app.UpgradeStrategy.MaximumOverCapacity)
	if app.TaskKillGracePeriodSeconds != nil && *app.TaskKillGracePeriodSeconds < 0 {
		nonNeg("/taskKillGracePeriodSeconds", *app.TaskKillGracePeriodSeconds)
	}
	if !app.UnreachableStrategy.Disabled {
		nonNeg("/unreachableStrategy/inactiveAfterSeconds", app.UnreachableStrategy.InactiveAfterSeconds)
		if app.UnreachableStrategy.ExpungeAfterSeconds < app.UnreachableStrategy.InactiveAfterSeconds {
			add("/unreachableStrategy/expungeAfterSeconds", fmt.Sprintf("got %s, expected %s or more (inactiveAfterSeconds)",
				fmtFloat(app.UnreachableStrategy.ExpungeAfterSeconds), fmtFloat(app.UnreachableStrategy.InactiveAfterSeconds)))
		}
	}
	switch app.KillSelection {
	case "YOUNGEST_FIRST", "OLDEST_FIRST":
	default:
		add("/killSelection", msgKillSelection)
	}
	for i, c := range app.Constraints {
		if msg := constraintProblem(c); msg != "" {
			add(fmt.Sprintf("/constraints(%d)", i), msg)
		}
	}
	for i, d := range app.Dependencies {
		if _, probs := canonicalID(d, parentID(app.ID)); len(probs) > 0 {
			add(fmt.Sprintf("/dependencies(%d)", i), probs[0])
		}
	}
	if c := app.Container; c != nil {
		switch c.Type {
		case "DOCKER":
			if c.Docker == nil {
				add("/container/docker", msgDockerMissing)
			} else if c.Docker.Image == "" {
				add("/container/docker/image", msgEmptyImage)
			}
		case "MESOS", "":
		default:
			add("/container/type", "is not one of (DOCKER,MESOS)")
		}
		if c.Docker != nil && c.Docker.Network != "" {
			add("/", msgBothNetworks)
		}
		seen := map[string]bool{}
		for i, pm := range c.PortMappings {
			if pm.Name != "" {
				if seen[pm.Name] {
					add("/container/portMappings", msgPortNames)
				}
				seen[pm.Name] = true
			}
			if pm.ContainerPort < 0 || pm.ContainerPort > 65535 {
				add(fmt.Sprintf("/container/portMappings(%d)/containerPort", i), fmt.Sprintf("got %d, expected between 0 and 65535", pm.ContainerPort))
			}
			if pm.HostPort != nil && (*pm.HostPort < 0 || *pm.HostPort > 65535) {
				add(fmt.Sprintf("/container/portMappings(%d)/hostPort", i), fmt.Sprintf("got %d, expected between 0 and 65535", *pm.HostPort))
			}
		}
	}
	mode := networkMode(app)
	for i, n := range app.Networks {
		switch n.Mode {
		case "host", "container/bridge":
		case "container":
			// weft provides one container network: any name (Marathon
			// clusters use "dcos" most) runs on it, and
			// GET /v1/apps/problems says so.
		default:
			add(fmt.Sprintf("/networks(%d)/mode", i), "is not one of (container,container/bridge,host)")
		}
	}
	if c := app.Container; c != nil && c.Type == "DOCKER" {
		// What the Docker Engine would refuse at start, caught at submit.
		if app.Mem < DockerMinMem {
			add("/mem", fmt.Sprintf("got %g, expected %g or more: the Docker Engine refuses smaller memory limits", app.Mem, float64(DockerMinMem)))
		}
		hostPorts := map[int]bool{}
		for i, pm := range c.PortMappings {
			if mode == "container/bridge" && pm.ContainerPort == 0 {
				add(fmt.Sprintf("/container/portMappings(%d)/containerPort", i), "must not be 0 in BRIDGE networking: name the port the container listens on")
			}
			if pm.HostPort != nil && *pm.HostPort > 0 {
				if hostPorts[*pm.HostPort] {
					add(fmt.Sprintf("/container/portMappings(%d)/hostPort", i), fmt.Sprintf("hostPort %d is mapped twice", *pm.HostPort))
				}
				hostPorts[*pm.HostPort] = true
			}
		}
	}
	if mode != "host" && len(app.PortDefinitions) > 0 {
		add("/", msgHostPortDefs)
	}
	if mode == "host" && app.Container != nil && len(app.Container.PortMappings) > 0 {
		add("/", msgHostMappings)
	}
	seenPort := map[int]bool{}
	seenName := map[string]bool{}
	for i, pd := range app.PortDefinitions {
		if pd.Port < 0 || pd.Port > 65535 {
			add(fmt.Sprintf("/portDefinitions(%d)/port", i), fmt.Sprintf("got %d, expected between 0 and 65535", pd.Port))
		}
		if pd.Port != 0 {
			if seenPort[pd.Port] {
				add("/portDefinitions", msgPortsUnique)
			}
			seenPort[pd.Port] = true
		}
		if pd.Name != "" {
			if seenName[pd.Name] {
				add("/portDefinitions", msgPortNames)
			}
			seenName[pd.Name] = true
		}
		switch strings.ToLower(pd.Protocol) {
		case "tcp", "udp", "udp,tcp", "tcp,udp":
		default:
			add(fmt.Sprintf("/portDefinitions(%d)/protocol", i), "is not one of (tcp,udp,udp,tcp)")
		}
	}
	nports := portIndices(app)
	for i, hc := range app.HealthChecks {
		p := fmt.Sprintf("/healthChecks(%d)", i)
		switch hc.Protocol {
		case "HTTP", "HTTPS", "TCP":
			if hc.Command == nil {
				if hc.PortIndex != nil {
					if *hc.PortIndex < 0 || *hc.PortIndex >= nports {
						add(p, msgHealthPort)
					}
				} else if hc.Port == nil && nports != 1 {
					add(p, msgHealthPort)
				}
			}
		case "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP":
			if hc.PortIndex != nil && hc.Port == nil && (*hc.PortIndex < 0 || *hc.PortIndex >= nports) {
				add(p, msgHealthPort)
			}
		case "COMMAND":
			if hc.Command == nil || hc.Command.Value == "" {
				add(p+"/command", msgDockerMissing)
			}
		default:
			add(p+"/protocol", msgHealthProtocol)
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"gracePeriodSeconds", hc.GracePeriodSeconds}, {"intervalSeconds", hc.IntervalSeconds},
			{"timeoutSeconds", hc.TimeoutSeconds}, {"maxConsecutiveFailures", hc.MaxConsecutiveFailures}, {"delaySeconds", hc.DelaySeconds}} {
			if f.v < 0 {
				add(p+"/"+f.name, fmt.Sprintf("got %d, expected 0 or more", f.v))
			}
		}
	}
	if len(app.ReadinessChecks) > 1 {
		add("/readinessChecks", fmt.Sprintf("got %d, expected 1 or less", len(app.ReadinessChecks)))
	}
	names := map[string]bool{}
	for _, pd := range app.PortDefinitions {
		names[pd.Name] = true
	}
	if app.Container != nil {
		for _, pm := range app.Container.PortMappings {
			names[pm.Name] = true
		}
	}
	for i, rc := range app.ReadinessChecks {
		if !names[rc.PortName] {
			add(fmt.Sprintf("/readinessChecks(%d)/portName", i), "No port definition reference for portName "+rc.PortName)
		}
		if rc.TimeoutSeconds >= rc.IntervalSeconds {
			add(fmt.Sprintf("/readinessChecks(%d)/timeoutSeconds", i), fmt.Sprintf("got %d, expected less than %d", rc.TimeoutSeconds, rc.IntervalSeconds))
		}
	}
	if app.AcceptedResourceRoles != nil && len(app.AcceptedResourceRoles) == 0 {
		add("/acceptedResourceRoles", "must not be empty")
	}
	for i, r := range app.AcceptedResourceRoles {
		if r != "*" && !roleRE.MatchString(r) {
			add(fmt.Sprintf("/acceptedResourceRoles(%d)", i), "must be a valid role name")
		}
	}
	validateVolumes(app, add)
	return append(out, limitProblems(app, prefix)...)
}

var roleRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.\-/]*$`)

// constraintProblem checks one [field, OP, value?] constraint and returns
// Marathon's message for what is wrong, or "".
func constraintProblem(c []string) string {
	if len(c) < 2 || len(c) > 3 {
		return msgConstraintLen
	}
	if c[0] == "" {
		return "Missing field and operator"
	}
	hasValue := len(c) == 3
	value := ""
	if hasValue {
		value = c[2]
	}
	switch strings.ToUpper(c[1]) {
	case "UNIQUE":
		if hasValue && value != "" {
			return "Value specified but not used"
		}
	case "CLUSTER", "IS":
		if !hasValue || value == "" {
			return "Missing value"
		}
	case "GROUP_BY":
		if hasValue && value != "" {
			if _, err := strconv.Atoi(value); err != nil {
				return "Value was specified but is not a number"
			}
		}
	case "MAX_PER":
		n, err := strconv.Atoi(value)
		if !hasValue || err != nil {
			return "Value was not specified or is not a number"
		}
		if n < 1 {
			return fmt.Sprintf("got %d, expected 1 or more", n)
		}
	case "LIKE", "UNLIKE":
		if !hasValue {
			return "A regular expression value must be provided"
		}
		if _, err := regexp.Compile("^(?:" + value + ")$"); err != nil {
			return fmt.Sprintf("'%s' is not a valid regular expression", value)
		}
	default:
		return msgConstraintOp
	}
	return ""
}
