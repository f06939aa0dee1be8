package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// MasterSet is how a node's agent, dns and lb reach the masters: one
// master at a time, any of them (a follower answers agents' assignments
// from its own replica and forwards the rest to the leader). A call that
// fails to connect, or gets 502/503, marks that master failing and the
// next call goes to another at once; a master is tried again once every
// other one has failed since, or after FailFor. It remembers how each
// master last answered, for the agent's /v1/health.
type MasterSet struct {
	// Candidates lists the masters' API addresses ("host:port" or URLs),
	// e.g. the alive masters gossip knows, or the --api list.
	Candidates func() []string
	// Dial makes the client for one master (default NewClient; a node
	// with the cluster's token dials over mutual TLS).
	Dial func(base string) *Client
	// FailFor is how long a failing master is passed over while another
	// is untried (default 10 s).
	FailFor time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu      sync.Mutex
	current string
	views   map[string]*MasterView
	clients map[string]*Client
}

// MasterView is what a node knows of one master from its own calls.
type MasterView struct {
	API string `json:"api"`
	// State is "current" (in use, last call answered), "ok" (answered
	// before), "failing" (the last call to it failed) or "unknown".
	State     string `json:"state"`
	LastOK    string `json:"lastOk,omitempty"`
	LastError string `json:"lastError,omitempty"`
	FailedAt  string `json:"failedAt,omitempty"`
	failedAt  time.Time
	okAt      time.Time
}

func (s *MasterSet) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// pick returns the master to use now.
func (s *MasterSet) pick() (string, *Client, error) {
	var cands []string
	if s.Candidates != nil {
		cands = s.Candidates()
	}
	if len(cands) == 0 {
		return "", nil, errors.New("no master known yet: is --join pointing at the cluster?")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.views == nil {
		s.views = map[string]*MasterView{}
		s.clients = map[string]*Client{}
	}
	failFor := s.FailFor
	if failFor <= 0 {
		failFor = 10 * time.Second
	}
	now := s.now()
	usable := func(a string) bool {
		v := s.views[a]
		return v == nil || v.failedAt.IsZero() || now.Sub(v.failedAt) > failFor
	}
	choice := ""
	for _, c := range cands {
		if c == s.current && usable(c) {
			choice = c
			break
		}
	}
	if choice == "" {
		// The next usable candidate after the current one, in list order.
		start := 0
		for i, c := range cands {
			if c == s.current {
				start = i + 1
			}
		}
		for i := range cands {
			if c := cands[(start+i)%len(cands)]; usable(c) {
				choice = c
				break
			}
		}
	}
	if choice == "" {
		// Every master failed lately: the one that failed longest ago.
		for _, c := range cands {
			if choice == "" || s.views[c].failedAt.Before(s.views[choice].failedAt) {
				choice = c
			}
		}
	}
	s.current = choice
	cl := s.clients[choice]
	if cl == nil {
		if s.Dial != nil {
			cl = s.Dial(choice)
		} else {
			cl = NewClient(choice)
		}
		cl.RetryFor = -1 // this set moves on by itself
		s.clients[choice] = cl
	}
	return choice, cl, nil
}

// done records how a call to master a went.
func (s *MasterSet) done(a string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.views[a]
	if v == nil {
		v = &MasterView{API: a}
		s.views[a] = v
	}
	if err == nil || !masterFailed(err) {
		v.okAt, v.failedAt, v.LastError = s.now(), time.Time{}, ""
		return
	}
	v.failedAt, v.LastError = s.now(), err.Error()
}

// masterFailed reports whether err says the master cannot serve: no
// connection, or it answered 502/503/504. Other errors (a 4xx, a
// cancelled call) say nothing against the master.
func masterFailed(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	switch StatusCode(err) {
	case 0:
		return true
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Views reports the masters this node knows and how each last answered.
func (s *MasterSet) Views() []MasterView {
	var cands []string
	if s.Candidates != nil {
		cands = s.Candidates()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MasterView, 0, len(cands))
	for _, c := range cands {
		v := MasterView{API: c, State: "unknown"}
		if sv := s.views[c]; sv != nil {
			v = *sv
			switch {
			case !sv.failedAt.IsZero():
				v.State = "failing"
			case c == s.current:
				v.State = "current"
			default:
				v.State = "ok"
			}
		} else if c == s.current {
			v.State = "current"
		}
		if !v.okAt.IsZero() {
			v.LastOK = Timestamp(v.okAt)
		}
		if !v.failedAt.IsZero() {
			v.FailedAt = Timestamp(v.failedAt)
		}
		out = append(out, v)
	}
	return out
}

// call runs f against the master to use now and records the outcome.
func (s *MasterSet) call(f func(*Client) error) error {
	a, cl, err := s.pick()
	if err != nil {
		return err
	}
	err = f(cl)
	s.done(a, err)
	if err != nil && masterFailed(err) {
		return fmt.Errorf("master %s: %w", a, err)
	}
	return err
}

// Watch is the blocking state query dns and lb build on.
func (s *MasterSet) Watch(ctx context.Context, after uint64, wait time.Duration) (*State, error) {
	var st *State
	err := s.call(func(c *Client) (err error) {
		st, err = c.Watch(ctx, after, wait)
		return err
	})
	return st, err
}

// Assignments is the agent's blocking query.
func (s *MasterSet) Assignments(ctx context.Context, agentID string, after uint64, wait time.Duration) (*Assignments, error) {
	var as *Assignments
	err := s.call(func(c *Client) (err error) {
		as, err = c.Assignments(ctx, agentID, after, wait)
		return err
	})
	return as, err
}

// AssignmentChanges is the agent's blocking query, as deltas.
func (s *MasterSet) AssignmentChanges(ctx context.Context, agentID string, after uint64, wait time.Duration) (*Assignments, error) {
	var as *Assignments
	err := s.call(func(c *Client) (err error) {
		as, err = c.AssignmentChanges(ctx, agentID, after, wait)
		return err
	})
	return as, err
}

// PostStatus reports task status.
func (s *MasterSet) PostStatus(ctx context.Context, agentID string, updates []TaskStatus) error {
	return s.call(func(c *Client) error { return c.PostStatus(ctx, agentID, updates) })
}

// AgentStopping tells the current master the agent is stopping on purpose
// (the master it long-polls, which sees the poll end).
func (s *MasterSet) AgentStopping(ctx context.Context, agentID string) error {
	return s.call(func(c *Client) error { return c.AgentStopping(ctx, agentID) })
}

// PostStatusAnswer reports task status and returns the master's answer.
func (s *MasterSet) PostStatusAnswer(ctx context.Context, agentID string, updates []TaskStatus) (*StatusAnswer, error) {
	var ans *StatusAnswer
	err := s.call(func(c *Client) (err error) {
		ans, err = c.PostStatusAnswer(ctx, agentID, updates)
		return err
	})
	return ans, err
}
