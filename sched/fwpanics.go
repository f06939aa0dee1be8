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
	mu   sync.Mutex
	last map[string]string // framework → "where: panic value (time)"
}

// frameworkPanicked logs a recovered panic with its stack, counts it and
// records it as a problem of this master.
func (m *Master) frameworkPanicked(fw, where string, r any) {
	m.log.Error("framework panicked", "framework", fw, "in", where, "panic", r, "stack", string(debug.Stack()))
	m.metrics.fwPanics.WithLabelValues(fw, where).Inc()
	m.panics.mu.Lock()
	defer m.panics.mu.Unlock()
	if m.panics.last == nil {
		m.panics.last = map[string]string{}
	}
	m.panics.last[fw] = fmt.Sprintf("framework %s panicked in %s at %s: %v (see the log)", fw, where, time.Now().UTC().Format(time.RFC3339), r)
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
