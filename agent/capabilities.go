package agent

import (
	"context"
	"slices"
	"time"
)

// Capabilities returns what this agent can run now ("process", "docker")
// and, for each executor that is down, why ("docker: <reason>"). It is
// re-probed every ProbeInterval.
// Before the first probe (Run probes at start) it probes synchronously.
func (a *Agent) Capabilities() (caps []string, problems []string) {
	a.mu.Lock()
	probed := a.probed
	a.mu.Unlock()
	if !probed {
		a.probe(context.Background())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.caps), slices.Clone(a.problems)
}

// probe asks every executor whether it can run tasks now.
func (a *Agent) probe(ctx context.Context) {
	caps, problems := probeExecutors(ctx, a.cfg.Executors, 10*time.Second)
	a.mu.Lock()
	changed := !a.probed || !slices.Equal(caps, a.caps) || !slices.Equal(problems, a.problems)
	a.probed = true
	a.caps, a.problems = caps, problems
	a.mu.Unlock()
	if changed {
		if len(problems) > 0 {
			a.log.Warn("agent capabilities changed", "capabilities", caps, "problems", problems)
		} else {
			a.log.Info("agent capabilities changed", "capabilities", caps)
		}
		if a.cfg.OnCapabilities != nil {
			a.cfg.OnCapabilities(caps, problems)
		}
	}
}

func probeExecutors(ctx context.Context, exs []Executor, timeout time.Duration) (caps, problems []string) {
	for _, ex := range exs {
		if p, ok := ex.(Prober); ok {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			err := p.Available(pctx)
			cancel()
			if err != nil {
				problems = append(problems, ex.Name()+": "+err.Error())
				continue
			}
		}
		if !slices.Contains(caps, ex.Name()) {
			caps = append(caps, ex.Name())
		}
		if n, ok := ex.(Noter); ok {
			c, p := n.Notes()
			for _, x := range c {
				if !slices.Contains(caps, x) {
					caps = append(caps, x)
				}
			}
			problems = append(problems, p...)
		}
	}
	return caps, problems
}
