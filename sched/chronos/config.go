package chronos

import (
	"log/slog"
	"time"
)

// Config configures the chronos framework. Start from DefaultConfig.
type Config struct {
	// TaskEpsilon is the epsilon of jobs that set none (Chronos's
	// --task_epsilon): a run missed by more than this is skipped.
	TaskEpsilon time.Duration
	// FailureRetry is the delay between a failed attempt and its retry
	// (Chronos's --failure_retry).
	FailureRetry time.Duration
	// DefaultRetries is a job's retries when its JSON has none.
	DefaultRetries int
	// DefaultCpus, DefaultMem (MB) and DefaultDisk (MB) are a job's
	// resources when its JSON has none.
	DefaultCpus, DefaultMem, DefaultDisk float64
	// DisableAfterFailures disables a job after this many failed runs in a
	// row (jobs with softError are exempt); 0 never does.
	DisableAfterFailures int
	// RunHistory is how many finished runs of each job the ledger keeps
	// (every pass reads the whole ledger: keep it modest).
	RunHistory int
	// UnreachableAfter is how long a run's task may stay TASK_UNREACHABLE
	// (its agent lost) before the attempt counts as failed and is retried.
	UnreachableAfter time.Duration
	// Coalesce is how long the loop lets a burst of store writes land
	// before its next pass; it adds at most this to a dependant's start.
	Coalesce time.Duration
	// MaxWait bounds how long the framework's loop sleeps with nothing due.
	MaxWait time.Duration
	// LeaderAPI returns the leading master's API address for GET /leader;
	// nil answers with the request's Host.
	LeaderAPI func() string
	// Now is the clock; nil uses the master's.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns Chronos's defaults.
func DefaultConfig() Config {
	return Config{
		TaskEpsilon:      60 * time.Second,
		FailureRetry:     60 * time.Second,
		DefaultRetries:   2,
		DefaultCpus:      0.1,
		DefaultMem:       128,
		DefaultDisk:      256,
		RunHistory:       50,
		MaxWait:          30 * time.Second,
		UnreachableAfter: 5 * time.Minute,
	}
}
