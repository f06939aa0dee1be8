package api

import "encoding/json"

// MarshalJSON writes the job as Chronos's JobSerializer does: a scheduled
// job always carries scheduleTimeZone ("" when none was given).
func (j Job) MarshalJSON() ([]byte, error) {
	type plain Job
	if j.Schedule == "" || j.ScheduleTimeZone != "" {
		return json.Marshal(plain(j))
	}
	return json.Marshal(struct {
		plain
		ScheduleTimeZone string `json:"scheduleTimeZone"`
	}{plain(j), ""})
}

// Job is a Chronos job (Jobs.scala, JobDeserializer.scala).
type Job struct {
	Name                   string        `json:"name"`
	Command                string        `json:"command"`
	Shell                  bool          `json:"shell"`
	Arguments              []string      `json:"arguments"`
	Schedule               string        `json:"schedule,omitempty"`
	ScheduleTimeZone       string        `json:"scheduleTimeZone,omitempty"`
	Parents                []string      `json:"parents,omitempty"`
	Epsilon                string        `json:"epsilon"`
	Retries                int           `json:"retries"`
	Concurrent             bool          `json:"concurrent"`
	Cpus                   float64       `json:"cpus"`
	Mem                    float64       `json:"mem"`
	Disk                   float64       `json:"disk"`
	Container              *JobContainer `json:"container,omitempty"`
	EnvironmentVariables   []NameValue   `json:"environmentVariables"`
	Constraints            [][]string    `json:"constraints"`
	Owner                  string        `json:"owner"`
	OwnerName              string        `json:"ownerName"`
	Description            string        `json:"description"`
	Disabled               bool          `json:"disabled"`
	SoftError              bool          `json:"softError"`
	HighPriority           bool          `json:"highPriority"`
	DataProcessingJobType  bool          `json:"dataProcessingJobType"`
	Async                  bool          `json:"async"`
	MaxCompletionTime      int64         `json:"maxCompletionTime"`
	Executor               string        `json:"executor"`
	ExecutorFlags          string        `json:"executorFlags"`
	TaskInfoData           string        `json:"taskInfoData"`
	RunAsUser              string        `json:"runAsUser"`
	Fetch                  []Fetch       `json:"fetch"`
	Uris                   []string      `json:"uris"`
	SuccessCount           int64         `json:"successCount"`
	ErrorCount             int64         `json:"errorCount"`
	LastSuccess            string        `json:"lastSuccess"`
	LastError              string        `json:"lastError"`
	ErrorsSinceLastSuccess int64         `json:"errorsSinceLastSuccess"`
}

// NameValue is a Chronos environment variable or container parameter.
type NameValue struct {
	Name  string `json:"name,omitempty"`
	Key   string `json:"key,omitempty"`
	Value string `json:"value"`
}

// JobContainer is a Chronos job's container.
type JobContainer struct {
	Type  string `json:"type"`
	Image string `json:"image"`
	// network, volumes and parameters are always written, as Chronos's
	// JobSerializer writes them (HOST, [] and [] when a job gives none).
	Network        string        `json:"network"`
	Volumes        []Volume      `json:"volumes"`
	Parameters     []NameValue   `json:"parameters"`
	ForcePullImage bool          `json:"forcePullImage"`
	PortMappings   []PortMapping `json:"portMappings,omitempty"`
	// NetworkInfos (Chronos 3: [{name, protocol, labels}]) are kept; a
	// job's container runs on weft's network or the host's.
	NetworkInfos json.RawMessage `json:"networkInfos,omitempty"`
}

// JobRun is one entry of a job's run ledger.
type JobRun struct {
	ID          string   `json:"id"`
	Job         string   `json:"job"`
	ScheduledAt string   `json:"scheduledAt,omitempty"`
	StartedAt   string   `json:"startedAt,omitempty"`
	FinishedAt  string   `json:"finishedAt,omitempty"`
	State       string   `json:"state"` // queued, running, succeeded, failed, skipped, retrying
	Attempt     int      `json:"attempt"`
	TaskID      string   `json:"taskId,omitempty"`
	Arguments   []string `json:"arguments,omitempty"`
	Message     string   `json:"message,omitempty"`
	Trigger     string   `json:"trigger,omitempty"` // schedule, dependency, manual
	// RetryAt is when a retrying run's next attempt may start.
	RetryAt string `json:"retryAt,omitempty"`
	// Lost counts attempts lost with their agent (TASK_LOST, TASK_GONE,
	// TASK_DROPPED, unreachable): retried at once, not counted as retries.
	Lost int `json:"lost,omitempty"`
}
