package marathon

import (
	"log/slog"
	"time"
)

// Config configures the marathon framework. Start from DefaultConfig.
type Config struct {
	// ServicePortMin and ServicePortMax bound the service ports weft
	// allocates for port 0 in portDefinitions and portMappings
	// (Marathon's local_port_min/max: 10000–20000).
	ServicePortMin, ServicePortMax int
	// ReservedServicePorts are ports inside that range that something
	// else on the cluster's nodes listens on — with `weft up`, the lb's
	// HTTP vhost frontend on 10080 — keyed by port, valued by what uses
	// it. They are never allocated, and an app asking for one explicitly
	// is refused with 422 naming the user.
	ReservedServicePorts map[int]string
	// InactiveAfter is weft's default unreachableStrategy.inactiveAfterSeconds
	// for apps that do not set one: how long a task may stay
	// TASK_UNREACHABLE before a replacement is launched elsewhere.
	// Marathon's code default is 0. weft uses 2 s, counted from when the
	// master marks the task unreachable — which happens only once gossip
	// declares the agent failed, after serf's own suspicion period of
	// several seconds. So an agent that pauses for 2 s or less never causes
	// a reschedule, and a dead agent's tasks run elsewhere within about 10 s
	// (measured by e2e TestMarathonAgentLossAndMasterRestart).
	InactiveAfter time.Duration
	// ExpungeAfter is the default unreachableStrategy.expungeAfterSeconds:
	// when an unreachable task's record is forgotten.
	ExpungeAfter time.Duration
	// DefaultKillGrace is the SIGTERM→SIGKILL grace handed to agents for
	// apps without taskKillGracePeriodSeconds.
	DefaultKillGrace time.Duration
	// Tick is how often Run re-evaluates timers (backoff expiry,
	// unreachable timeouts) when the store does not change.
	Tick time.Duration
	// RefuseFor is how long a declined agent is not offered again to
	// marathon unless it changes.
	RefuseFor time.Duration
	// HealthKillBurst and HealthKillEvery rate-limit kills of unhealthy
	// tasks cluster-wide (a token bucket): at most HealthKillBurst at once,
	// one more per HealthKillEvery (Marathon #3317).
	HealthKillBurst int
	HealthKillEvery time.Duration
	// ReplaceTimeout is how long an unhealthy task waits for its
	// replacement to become healthy before it is killed anyway.
	ReplaceTimeout time.Duration
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
	// Logger receives the framework's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration `weft up` and `weft master` use.
func DefaultConfig() Config {
	return Config{
		ServicePortMin:   10000,
		ServicePortMax:   20000,
		InactiveAfter:    2 * time.Second,
		ExpungeAfter:     10 * time.Minute,
		DefaultKillGrace: 3 * time.Second,
		Tick:             500 * time.Millisecond,
		RefuseFor:        5 * time.Second,
		HealthKillBurst:  5,
		HealthKillEvery:  10 * time.Second,
		ReplaceTimeout:   60 * time.Second,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.ServicePortMin == 0 {
		c.ServicePortMin = d.ServicePortMin
	}
	if c.ServicePortMax == 0 {
		c.ServicePortMax = d.ServicePortMax
	}
	if c.InactiveAfter == 0 {
		c.InactiveAfter = d.InactiveAfter
	}
	if c.ExpungeAfter == 0 {
		c.ExpungeAfter = d.ExpungeAfter
	}
	if c.DefaultKillGrace == 0 {
		c.DefaultKillGrace = d.DefaultKillGrace
	}
	if c.Tick == 0 {
		c.Tick = d.Tick
	}
	if c.RefuseFor == 0 {
		c.RefuseFor = d.RefuseFor
	}
	if c.HealthKillBurst == 0 {
		c.HealthKillBurst = d.HealthKillBurst
	}
	if c.HealthKillEvery == 0 {
		c.HealthKillEvery = d.HealthKillEvery
	}
	if c.ReplaceTimeout == 0 {
		c.ReplaceTimeout = d.ReplaceTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
