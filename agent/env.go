package agent

import (
	"fmt"
	"os"
	"sort"
	"strings"

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
	// Secret values, resolved by the master for this agent alone.
	for k := range asg.Spec.SecretEnv {
		if v, ok := asg.Secrets[k]; ok {
			env[k] = v
		}
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

// missingSecrets is an error naming the secret env variables of asg the
// master sent no value for (the secret was deleted, or the master has no
// key); the task must not start without them. It never names a value.
func missingSecrets(asg api.Assignment) error {
	var miss []string
	for k, name := range asg.Spec.SecretEnv {
		if _, ok := asg.Secrets[k]; !ok {
			miss = append(miss, k+" (secret "+name+")")
		}
	}
	if len(miss) == 0 {
		return nil
	}
	sort.Strings(miss)
	return fmt.Errorf("the master sent no value for %s: does the secret exist (weft secret list), and do the masters have the join token?", strings.Join(miss, ", "))
}
