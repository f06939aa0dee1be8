package sched

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/weftnet/weft/sched/api"
)

// Node statuses as Members reports them (serf's member states).
const (
	NodeAlive   = "alive"
	NodeSuspect = "suspect"
	NodeFailed  = "failed"
	NodeLeft    = "left"
)

// Members is the cluster membership the master schedules on. cmd/weft
// adapts the mesh's gossip to it; tests use StaticMembers.
type Members interface {
	// Nodes returns every known member with its status, resources and tags.
	Nodes() []api.Node
	// Subscribe returns a channel that receives a value (coalesced) after
	// the membership changes, and a cancel func.
	Subscribe() (<-chan struct{}, func())
}

// StaticMembers is a settable membership, for tests and benchmarks.
type StaticMembers struct {
	mu    sync.Mutex
	nodes []api.Node
	subs  map[chan struct{}]struct{}
	ping  func(name string) error
}

var (
	_ Members = (*StaticMembers)(nil)
	_ Pinger  = (*StaticMembers)(nil)
)

// Ping implements Pinger: by default a member answers while its status
// is alive or suspect; SetPing replaces that.
func (s *StaticMembers) Ping(ctx context.Context, name string) error {
	s.mu.Lock()
	ping := s.ping
	var status string
	for _, n := range s.nodes {
		if n.Name == name {
			status = n.Status
		}
	}
	s.mu.Unlock()
	if ping != nil {
		return ping(name)
	}
	if status == NodeAlive || status == NodeSuspect {
		return nil
	}
	return fmt.Errorf("member %q does not answer (%s)", name, status)
}

// SetPing makes Ping call fn.
func (s *StaticMembers) SetPing(fn func(name string) error) {
	s.mu.Lock()
	s.ping = fn
	s.mu.Unlock()
}

// NewStaticMembers returns a membership holding nodes.
func NewStaticMembers(nodes ...api.Node) *StaticMembers {
	return &StaticMembers{nodes: slices.Clone(nodes), subs: map[chan struct{}]struct{}{}}
}

// Nodes returns a copy of the member list.
func (s *StaticMembers) Nodes() []api.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.nodes)
}

// Set replaces the member list and notifies subscribers.
func (s *StaticMembers) Set(nodes []api.Node) {
	s.mu.Lock()
	s.nodes = slices.Clone(nodes)
	s.mu.Unlock()
	s.notify()
}

// SetStatus changes one member's status (alive, suspect, failed, left) and
// notifies subscribers. It reports whether the member exists.
func (s *StaticMembers) SetStatus(id, status string) bool {
	s.mu.Lock()
	found := false
	for i := range s.nodes {
		if s.nodes[i].ID == id {
			s.nodes[i].Status = status
			found = true
		}
	}
	s.mu.Unlock()
	if found {
		s.notify()
	}
	return found
}

// Subscribe implements Members.
func (s *StaticMembers) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[chan struct{}]struct{}{}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

func (s *StaticMembers) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
