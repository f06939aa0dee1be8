package sched

import (
	"context"
	"net/http"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// Framework is a scheduler the allocator offers resources to. marathon and
// chronos implement it; cmd/weft registers them with the Master. sched never
// imports a framework package: frameworks import sched (this SPI and the
// Store) and sched/api.
type Framework interface {
	// Name is the framework's name ("marathon", "chronos"); tasks carry it
	// in Task.Framework and DNS names use it.
	Name() string
	// Run is the framework's own loop (watching the store, deployments,
	// backoff timers). It returns when ctx ends. It runs only while this
	// master leads; ctx ends when leadership is lost.
	Run(ctx context.Context, m MasterHandle) error
	// Wants reports whether the framework has tasks waiting for resources;
	// the allocator makes no offers to a framework that wants none.
	Wants() bool
	// ResourceOffers hands the framework free resources: at most one offer
	// per agent, frameworks taken in Dominant Resource Fairness order. The
	// framework answers with launches (each within one offer's resources)
	// and declines. It must not block on I/O; it must not write to the store
	// itself: the allocator commits its launches and Ops in one Apply.
	ResourceOffers(ctx context.Context, offers []api.Offer) OfferResult
	// Routes mounts the framework's HTTP API (e.g. /v2/..., /v1/scheduler/...).
	Routes(mux *http.ServeMux, m MasterHandle)
}

// OfferResult is a framework's answer to a round of offers.
type OfferResult struct {
	Launches []Launch
	Declines []Decline
	// Ops are committed atomically with the launches (deployment progress,
	// queue bookkeeping, a job run moving to "running").
	Ops    []Op
	Events []api.Event
}

// Launch starts one task on the agent of an offer. Task.Task.ID must be
// set; the allocator fills SlaveID, Host, Site, StagedAt and State
// (TASK_STAGING) and sets Goal to run.
type Launch struct {
	OfferID string
	Task    TaskRecord
}

// Decline returns an offer unused. The allocator does not offer that
// agent's resources to this framework again for RefuseFor (0: the default,
// 5 s) unless something changes on the agent. Reasons are Marathon's words
// (InsufficientCpus, InsufficientMemory, InsufficientDisk,
// InsufficientPorts, UnfulfilledConstraint, UnfulfilledRole, NoCapability);
// they feed /v2/queue's processedOffersSummary.
type Decline struct {
	OfferID   string
	RefuseFor time.Duration
	Reasons   []string
}

// MasterHandle is what a framework may use of the master.
type MasterHandle interface {
	// Store is the replicated state; frameworks write through Store().Apply.
	Store() *Store
	// Revive asks for an allocation round soon (new demand appeared).
	Revive()
	// Nodes is the current membership, as the allocator sees it.
	Nodes() []api.Node
	// Now is the master's clock (injected in tests).
	Now() time.Time
	// Logger for the framework (component attribute already set).
	Logger(component string) Logger
}

// Logger is the slice of *slog.Logger frameworks use.
type Logger interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}
