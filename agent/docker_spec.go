package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"

	"github.com/weftnet/weft/sched/api"
)

// Network modes a Docker task can ask for.
const (
	DockerNetBridge = "BRIDGE" // Docker's default bridge; host ports published
	DockerNetHost   = "HOST"   // the host's network stack
	DockerNetNone   = "NONE"   // loopback only
	DockerNetWeft   = "weft"   // the container network: an overlay address of the node's block
)

// WeftNetworkName is the name apps use for the container network
// (networks[].name, or ipAddress.networkName in the legacy form).
const WeftNetworkName = "weft"

// Container labels linking a container to its task. They are how an agent
// restart finds its containers again.
const (
	LabelTaskID  = "weft.task-id"
	LabelAppID   = "weft.app-id"
	LabelAgentID = "weft.agent-id"
	// LabelInstance tells agents with the same id apart on one daemon (see
	// DockerConfig.StateDir).
	LabelInstance = "weft.agent-instance"
	LabelSandbox  = "weft.sandbox"
	LabelMemMB    = "weft.mem-mb"
	LabelNetwork  = "weft.network"
)

// dockerMinMemMB is the Docker Engine's minimum memory limit (6 MiB).
const dockerMinMemMB = 6

// DockerNetworkMode resolves the network a Docker task asks for, from the
// 1.5+ networks[] form when present, else from the legacy
// container.docker.network. An app with neither runs on the host network,
// as in Marathon.
//
//	networks[]                              legacy container.docker.network
//	{mode: host}             -> HOST        HOST  -> HOST
//	{mode: container/bridge} -> BRIDGE      BRIDGE -> BRIDGE
//	{mode: container, name: weft} -> weft   USER (+ ipAddress.networkName weft) -> weft
//	                                        NONE  -> NONE
func DockerNetworkMode(spec api.TaskSpec) (string, error) {
	if len(spec.Networks) > 1 {
		return "", fmt.Errorf("networks: %d networks given; a Docker task joins exactly one network", len(spec.Networks))
	}
	if len(spec.Networks) == 1 {
		n := spec.Networks[0]
		switch strings.ToLower(n.Mode) {
		case "host":
			return DockerNetHost, nil
		case "container/bridge", "bridge":
			return DockerNetBridge, nil
		case "none":
			return DockerNetNone, nil
		case "container":
			if n.Name == "" || n.Name == WeftNetworkName {
				return DockerNetWeft, nil
			}
			return "", fmt.Errorf("networks[0].name: unknown container network %q; the only container network is %q", n.Name, WeftNetworkName)
		default:
			return "", fmt.Errorf("networks[0].mode: unknown network mode %q; use host, container/bridge or container", n.Mode)
		}
	}
	legacy := ""
	if spec.Container != nil && spec.Container.Docker != nil {
		legacy = strings.ToUpper(spec.Container.Docker.Network)
	}
	switch legacy {
	case "", DockerNetHost:
		return DockerNetHost, nil
	case DockerNetBridge:
		return DockerNetBridge, nil
	case DockerNetNone:
		return DockerNetNone, nil
	case "USER":
		// The framework carries ipAddress.networkName as networks[0]; with
		// no name the one container network is meant.
		return DockerNetWeft, nil
	}
	return "", fmt.Errorf("container.docker.network: unknown network %q; use BRIDGE, HOST, NONE or USER", legacy)
}

// dockerPortMappings returns the task's port mappings: the 1.5+
// container.portMappings, else the legacy container.docker.portMappings.
func dockerPortMappings(c *api.Container) []api.PortMapping {
	if c == nil {
		return nil
	}
	if len(c.PortMappings) > 0 {
		return c.PortMappings
	}
	if c.Docker != nil {
		return c.Docker.PortMappings
	}
	return nil
}

// DockerPortBindings maps container ports to host ports for a BRIDGE task.
// hostPorts are the ports the framework allocated (spec.Ports): the j-th is
// for the j-th mapping that has a hostPort (0 = dynamic, already chosen by
// the framework). A mapping without hostPort is exposed but not published,
// unless hostPorts has one port per mapping. A fixed hostPort is used as
// given when no allocation is present. Protocol "tcp,udp" publishes both.
func DockerPortBindings(mappings []api.PortMapping, hostPorts []int) (nat.PortSet, nat.PortMap, error) {
	exposed := nat.PortSet{}
	bindings := nat.PortMap{}
	all := len(hostPorts) == len(mappings)
	j := 0
	for i, m := range mappings {
		if m.ContainerPort <= 0 || m.ContainerPort > 65535 {
			return nil, nil, fmt.Errorf("portMappings[%d].containerPort: %d is not a port; BRIDGE needs a container port in 1-65535", i, m.ContainerPort)
		}
		publish := all || m.HostPort != nil
		hp := 0
		if publish {
			switch {
			case j < len(hostPorts):
				hp = hostPorts[j]
			case m.HostPort != nil && *m.HostPort > 0:
				hp = *m.HostPort
			default:
				return nil, nil, fmt.Errorf("portMappings[%d]: no host port was allocated for containerPort %d", i, m.ContainerPort)
			}
			j++
		}
		protos, err := mappingProtocols(m.Protocol)
		if err != nil {
			return nil, nil, fmt.Errorf("portMappings[%d].protocol: %w", i, err)
		}
		for _, proto := range protos {
			p, err := nat.NewPort(proto, strconv.Itoa(m.ContainerPort))
			if err != nil {
				return nil, nil, fmt.Errorf("portMappings[%d]: %w", i, err)
			}
			exposed[p] = struct{}{}
			if publish {
				bindings[p] = append(bindings[p], nat.PortBinding{HostPort: strconv.Itoa(hp)})
			}
		}
	}
	return exposed, bindings, nil
}

func mappingProtocols(p string) ([]string, error) {
	if p == "" {
		return []string{"tcp"}, nil
	}
	var out []string
	for _, s := range strings.Split(strings.ToLower(p), ",") {
		s = strings.TrimSpace(s)
		if s != "tcp" && s != "udp" {
			return nil, fmt.Errorf("unknown protocol %q; use tcp, udp or \"tcp,udp\"", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// dockerPlan is everything needed to create one container.
type dockerPlan struct {
	Image     string
	ForcePull bool
	Network   string
	Config    *container.Config
	Host      *container.HostConfig
	MemMB     float64
	WeftPorts []weftPort // host ports forwarded to a weft container
}

// weftHostPorts lists the host ports of a weft container: the j-th mapping
// with a hostPort gets hostPorts[j] (the framework's allocation), or its
// fixed hostPort when nothing was allocated. Mappings without hostPort are
// reached at the container's address only.
func weftHostPorts(mappings []api.PortMapping, hostPorts []int) ([]weftPort, error) {
	var out []weftPort
	j := 0
	for i, m := range mappings {
		if m.HostPort == nil {
			continue
		}
		if m.ContainerPort <= 0 || m.ContainerPort > 65535 {
			return nil, fmt.Errorf("portMappings[%d].containerPort: %d is not a port; a host port needs a container port in 1-65535", i, m.ContainerPort)
		}
		hp := 0
		switch {
		case j < len(hostPorts):
			hp = hostPorts[j]
		case *m.HostPort > 0:
			hp = *m.HostPort
		default:
			return nil, fmt.Errorf("portMappings[%d]: no host port was allocated for containerPort %d", i, m.ContainerPort)
		}
		j++
		protos, err := mappingProtocols(m.Protocol)
		if err != nil {
			return nil, fmt.Errorf("portMappings[%d].protocol: %w", i, err)
		}
		for _, proto := range protos {
			out = append(out, weftPort{Proto: proto, HostPort: hp, ContainerPort: m.ContainerPort})
		}
	}
	return out, nil
}

// dockerPlanOptions are the agent's settings that shape a plan.
type dockerPlanOptions struct {
	AgentID         string
	Instance        string
	VolumeRoot      string
	AllowPrivileged bool
	CPUQuota        bool
	DNS             []string
	WeftAvailable   bool
	// LocalVolumes are the directories of the task's persistent volumes
	// by containerPath (prepared by the executor before planning).
	LocalVolumes map[string]string
}

// planDocker turns a launch into container and host configs. It is pure: the
// same launch gives the same plan, and every refusal says which field or
// parameter was wrong. See the DockerExecutor doc for the parameter subset.
func planDocker(l Launch, o dockerPlanOptions) (*dockerPlan, error) {
	c := l.Spec.Container
	if c == nil || c.Docker == nil || c.Docker.Image == "" {
		return nil, fmt.Errorf("container.docker.image: a Docker task needs an image")
	}
	d := c.Docker
	mode, err := DockerNetworkMode(l.Spec)
	if err != nil {
		return nil, err
	}
	if mode == DockerNetWeft && !o.WeftAvailable {
		return nil, fmt.Errorf("network %q is not available on this agent (the node runs without the overlay); use BRIDGE or HOST, or start the agent with the mesh on", WeftNetworkName)
	}
	p := &dockerPlan{Image: d.Image, ForcePull: d.ForcePullImage, Network: mode, MemMB: l.Spec.Resources.Mem}
	cfg := &container.Config{
		Image:  d.Image,
		Labels: map[string]string{},
	}
	hc := &container.HostConfig{}
	p.Config, p.Host = cfg, hc

	// Command: cmd runs through /bin/sh -c (as Mesos does); args are passed
	// to the image's entrypoint.
	if l.Spec.Cmd != nil && *l.Spec.Cmd != "" {
		cfg.Entrypoint = []string{"/bin/sh", "-c"}
		cfg.Cmd = []string{*l.Spec.Cmd}
	} else if len(l.Spec.Args) > 0 {
		cfg.Cmd = append([]string(nil), l.Spec.Args...)
	}

	env := map[string]string{}
	for k, v := range l.Spec.Env {
		env[k] = v
	}
	for k, v := range l.Env {
		env[k] = v
	}

	// Resources.
	if cpus := l.Spec.Resources.Cpus; cpus > 0 {
		if o.CPUQuota {
			hc.NanoCPUs = int64(math.Round(cpus * 1e9))
		} else {
			shares := int64(math.Round(cpus * 1024))
			if shares < 2 {
				shares = 2
			}
			hc.CPUShares = shares
		}
	}
	if mem := l.Spec.Resources.Mem; mem > 0 {
		if mem < dockerMinMemMB {
			return nil, fmt.Errorf("mem: %g MB is below the Docker Engine's minimum of %d MB; ask for more memory", mem, dockerMinMemMB)
		}
		hc.Memory = int64(mem * 1024 * 1024)
		hc.MemorySwap = hc.Memory // no swap unless memory-swap says so
	}
	hc.Privileged = d.Privileged
	if d.Privileged && !o.AllowPrivileged {
		return nil, fmt.Errorf("container.docker.privileged: this agent does not run privileged containers (a privileged container is root on the host); the operator can allow them with --docker-allow-privileged")
	}

	// Networking.
	switch mode {
	case DockerNetHost:
		hc.NetworkMode = "host"
	case DockerNetNone:
		hc.NetworkMode = "none"
	case DockerNetBridge:
		hc.NetworkMode = "bridge"
		exposed, bindings, err := DockerPortBindings(dockerPortMappings(c), l.Spec.Ports)
		if err != nil {
			return nil, err
		}
		cfg.ExposedPorts, hc.PortBindings = exposed, bindings
	case DockerNetWeft:
		hc.NetworkMode = "none"
		hc.DNS = append([]string(nil), o.DNS...)
		ports, err := weftHostPorts(dockerPortMappings(c), l.Spec.Ports)
		if err != nil {
			return nil, err
		}
		p.WeftPorts = ports
	}

	// Volumes. Persistent volumes (prepared by the executor, their
	// directories in o.LocalVolumes) are bound in the container's sandbox,
	// which becomes its working directory as with Mesos; a host-path volume
	// whose hostPath names one of them binds it at an absolute path too
	// (Marathon's documented way to put one at /var/lib/mysql).
	local := o.LocalVolumes
	for _, lv := range l.Spec.LocalVolumes {
		d, ok := local[lv.ContainerPath]
		if !ok {
			return nil, fmt.Errorf("persistent volume %s: not prepared on this agent", lv.PersistenceID)
		}
		hc.Binds = append(hc.Binds, d+":"+path.Join(containerSandbox, lv.ContainerPath)+":rw")
	}
	if len(l.Spec.LocalVolumes) > 0 {
		env["MESOS_SANDBOX"] = containerSandbox
		env["MESOS_DIRECTORY"] = containerSandbox
		if cfg.WorkingDir == "" {
			cfg.WorkingDir = containerSandbox
		}
	}
	for i, v := range c.Volumes {
		where := fmt.Sprintf("container.volumes[%d]", i)
		if v.Secret != "" && v.HostPath == "" {
			continue // a secret volume: kept in the app, not mounted (GET /v1/apps/problems says so)
		}
		if len(v.Persistent) > 0 && string(v.Persistent) != "null" {
			if _, ok := local[v.ContainerPath]; !ok {
				return nil, fmt.Errorf("%s.persistent: the task has no reservation for this volume (a resident app's tasks are launched by the master with one)", where)
			}
			continue
		}
		if ext, ok, err := v.ParseExternal(); err != nil {
			return nil, fmt.Errorf("%s.external: %w", where, err)
		} else if ok {
			b, err := externalBind(where, ext, v.ContainerPath, v.Mode)
			if err != nil {
				return nil, err
			}
			hc.Binds = append(hc.Binds, b)
			continue
		}
		if d, ok := local[v.HostPath]; ok && !strings.Contains(v.HostPath, "/") {
			if !strings.HasPrefix(v.ContainerPath, "/") {
				return nil, fmt.Errorf("%s.containerPath: %q must be an absolute path", where, v.ContainerPath)
			}
			b := d + ":" + path.Clean(v.ContainerPath)
			if strings.EqualFold(v.Mode, "RO") {
				b += ":ro"
			}
			hc.Binds = append(hc.Binds, b)
			continue
		}
		b, err := volumeBind(where, v.HostPath, v.ContainerPath, v.Mode, o.VolumeRoot)
		if err != nil {
			return nil, err
		}
		hc.Binds = append(hc.Binds, b)
	}

	if err := applyDockerParameters(d.Parameters, cfg, hc, env, o); err != nil {
		return nil, err
	}
	hc.Binds = append(hc.Binds, l.ExtraBinds...)
	if l.JoinNetworkOf != "" {
		// A pod's container: the first container's network namespace.
		hc.NetworkMode = container.NetworkMode("container:" + l.JoinNetworkOf)
		cfg.ExposedPorts, hc.PortBindings, hc.DNS, p.WeftPorts = nil, nil, nil, nil
		p.Network = DockerNetHost
		mode = DockerNetHost
		cfg.Labels[LabelPodInstance] = l.PodInstance
	}

	// Our labels last, so that a label parameter cannot forge them.
	cfg.Labels[LabelTaskID] = l.Task.ID
	cfg.Labels[LabelAppID] = l.Task.AppID
	cfg.Labels[LabelAgentID] = o.AgentID
	if o.Instance != "" {
		cfg.Labels[LabelInstance] = o.Instance
	}
	cfg.Labels[LabelNetwork] = mode
	if l.Sandbox != "" {
		cfg.Labels[LabelSandbox] = l.Sandbox
	}
	if l.PodPart != nil {
		raw, err := json.Marshal(l.PodPart)
		if err != nil {
			return nil, fmt.Errorf("recording the pod container: %w", err)
		}
		cfg.Labels[LabelPodPart] = string(raw)
	}
	if l.Spec.Resources.Mem > 0 {
		cfg.Labels[LabelMemMB] = strconv.FormatFloat(l.Spec.Resources.Mem, 'f', -1, 64)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg.Env = append(cfg.Env, k+"="+env[k])
	}
	return p, nil
}

// volumeBind checks one host-path volume and returns its bind string.
// hostPath must be absolute and, once cleaned and with symlinks resolved,
// inside root; with no root every host volume is refused.
func volumeBind(where, hostPath, containerPath, mode, root string) (string, error) {
	if containerPath == "" || !strings.HasPrefix(containerPath, "/") {
		return "", fmt.Errorf("%s.containerPath: %q must be an absolute path", where, containerPath)
	}
	if hostPath == "" {
		return "", fmt.Errorf("%s.hostPath: only host-path volumes are supported", where)
	}
	if root == "" {
		return "", fmt.Errorf("%s.hostPath: %s refused: this agent allows no host volumes (the operator sets a volume root with --docker-volume-root)", where, hostPath)
	}
	if !filepath.IsAbs(hostPath) {
		return "", fmt.Errorf("%s.hostPath: %q must be an absolute path under %s", where, hostPath, root)
	}
	clean := filepath.Clean(hostPath)
	if !within(root, clean) {
		return "", fmt.Errorf("%s.hostPath: %s refused: host volumes must be under %s", where, hostPath, root)
	}
	// A symlink inside the root must not lead out of it.
	if real, err := filepath.EvalSymlinks(clean); err == nil {
		realRoot, rerr := filepath.EvalSymlinks(root)
		if rerr != nil {
			realRoot = filepath.Clean(root)
		}
		if !within(realRoot, real) {
			return "", fmt.Errorf("%s.hostPath: %s refused: it resolves to %s, outside %s", where, hostPath, real, root)
		}
		clean = real
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("%s.hostPath: %w", where, err)
	}
	b := clean + ":" + filepath.Clean(containerPath)
	switch strings.ToUpper(mode) {
	case "", "RW":
		b += ":rw"
	case "RO":
		b += ":ro"
	default:
		return "", fmt.Errorf("%s.mode: unknown mode %q; use RO or RW", where, mode)
	}
	return b, nil
}

// within reports whether path is root or below it (both cleaned, absolute).
func within(root, path string) bool {
	root = filepath.Clean(root)
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../"))
}

// SupportedDockerParameters lists the docker run parameters weft honours.
// Every other parameter is refused when the task starts.
var SupportedDockerParameters = []string{
	"add-host", "cap-add", "cap-drop", "dns", "dns-option", "dns-search",
	"entrypoint", "env", "hostname", "init", "label", "log-driver", "log-opt",
	"memory-swap", "pids-limit", "read-only", "shm-size", "stop-signal",
	"tmpfs", "ulimit", "user", "volume", "workdir",
}

// refusedParameterReasons explains the refusals users are most likely to meet.
var refusedParameterReasons = map[string]string{
	"net":           "set the network with networks[] or container.docker.network",
	"network":       "set the network with networks[] or container.docker.network",
	"publish":       "use portMappings",
	"p":             "use portMappings",
	"memory":        "set mem on the app",
	"m":             "set mem on the app",
	"cpus":          "set cpus on the app",
	"cpu-shares":    "set cpus on the app",
	"cpu-quota":     "set cpus on the app",
	"privileged":    "use container.docker.privileged",
	"name":          "weft names containers after their task",
	"volumes-from":  "only host-path volumes under the volume root are allowed",
	"mount":         "use volume with a host path under the volume root",
	"device":        "devices give the container host access weft does not grant",
	"pid":           "sharing the host's namespaces is not allowed",
	"ipc":           "sharing the host's namespaces is not allowed",
	"uts":           "sharing the host's namespaces is not allowed",
	"userns":        "sharing the host's namespaces is not allowed",
	"security-opt":  "security options are not allowed",
	"cgroup-parent": "the agent places containers in cgroups itself",
}

// applyDockerParameters applies the supported subset of docker run
// parameters, refusing any other with a reason naming it.
func applyDockerParameters(params []api.Parameter, cfg *container.Config, hc *container.HostConfig, env map[string]string, o dockerPlanOptions) error {
	for i, p := range params {
		key := strings.TrimLeft(p.Key, "-")
		v := p.Value
		where := fmt.Sprintf("container.docker.parameters[%d] (%s)", i, key)
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, a...))
		}
		switch key {
		case "label", "l":
			k, val, _ := strings.Cut(v, "=")
			if k == "" {
				return bad("want key=value, got %q", v)
			}
			if strings.HasPrefix(k, "weft.") {
				return bad("labels starting with weft. are the agent's own")
			}
			cfg.Labels[k] = val
		case "env", "e":
			k, val, ok := strings.Cut(v, "=")
			if k == "" || !ok {
				return bad("want NAME=value, got %q", v)
			}
			env[k] = val
		case "user", "u":
			cfg.User = v
		case "workdir", "w":
			if !strings.HasPrefix(v, "/") {
				return bad("%q must be an absolute path", v)
			}
			cfg.WorkingDir = v
		case "hostname", "h":
			cfg.Hostname = v
		case "entrypoint":
			cfg.Entrypoint = []string{v}
		case "memory-swap":
			if v == "-1" {
				hc.MemorySwap = -1
				break
			}
			n, err := units.RAMInBytes(v)
			if err != nil {
				return bad("%v", err)
			}
			if hc.Memory > 0 && n < hc.Memory {
				return bad("%s is below the memory limit (%d MB)", v, hc.Memory>>20)
			}
			hc.MemorySwap = n
		case "shm-size":
			n, err := units.RAMInBytes(v)
			if err != nil {
				return bad("%v", err)
			}
			hc.ShmSize = n
		case "ulimit":
			u, err := units.ParseUlimit(v)
			if err != nil {
				return bad("%v", err)
			}
			hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
		case "pids-limit":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return bad("want a number, got %q", v)
			}
			hc.PidsLimit = &n
		case "cap-drop":
			hc.CapDrop = append(hc.CapDrop, v)
		case "cap-add":
			if !o.AllowPrivileged {
				return bad("adding capabilities needs an agent that allows privileged containers (--docker-allow-privileged)")
			}
			hc.CapAdd = append(hc.CapAdd, v)
		case "log-driver":
			switch v {
			case "json-file", "local", "journald":
				hc.LogConfig.Type = v
			default:
				return bad("log driver %q does not let the agent read the output into the sandbox; use json-file, local or journald", v)
			}
		case "log-opt":
			k, val, ok := strings.Cut(v, "=")
			if !ok || k == "" {
				return bad("want key=value, got %q", v)
			}
			if hc.LogConfig.Config == nil {
				hc.LogConfig.Config = map[string]string{}
			}
			hc.LogConfig.Config[k] = val
		case "add-host":
			if !strings.Contains(v, ":") {
				return bad("want host:ip, got %q", v)
			}
			hc.ExtraHosts = append(hc.ExtraHosts, v)
		case "dns":
			hc.DNS = append(hc.DNS, v)
		case "dns-search":
			hc.DNSSearch = append(hc.DNSSearch, v)
		case "dns-option", "dns-opt":
			hc.DNSOptions = append(hc.DNSOptions, v)
		case "init":
			b, err := parseBoolParam(v)
			if err != nil {
				return bad("%v", err)
			}
			hc.Init = &b
		case "read-only":
			b, err := parseBoolParam(v)
			if err != nil {
				return bad("%v", err)
			}
			hc.ReadonlyRootfs = b
		case "stop-signal":
			cfg.StopSignal = v
		case "tmpfs":
			path, opts, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(path, "/") {
				return bad("%q must start with an absolute path", v)
			}
			if hc.Tmpfs == nil {
				hc.Tmpfs = map[string]string{}
			}
			hc.Tmpfs[path] = opts
		case "volume", "v":
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				return bad("want /host/path:/container/path[:ro], got %q", v)
			}
			mode := ""
			if len(parts) == 3 {
				mode = parts[2]
			}
			b, err := volumeBind(where, parts[0], parts[1], mode, o.VolumeRoot)
			if err != nil {
				return err
			}
			hc.Binds = append(hc.Binds, b)
		default:
			why := refusedParameterReasons[key]
			if why == "" {
				why = "supported parameters: " + strings.Join(SupportedDockerParameters, ", ")
			}
			return fmt.Errorf("%s: parameter %q is not supported by weft: %s", where, key, why)
		}
	}
	return nil
}

func parseBoolParam(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("want true or false, got %q", v)
	}
	return b, nil
}

// DockerCheckAddr is where a network health check (HTTP, TCP) of a Docker
// task connects, in every network mode, as Marathon resolves it:
//
//   - HOST and BRIDGE: hostIP and the task's host port (spec.Ports) at
//     portIndex, or the fixed port;
//   - weft (a container network) without host ports: the container's own
//     address (ips) and the containerPort of the port mapping at portIndex,
//     or the fixed port.
//
// A nil portIndex with no port means index 0.
func DockerCheckAddr(spec api.TaskSpec, ips []api.IPAddress, hostIP string, portIndex, port *int) (string, error) {
	mode, err := DockerNetworkMode(spec)
	if err != nil {
		return "", err
	}
	idx := 0
	if portIndex != nil {
		idx = *portIndex
	}
	if mode == DockerNetWeft && len(spec.Ports) == 0 {
		if len(ips) == 0 {
			return "", fmt.Errorf("the container has no address on the %q network yet", WeftNetworkName)
		}
		host := ips[0].IPAddress
		if port != nil && *port > 0 && portIndex == nil {
			return net.JoinHostPort(host, strconv.Itoa(*port)), nil
		}
		mappings := dockerPortMappings(spec.Container)
		if idx < 0 || idx >= len(mappings) {
			return "", fmt.Errorf("portIndex %d has no port mapping (the app has %d)", idx, len(mappings))
		}
		return net.JoinHostPort(host, strconv.Itoa(mappings[idx].ContainerPort)), nil
	}
	if hostIP == "" || hostIP == "0.0.0.0" || hostIP == "::" {
		hostIP = "127.0.0.1"
	}
	if port != nil && *port > 0 && portIndex == nil {
		return net.JoinHostPort(hostIP, strconv.Itoa(*port)), nil
	}
	if idx < 0 || idx >= len(spec.Ports) {
		return "", fmt.Errorf("portIndex %d has no host port (the task has %d)", idx, len(spec.Ports))
	}
	return net.JoinHostPort(hostIP, strconv.Itoa(spec.Ports[idx])), nil
}

// externalBind is the bind of an external volume: a Docker named volume of
// the local driver, which Docker creates when it is missing. The master
// refuses other providers and drivers at submit; the agent checks again.
func externalBind(where string, e api.ExternalVolume, containerPath, mode string) (string, error) {
	if e.Provider != "dvdi" {
		return "", fmt.Errorf("%s.external.provider: %q refused: only dvdi with the local driver", where, e.Provider)
	}
	if d := e.Options["dvdi/driver"]; d != "" && d != "local" {
		return "", fmt.Errorf("%s.external.options: dvdi/driver %q refused: only the Docker local volume driver", where, d)
	}
	if e.Name == "" || strings.ContainsAny(e.Name, "/:\x00") {
		return "", fmt.Errorf("%s.external.name: %q is not a Docker volume name", where, e.Name)
	}
	if !strings.HasPrefix(containerPath, "/") {
		return "", fmt.Errorf("%s.containerPath: %q must be an absolute path", where, containerPath)
	}
	b := e.Name + ":" + path.Clean(containerPath)
	if strings.EqualFold(mode, "RO") {
		b += ":ro"
	} else {
		b += ":rw"
	}
	return b, nil
}
