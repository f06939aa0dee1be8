package agent

import (
	"context"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// Executor runs tasks of one kind: plain processes, or Docker containers.
// The agent picks the first executor whose Handles returns true.
type Executor interface {
	// Name is "process" or "docker".
	Name() string
	// Handles reports whether this executor runs spec.
	Handles(spec api.TaskSpec) bool
	// Start launches the task and returns once it is started (or failed to
	// start: the error says why, in words a user can act on).
	Start(ctx context.Context, l Launch) (Handle, error)
	// Recover returns handles for tasks still running from before the agent
	// restarted, keyed by task id. Executors that cannot re-adopt return none.
	Recover(ctx context.Context) (map[string]Handle, error)
	// Cleanup removes leftovers (containers, files) of tasks not in keep.
	Cleanup(ctx context.Context, keep map[string]bool) error
}

// Launch is one task to start.
type Launch struct {
	Task    api.Task
	Spec    api.TaskSpec
	Sandbox string            // the task's sandbox dir; stdout and stderr files go here
	Env     map[string]string // the complete environment (Marathon's variables included)
	HostIP  string            // the address the task's host ports are reached at
	// VolumesDir holds the agent's persistent volumes (Spec.LocalVolumes).
	VolumesDir string
	// For the containers of a pod instance (PodExecutor): binds beyond the
	// spec's volumes (ephemeral pod volumes), the Docker container whose
	// network namespace to join, and the instance a joined container
	// belongs to (LabelPodInstance).
	ExtraBinds    []string
	JoinNetworkOf string
	PodInstance   string
	// PodPart is set on every container of a pod instance, the first one
	// included: which container of the instance it is, recorded with the
	// container so that a restarted agent reassembles the whole instance.
	PodPart *PodPart
}

// Handle is a started task.
type Handle interface {
	// Done is closed when the task has exited; Exit then tells how.
	Done() <-chan struct{}
	Exit() Exit
	// Stop asks the task to stop (SIGTERM or docker stop), and kills it
	// after grace. It returns once the task has exited or ctx ends.
	Stop(ctx context.Context, grace time.Duration) error
	// IPAddresses are the task's own addresses (container networks), if any.
	IPAddresses() []api.IPAddress
}

// Exit tells how a task ended.
type Exit struct {
	Code    int    // exit status; -1 when killed by a signal
	Signal  string // e.g. "killed", "terminated"
	OOM     bool   // killed for exceeding its memory limit
	Message string // a one-line account for the status update
}

// Optional interfaces an Executor or a Handle may implement. The agent
// checks for them with a type assertion; none is required.

// Prober is implemented by an executor whose backend can be down (the
// Docker daemon). Available returns nil when the executor can run tasks
// now, else an error saying why; the agent then leaves the executor's name
// out of its capabilities and reports "<name>: <reason>" as a problem.
type Prober interface {
	Available(ctx context.Context) error
}

// Pider is implemented by a Handle that knows the task's main process id
// (shown by the agent API's GET /v1/tasks).
type Pider interface {
	Pid() int
}

// CommandRunner is implemented by a Handle that can run a COMMAND health
// check inside the task's environment (a container exec). Handles without
// it have their command checks run by the agent as /bin/sh -c in the
// task's sandbox with the task's environment. exitCode is the command's
// exit status; err is set only when the command could not be run at all.
type CommandRunner interface {
	RunCommand(ctx context.Context, cmd string) (exitCode int, output string, err error)
}
