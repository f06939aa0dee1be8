package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// MasterClient is what the agent needs of the master. *api.Client
// satisfies it. If the client also implements
// PostStatusAnswer(ctx, agentID, updates) (*api.StatusAnswer, error), the
// agent uses it to learn which tasks the master does not know, and kills
// them.
type MasterClient interface {
	// Assignments blocks until the master's index for this agent is above
	// after (or about wait has passed) and returns every task assigned here.
	Assignments(ctx context.Context, agentID string, after uint64, wait time.Duration) (*api.Assignments, error)
	// PostStatus reports task status updates.
	PostStatus(ctx context.Context, agentID string, updates []api.TaskStatus) error
}

// statusAnswerer is the optional richer form of PostStatus.
type statusAnswerer interface {
	PostStatusAnswer(ctx context.Context, agentID string, updates []api.TaskStatus) (*api.StatusAnswer, error)
}

// Config configures an agent.
type Config struct {
	// ID is the agent id: tasks carry it as slaveId. Required.
	ID string
	// Name is the node's name (hostname), shown by the agent API.
	Name string
	// Site is the node's site, shown by the agent API.
	Site string
	// Master is the master API client. Required.
	Master MasterClient
	// DataDir holds the sandboxes (DataDir/sandboxes/<taskId>) and the
	// process executor's records (DataDir/process). Required.
	DataDir string
	// HostIP is the address tasks' host ports are reached at: the HOST
	// environment variable and the target of health checks.
	HostIP string
	// AgentEndpoint is the host:port of this agent's API, given to tasks as
	// MESOS_AGENT_ENDPOINT. Empty leaves the variable out.
	AgentEndpoint string
	// Executors run the tasks; the first whose Handles accepts a spec runs
	// it. Nil means one ProcessExecutor with its records in DataDir/process.
	Executors []Executor
	// StopTasksOnExit stops every task when Run returns (weft up's
	// playground behaviour). When false, tasks outlive the agent and a
	// restarted agent re-adopts them (Executor.Recover).
	StopTasksOnExit bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger

	// AssignmentsWait is how long one blocking query for assignments waits
	// at the master.
	AssignmentsWait time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff after a
	// failed call to the master (assignments and status alike).
	RetryMin, RetryMax time.Duration
	// StatusBatch is the most status updates posted in one call.
	StatusBatch int
	// StartingLinger is how long a post of TASK_STARTING updates alone
	// waits for more (default DefaultStartingLinger; negative: not at
	// all). A process task is RUNNING a few ms after STARTING: both then
	// go in one post, which the master applies in one commit, instead of
	// the launch waiting for two.
	StartingLinger time.Duration
	// DefaultKillGrace is the SIGTERM-to-SIGKILL grace of a task whose spec
	// gives none (Mesos: 3 s).
	DefaultKillGrace time.Duration
	// StartTimeout bounds fetching and starting one task (image pulls
	// included).
	StartTimeout time.Duration
	// FetchTimeout bounds downloading one http(s) URI.
	FetchTimeout time.Duration
	// SandboxKeep is how long the sandbox of a finished task is kept at
	// most (Mesos's --gc_delay), and SandboxKeepCount how many finished
	// sandboxes are kept at most.
	SandboxKeep      time.Duration
	SandboxKeepCount int
	// GCDiskHeadroom is the fraction of the sandboxes' file system kept
	// free (Mesos's --gc_disk_headroom): a finished sandbox is kept
	// SandboxKeep * max(0, 1 - GCDiskHeadroom - disk use), so a filling
	// disk shortens the wait down to none. 0 keeps no headroom.
	GCDiskHeadroom float64
	// DiskUsage reports the used fraction of the file system holding dir;
	// nil reads it with statfs. Tests inject it.
	DiskUsage func(dir string) (float64, error)
	// GCInterval is how often finished sandboxes are collected.
	GCInterval time.Duration
	// ProbeInterval is how often executors' availability is probed.
	ProbeInterval time.Duration
	// OnCapabilities, if set, is called (from the agent's goroutine) when
	// the capabilities or problems change, e.g. to update serf tags.
	OnCapabilities func(caps, problems []string)
	// CheckSecond is the length of one "second" in health and readiness
	// check definitions (intervalSeconds, timeoutSeconds, ...). Always
	// time.Second except in tests, which shrink it.
	CheckSecond time.Duration
	// FlushTimeout bounds posting the final updates when Run returns with
	// StopTasksOnExit.
	FlushTimeout time.Duration
	// StderrTail is how many bytes of stderr a TASK_FAILED message carries.
	StderrTail int
}

// Named defaults.
const (
	DefaultAssignmentsWait  = 30 * time.Second
	DefaultRetryMin         = 200 * time.Millisecond
	DefaultRetryMax         = 5 * time.Second
	DefaultStatusBatch      = 256
	DefaultStartingLinger   = 20 * time.Millisecond
	DefaultKillGrace        = 3 * time.Second
	DefaultStartTimeout     = 10 * time.Minute
	DefaultFetchTimeout     = 5 * time.Minute
	DefaultSandboxKeep      = 7 * 24 * time.Hour // Mesos's --gc_delay
	DefaultGCDiskHeadroom   = 0.1                // Mesos's --gc_disk_headroom
	DefaultSandboxKeepCount = 100
	DefaultGCInterval       = time.Minute
	DefaultProbeInterval    = 30 * time.Second
	DefaultStderrTail       = 1024
	DefaultFlushTimeout     = 2 * time.Second
)

// DefaultConfig returns a config with every timer at its default; the
// caller fills ID, Master, DataDir and HostIP.
func DefaultConfig() Config {
	return Config{
		HostIP:           "127.0.0.1",
		AssignmentsWait:  DefaultAssignmentsWait,
		RetryMin:         DefaultRetryMin,
		RetryMax:         DefaultRetryMax,
		StatusBatch:      DefaultStatusBatch,
		StartingLinger:   DefaultStartingLinger,
		DefaultKillGrace: DefaultKillGrace,
		StartTimeout:     DefaultStartTimeout,
		FetchTimeout:     DefaultFetchTimeout,
		SandboxKeep:      DefaultSandboxKeep,
		SandboxKeepCount: DefaultSandboxKeepCount,
		GCDiskHeadroom:   DefaultGCDiskHeadroom,
		GCInterval:       DefaultGCInterval,
		ProbeInterval:    DefaultProbeInterval,
		CheckSecond:      time.Second,
		StderrTail:       DefaultStderrTail,
		FlushTimeout:     DefaultFlushTimeout,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HostIP == "" {
		c.HostIP = d.HostIP
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setDur(&c.AssignmentsWait, d.AssignmentsWait)
	setDur(&c.RetryMin, d.RetryMin)
	setDur(&c.RetryMax, d.RetryMax)
	if c.StartingLinger == 0 {
		c.StartingLinger = d.StartingLinger
	}
	setDur(&c.DefaultKillGrace, d.DefaultKillGrace)
	setDur(&c.StartTimeout, d.StartTimeout)
	setDur(&c.FetchTimeout, d.FetchTimeout)
	setDur(&c.SandboxKeep, d.SandboxKeep)
	setDur(&c.GCInterval, d.GCInterval)
	setDur(&c.ProbeInterval, d.ProbeInterval)
	setDur(&c.CheckSecond, d.CheckSecond)
	setDur(&c.FlushTimeout, d.FlushTimeout)
	if c.StatusBatch <= 0 {
		c.StatusBatch = d.StatusBatch
	}
	if c.SandboxKeepCount <= 0 {
		c.SandboxKeepCount = d.SandboxKeepCount
	}
	if c.StderrTail <= 0 {
		c.StderrTail = d.StderrTail
	}
	return c
}
