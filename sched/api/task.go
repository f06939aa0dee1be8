package api

import (
	"encoding/json"
	"sort"
	"time"
)

// Mesos task states, as Marathon reports them.
const (
	TaskStaging     = "TASK_STAGING"
	TaskStarting    = "TASK_STARTING"
	TaskRunning     = "TASK_RUNNING"
	TaskKilling     = "TASK_KILLING"
	TaskFinished    = "TASK_FINISHED"
	TaskFailed      = "TASK_FAILED"
	TaskKilled      = "TASK_KILLED"
	TaskLost        = "TASK_LOST"
	TaskError       = "TASK_ERROR"
	TaskUnreachable = "TASK_UNREACHABLE"
	TaskGone        = "TASK_GONE"
	TaskDropped     = "TASK_DROPPED"
	TaskUnknown     = "TASK_UNKNOWN"
)

// Terminal reports whether a task in this state will never run again.
func Terminal(state string) bool {
	switch state {
	case TaskFinished, TaskFailed, TaskKilled, TaskLost, TaskError, TaskGone, TaskDropped:
		return true
	}
	return false
}

// Task is a Marathon task (task.raml), as every API and the watch return it.
type Task struct {
	rev                uint64              // see Rev
	ID                 string              `json:"id"`
	AppID              string              `json:"appId"`
	Host               string              `json:"host"`
	SlaveID            string              `json:"slaveId"`
	State              string              `json:"state"`
	StagedAt           string              `json:"stagedAt"`
	StartedAt          string              `json:"startedAt,omitempty"`
	Version            string              `json:"version"`
	Ports              []int               `json:"ports"`
	ServicePorts       []int               `json:"servicePorts"`
	IPAddresses        []IPAddress         `json:"ipAddresses"`
	HealthCheckResults []HealthCheckResult `json:"healthCheckResults"`
	Region             string              `json:"region,omitempty"`
	Zone               string              `json:"zone,omitempty"`
	Role               string              `json:"role,omitempty"`
	// weft's additions; Marathon clients ignore them.
	Framework  string `json:"framework,omitempty"` // "marathon" or "chronos"
	Name       string `json:"name,omitempty"`      // chronos: the job name
	Site       string `json:"site,omitempty"`      // the agent's site
	Message    string `json:"message,omitempty"`   // last status message
	ExitStatus *int   `json:"exitStatus,omitempty"`
	Ready      *bool  `json:"ready,omitempty"` // readiness, when the app has readiness checks
	// LocalVolumes are a resident task's persistent volumes (Marathon's
	// localVolumes).
	LocalVolumes []LocalVolume `json:"localVolumes,omitempty"`
}

// IPAddress is an entry of task.ipAddresses.
type IPAddress struct {
	IPAddress string `json:"ipAddress"`
	Protocol  string `json:"protocol"` // IPv4 or IPv6
}

// HealthCheckResult is one health check's state for one task.
type HealthCheckResult struct {
	Alive               bool   `json:"alive"`
	ConsecutiveFailures int    `json:"consecutiveFailures"`
	FirstSuccess        string `json:"firstSuccess,omitempty"`
	LastSuccess         string `json:"lastSuccess,omitempty"`
	LastFailure         string `json:"lastFailure,omitempty"`
	LastFailureCause    string `json:"lastFailureCause,omitempty"`
	TaskID              string `json:"taskId,omitempty"`
	InstanceID          string `json:"instanceId,omitempty"`
}

// MarshalJSON writes Marathon 1.4+'s health result (HealthWrites): always
// alive, consecutiveFailures, firstSuccess, lastFailure, lastSuccess,
// lastFailureCause (null when unknown) and instanceId; never taskId, which
// Marathon dropped in 1.4 (the instance id is the task id's instance).
func (r HealthCheckResult) MarshalJSON() ([]byte, error) {
	orNull := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	inst := r.InstanceID
	if inst == "" {
		inst = r.TaskID
	}
	return json.Marshal(struct {
		Alive               bool    `json:"alive"`
		ConsecutiveFailures int     `json:"consecutiveFailures"`
		FirstSuccess        *string `json:"firstSuccess"`
		LastFailure         *string `json:"lastFailure"`
		LastSuccess         *string `json:"lastSuccess"`
		LastFailureCause    *string `json:"lastFailureCause"`
		InstanceID          string  `json:"instanceId"`
	}{r.Alive, r.ConsecutiveFailures, orNull(r.FirstSuccess), orNull(r.LastFailure), orNull(r.LastSuccess), orNull(r.LastFailureCause), inst})
}

// Healthy reports whether every health check result of the task is alive.
// A task with no results yet is neither healthy nor unhealthy: ok is false.
func (t *Task) Healthy() (healthy, ok bool) {
	if len(t.HealthCheckResults) == 0 {
		return false, false
	}
	for _, r := range t.HealthCheckResults {
		if !r.Alive {
			return false, true
		}
	}
	return true, true
}

// TaskSpec is what an agent needs to run a task. The framework builds it at
// launch; it is stored with the task and handed to the agent.
type TaskSpec struct {
	Cmd  *string           `json:"cmd,omitempty"` // run via /bin/sh -c
	Args []string          `json:"args,omitempty"`
	User string            `json:"user,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	// SecretEnv names the env variables whose values come from the secret
	// store: env name → secret name. Values are never stored with the task;
	// the master resolves them for the task's agent alone (Assignment.Secrets).
	SecretEnv              map[string]string `json:"secretEnv,omitempty"`
	Resources              Resources         `json:"resources"`
	Ports                  []int             `json:"ports,omitempty"` // host ports allocated to the task
	Container              *Container        `json:"container,omitempty"`
	Networks               []Network         `json:"networks,omitempty"`
	HealthChecks           []HealthCheck     `json:"healthChecks,omitempty"`
	ReadinessChecks        []ReadinessCheck  `json:"readinessChecks,omitempty"`
	KillGracePeriodSeconds float64           `json:"killGracePeriodSeconds,omitempty"`
	Fetch                  []Fetch           `json:"fetch,omitempty"`
	MaxCompletionSeconds   float64           `json:"maxCompletionSeconds,omitempty"` // chronos
	// LocalVolumes are the persistent volumes of a resident task: the agent
	// creates each one once, owned by the task's user, and keeps it across
	// relaunches.
	LocalVolumes []LocalVolumeSpec `json:"localVolumes,omitempty"`
	// Pod is set on a pod instance: its containers, run as a unit.
	Pod *PodTaskSpec `json:"pod,omitempty"`
}

// Goal is what the master wants of a task.
const (
	GoalRun  = "run"
	GoalKill = "kill"
)

// Assignment is one task as its agent sees it: the task, how to run it, and
// whether it should run or be killed.
type Assignment struct {
	Task Task     `json:"task"`
	Spec TaskSpec `json:"spec"`
	Goal string   `json:"goal"`
	// Secrets are the values of Spec.SecretEnv (env name → value); only
	// the task's agent receives them, and it must never log them.
	Secrets map[string]string `json:"secrets,omitempty"`
}

// Assignments answers an agent's blocking query for its tasks. Asked with
// delta=true, the answer after the first is a delta (Delta): Tasks holds
// only the assignments added or changed since the index the agent sent,
// and Removed names the tasks no longer assigned to it. Otherwise (and
// whenever the master cannot tell what changed: index 0, an index from
// another store or older than it remembers) Tasks is the whole list.
type Assignments struct {
	Index   uint64       `json:"index"`
	Delta   bool         `json:"delta,omitempty"`
	Removed []string     `json:"removed,omitempty"`
	Tasks   []Assignment `json:"tasks"`
}

// AssignmentMirror is an agent's copy of its assignments, kept by applying
// the answers of the delta query (a whole list replaces it).
type AssignmentMirror struct {
	index uint64
	tasks map[string]Assignment
}

// Index is the index to ask from next (0 before the first answer).
func (m *AssignmentMirror) Index() uint64 { return m.index }

// Apply brings the mirror to as.Index.
func (m *AssignmentMirror) Apply(as *Assignments) {
	if !as.Delta || m.tasks == nil {
		m.tasks = make(map[string]Assignment, len(as.Tasks))
	}
	m.index = as.Index
	for _, id := range as.Removed {
		delete(m.tasks, id)
	}
	for _, a := range as.Tasks {
		m.tasks[a.Task.ID] = a
	}
}

// Assignments returns the whole list the mirror holds, sorted by task id,
// as a whole (non-delta) answer at the mirror's index.
func (m *AssignmentMirror) Assignments() *Assignments {
	out := &Assignments{Index: m.index, Tasks: make([]Assignment, 0, len(m.tasks))}
	for _, a := range m.tasks {
		out.Tasks = append(out.Tasks, a)
	}
	sort.Slice(out.Tasks, func(i, j int) bool { return out.Tasks[i].Task.ID < out.Tasks[j].Task.ID })
	return out
}

// TaskStatus is a status update an agent posts for one task.
type TaskStatus struct {
	TaskID             string              `json:"taskId"`
	State              string              `json:"state"`
	Message            string              `json:"message,omitempty"`
	ExitStatus         *int                `json:"exitStatus,omitempty"`
	Reason             string              `json:"reason,omitempty"` // e.g. REASON_CONTAINER_LIMITATION_MEMORY
	IPAddresses        []IPAddress         `json:"ipAddresses,omitempty"`
	HealthCheckResults []HealthCheckResult `json:"healthCheckResults,omitempty"`
	Ready              *bool               `json:"ready,omitempty"`
	Timestamp          time.Time           `json:"timestamp"`
}

// Timestamp formats t the way Marathon does (ISO 8601, UTC, milliseconds).
func Timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
