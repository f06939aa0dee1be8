package sched

import (
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"
)

// fwPanics remembers the frameworks that panicked (in Wants,
// ResourceOffers or Run), so an operator sees it on /metrics and in
// `weft node list` instead of a framework that silently gets no offers.
type fwPanics struct {
	mu     sync.Mutex
	last   map[string]string    // framework → "where: panic value (time)"
	logged map[string]time.Time // framework/method → when its stack was last logged
}

// frameworkPanicked logs a recovered panic with its stack (once a minute
// per framework and method: Wants panics in every allocation round),
// counts it and records it as a problem of this master.
func (m *Master) frameworkPanicked(fw, where string, r any) {
	m.metrics.fwPanics.WithLabelValues(fw, where).Inc()
	now := time.Now()
	m.panics.mu.Lock()
	if m.panics.last == nil {
		m.panics.last, m.panics.logged = map[string]string{}, map[string]time.Time{}
	}
	m.panics.last[fw] = fmt.Sprintf("framework %s panicked in %s at %s: %v (see the log)", fw, where, now.UTC().Format(time.RFC3339), r)
	key := fw + "/" + where
	logIt := now.Sub(m.panics.logged[key]) > time.Minute
	if logIt {
		m.panics.logged[key] = now
	}
	m.panics.mu.Unlock()
	if logIt {
		m.log.Error("framework panicked", "framework", fw, "in", where, "panic", r, "stack", string(debug.Stack()))
	}
}

// problems lists the frameworks' panics, sorted.
func (p *fwPanics) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.last))
	for _, s := range p.last {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
