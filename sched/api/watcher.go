package api

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// ChangesSource is the master's change watch: *Client and *MasterSet have
// it.
type ChangesSource interface {
	Changes(ctx context.Context, after uint64, nodesHash string, wait time.Duration) (*Changes, error)
}

var (
	_ ChangesSource = (*Client)(nil)
	_ ChangesSource = (*MasterSet)(nil)
)

// Watcher is a node's one watch of the master: it keeps a Mirror of the
// cluster state by the change watch (a snapshot once, then only what
// changed) and hands the whole State to every local user (dns, lb) through
// Consumer. While the master cannot be reached it keeps the last state and
// retries with capped, jittered backoff; with a MasterSet as Source each
// failure moves on to another master at once.
type Watcher struct {
	// Source is the master (required).
	Source ChangesSource
	// Wait is how long one query blocks (default 30 s).
	Wait time.Duration
	// Logger (default: discard).
	Logger *slog.Logger

	mu      sync.Mutex
	mirror  Mirror
	cur     *State
	changed chan struct{} // closed and replaced when cur changes
	lastErr error
}

func (w *Watcher) init() {
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := w.Wait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		w.mu.Lock()
		after, hash := w.mirror.Index(), w.mirror.NodesHash()
		w.mu.Unlock()
		start := time.Now()
		ch, err := w.Source.Changes(ctx, after, hash, wait)
		if err == nil && (ch == nil || ch.Index == 0 && after > 0) {
			// An empty answer (a master shutting down, say) is not a state:
			// serving it would drop every name and route.
			err = errors.New("the master returned an empty state")
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.mu.Lock()
			w.lastErr = err
			w.mu.Unlock()
			log.Warn("watching the master failed; serving the last good state", "err", err, "retry_in", backoff)
			sleepCtx(ctx, backoff/2+time.Duration(rand.Int64N(int64(backoff/2)+1)))
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		w.mu.Lock()
		w.lastErr = nil
		publish := w.cur == nil || !ch.Empty() || ch.Index != w.mirror.index || ch.Leader != w.mirror.leader
		w.mirror.Apply(ch)
		if publish {
			w.init()
			w.cur = w.mirror.State()
			close(w.changed)
			w.changed = make(chan struct{})
		}
		w.mu.Unlock()
		if !publish && time.Since(start) < 10*time.Millisecond {
			// A source that does not block: do not spin.
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
	return nil
}

// Err is the last query's error, nil once a query succeeded again.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// State returns the latest state, nil before the first answer.
func (w *Watcher) State() *State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Consumer returns a blocking state query for one local user, with the
// Watch method dns and lb take as their source. Each user needs its own.
func (w *Watcher) Consumer() *WatchConsumer { return &WatchConsumer{w: w} }

// WatchConsumer is one local user's view of a Watcher.
type WatchConsumer struct {
	w    *Watcher
	mu   sync.Mutex
	last *State
}

// Watch returns the latest state at once when this consumer has not had
// it yet (or after differs from its index: after = 0 asks again), else
// blocks until a newer one comes or wait passes, then returns the latest.
// The State is shared: never modify it. Before the first state arrives it
// waits up to wait and then returns the watcher's error.
func (c *WatchConsumer) Watch(ctx context.Context, after uint64, wait time.Duration) (*State, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		c.w.mu.Lock()
		c.w.init()
		cur, changed, lastErr := c.w.cur, c.w.changed, c.w.lastErr
		c.w.mu.Unlock()
		c.mu.Lock()
		if cur != nil && (cur != c.last || after != cur.Index) {
			c.last = cur
			c.mu.Unlock()
			return cur, nil
		}
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			if cur != nil {
				return cur, nil
			}
			if lastErr == nil {
				lastErr = errors.New("no state from the master yet")
			}
			return nil, lastErr
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
