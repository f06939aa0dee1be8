package agent

import (
	"os"
	"sort"

	"github.com/weftnet/weft/sched/api"
)

// defaultPath is the PATH a task gets when neither it nor the agent has one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// inherited are the agent's own variables a task inherits unless it sets
// them itself.
var inherited = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// taskEnv is a task's complete environment: a few of the agent's
// variables, the framework's (app env, PORT*, MARATHON_APP_*,
// MESOS_TASK_ID), and the agent's own: HOST, MESOS_SANDBOX,
// MESOS_DIRECTORY and MESOS_AGENT_ENDPOINT.
func (a *Agent) taskEnv(asg api.Assignment, sandbox string) map[string]string {
	return buildEnv(asg, sandbox, a.cfg.HostIP, a.cfg.AgentEndpoint, os.Getenv)
}

func buildEnv(asg api.Assignment, sandbox, hostIP, endpoint string, getenv func(string) string) map[string]string {
	env := map[string]string{}
	for _, k := range inherited {
		if v := getenv(k); v != "" {
			env[k] = v
		}
	}
	if env["PATH"] == "" {
		env["PATH"] = defaultPath
	}
	for k, v := range asg.Spec.Env {
		env[k] = v
	}
	env["HOST"] = hostIP
	env["MESOS_SANDBOX"] = sandbox
	env["MESOS_DIRECTORY"] = sandbox
	if endpoint != "" {
		env["MESOS_AGENT_ENDPOINT"] = endpoint
	}
	if env["MESOS_TASK_ID"] == "" {
		env["MESOS_TASK_ID"] = asg.Task.ID
	}
	return env
}

func sortTasks(ts []TaskInfo) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].ID < ts[j].ID })
}
