package marathon

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// envKey turns a label or port name into the part of an environment
// variable name Marathon derives from it: upper case, anything but letters,
// digits and '_' replaced by '_'.
func envKey(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// taskEnv builds a task's environment the way Marathon does
// (docs/task-environment-vars.md): the app's env, then PORT0..N, PORT,
// PORTS, PORT_<name>, PORT_<containerPort>, MARATHON_APP_*, MESOS_TASK_ID.
// Marathon's variables win over the app's. The agent adds HOST,
// MESOS_SANDBOX and the MESOS_AGENT facts.
func taskEnv(app *api.App, taskID string, hostPorts []int) map[string]string {
	env := map[string]string{}
	for k, v := range app.Env {
		if v.Secret == "" {
			env[k] = v.Value
		}
	}
	if len(hostPorts) > 0 {
		ps := make([]string, len(hostPorts))
		for i, p := range hostPorts {
			s := strconv.Itoa(p)
			ps[i] = s
			env["PORT"+strconv.Itoa(i)] = s
		}
		env["PORT"] = ps[0]
		env["PORTS"] = strings.Join(ps, ",")
		// Names and container ports, in the order host ports were requested.
		i := 0
		if app.Container != nil && len(app.Container.PortMappings) > 0 {
			for _, pm := range app.Container.PortMappings {
				if pm.HostPort == nil {
					continue
				}
				if i < len(hostPorts) {
					if pm.Name != "" {
						env["PORT_"+envKey(pm.Name)] = ps[i]
					}
					if pm.ContainerPort != 0 {
						env["PORT_"+strconv.Itoa(pm.ContainerPort)] = ps[i]
					}
				}
				i++
			}
		} else {
			for _, pd := range app.PortDefinitions {
				if i < len(hostPorts) && pd.Name != "" {
					env["PORT_"+envKey(pd.Name)] = ps[i]
				}
				i++
			}
		}
	}
	env["MARATHON_APP_ID"] = app.ID
	env["MARATHON_APP_VERSION"] = app.Version
	if app.Container != nil && app.Container.Docker != nil && app.Container.Docker.Image != "" {
		env["MARATHON_APP_DOCKER_IMAGE"] = app.Container.Docker.Image
	}
	env["MARATHON_APP_RESOURCE_CPUS"] = fmtFloat(app.Cpus)
	env["MARATHON_APP_RESOURCE_MEM"] = fmtFloat(app.Mem)
	env["MARATHON_APP_RESOURCE_DISK"] = fmtFloat(app.Disk)
	env["MARATHON_APP_RESOURCE_GPUS"] = strconv.Itoa(app.Gpus)
	var labels []string
	for _, k := range sortedKeys(app.Labels) {
		v := app.Labels[k]
		if len(v) > 512 {
			continue // Marathon leaves out labels too large for an environment
		}
		key := envKey(k)
		labels = append(labels, key)
		env["MARATHON_APP_LABEL_"+key] = v
	}
	sort.Strings(labels)
	env["MARATHON_APP_LABELS"] = strings.Join(labels, " ")
	env["MESOS_TASK_ID"] = taskID
	return env
}

// taskSpec is how an agent runs a task of app.
func taskSpec(app *api.App, taskID string, hostPorts []int, defaultGrace time.Duration) api.TaskSpec {
	grace := defaultGrace.Seconds()
	if app.TaskKillGracePeriodSeconds != nil {
		grace = *app.TaskKillGracePeriodSeconds
	}
	spec := api.TaskSpec{
		Env:                    taskEnv(app, taskID, hostPorts),
		Resources:              api.Resources{Cpus: app.Cpus, Mem: app.Mem, Disk: app.Disk, Gpus: app.Gpus},
		Ports:                  hostPorts,
		Container:              app.Container,
		HealthChecks:           app.HealthChecks,
		ReadinessChecks:        app.ReadinessChecks,
		KillGracePeriodSeconds: grace,
		Fetch:                  app.Fetch,
	}
	if len(app.Networks) > 0 && !(len(app.Networks) == 1 && app.Networks[0].Mode == "host") {
		spec.Networks = make([]api.Network, len(app.Networks))
		for i, n := range app.Networks {
			if n.Mode == "container" {
				n.Name = WeftNetwork // every container network name runs on weft's overlay
			}
			spec.Networks[i] = n
		}
	}
	if app.Cmd != nil && *app.Cmd != "" {
		c := *app.Cmd
		spec.Cmd = &c
	} else if len(app.Args) > 0 {
		spec.Args = append([]string(nil), app.Args...)
	}
	if app.User != nil {
		spec.User = *app.User
	}
	for k, v := range app.Env {
		if v.Secret == "" {
			continue
		}
		if s, ok := app.Secrets[v.Secret]; ok && s.Source != "" {
			if spec.SecretEnv == nil {
				spec.SecretEnv = map[string]string{}
			}
			spec.SecretEnv[k] = storeName(s.Source)
		}
	}
	if app.Pod != nil {
		spec.Pod = podTaskSpec(app, taskID, hostPorts, spec.Env)
	}
	for _, p := range hostPorts {
		spec.Resources.Ports = append(spec.Resources.Ports, api.PortRange{Begin: p, End: p})
	}
	return spec
}
