package agent

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// reporter queues status updates and posts them until the master accepts
// them. Updates keep their order per task; a non-terminal update that
// follows a pending one of the same state for the same task replaces it
// (health changes while RUNNING coalesce into one).
type reporter struct {
	a *Agent

	mu      sync.Mutex
	pending []queued
	seq     uint64
	wake    chan struct{}
	// lastOK is when the master last accepted a post; lastErr the last error.
	lastOK  time.Time
	lastErr error
}

func newReporter(a *Agent) *reporter {
	return &reporter{a: a, wake: make(chan struct{}, 1)}
}

// enqueue adds an update.
func (r *reporter) enqueue(st api.TaskStatus) {
	r.mu.Lock()
	r.seq++
	r.pending = coalesce(r.pending, queued{seq: r.seq, st: st})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// queued is a pending update; seq changes whenever the update does.
type queued struct {
	seq uint64
	st  api.TaskStatus
}

// coalesce appends u to q, merging it into the last pending update of the
// same task when both have the same non-terminal state.
func coalesce(q []queued, u queued) []queued {
	st := u.st
	for i := len(q) - 1; i >= 0; i-- {
		if q[i].st.TaskID != st.TaskID {
			continue
		}
		if q[i].st.State == st.State && !api.Terminal(st.State) {
			m := q[i].st
			m.Timestamp = st.Timestamp
			if st.Message != "" {
				m.Message = st.Message
			}
			if st.IPAddresses != nil {
				m.IPAddresses = st.IPAddresses
			}
			if st.HealthCheckResults != nil {
				m.HealthCheckResults = st.HealthCheckResults
			}
			if st.Ready != nil {
				m.Ready = st.Ready
			}
			q[i] = queued{seq: u.seq, st: m}
			return q
		}
		break
	}
	return append(q, u)
}

// drop removes pending updates of the given tasks.
func (r *reporter) drop(ids map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.pending[:0]
	for _, u := range r.pending {
		if !ids[u.st.TaskID] {
			q = append(q, u)
		}
	}
	r.pending = q
}

func (r *reporter) pendingCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// run posts pending updates until ctx ends.
func (r *reporter) run(ctx context.Context) {
	cfg := r.a.cfg
	attempt := 0
	lingered := false // the pending batch has waited its StartingLinger
	for {
		r.mu.Lock()
		n := min(len(r.pending), cfg.StatusBatch)
		batch := append([]queued(nil), r.pending[:n]...)
		r.mu.Unlock()
		if n == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		if attempt == 0 && !lingered && onlyStarting(batch) && r.linger(ctx, cfg.StartingLinger) {
			lingered = true
			continue // the batch again, with what came meanwhile
		}
		lingered = false
		updates := make([]api.TaskStatus, n)
		for i, u := range batch {
			updates[i] = u.st
		}
		unknown, err := r.post(ctx, updates)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			code := api.StatusCode(err)
			if code == http.StatusBadRequest || code == http.StatusUnprocessableEntity {
				// The master rejects these updates themselves: retrying
				// cannot help. Drop them rather than block every later one.
				r.a.log.Error("master rejected status updates; dropping them", "count", n, "err", err)
				r.remove(batch)
				continue
			}
			if code == http.StatusConflict {
				// Some task of the batch is assigned to another agent and the
				// master applied nothing: post one by one, dropping those.
				if r.postEach(ctx, batch) {
					attempt = 0
					continue
				}
			}
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
			d := backoff(cfg.RetryMin, cfg.RetryMax, attempt)
			attempt++
			r.a.log.Warn("posting task status failed; retrying", "count", n, "in", d, "err", err)
			if !sleepCtx(ctx, d) {
				return
			}
			continue
		}
		attempt = 0
		r.mu.Lock()
		r.lastOK = r.a.cfg.Now()
		r.lastErr = nil
		r.mu.Unlock()
		r.remove(batch)
		if len(unknown) > 0 {
			r.a.unknownTasks(unknown)
		}
	}
}

// onlyStarting reports whether every update of batch is TASK_STARTING.
func onlyStarting(batch []queued) bool {
	for _, u := range batch {
		if u.st.State != api.TaskStarting {
			return false
		}
	}
	return true
}

// linger waits up to d for an update that is not TASK_STARTING to be
// queued (a task's RUNNING after its STARTING); false when d is not
// positive. It returns true once it has waited, whatever came.
func (r *reporter) linger(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case <-t.C:
			return true
		case <-r.wake:
			r.mu.Lock()
			n := min(len(r.pending), r.a.cfg.StatusBatch)
			done := !onlyStarting(r.pending[:n])
			r.mu.Unlock()
			if done {
				return true
			}
		}
	}
}

// remove drops the posted updates. An update that was merged with a newer
// one while the post was under way has a new seq and stays.
func (r *reporter) remove(batch []queued) {
	r.mu.Lock()
	defer r.mu.Unlock()
	posted := map[uint64]bool{}
	for _, u := range batch {
		posted[u.seq] = true
	}
	q := r.pending[:0]
	for _, u := range r.pending {
		if !posted[u.seq] {
			q = append(q, u)
		}
	}
	r.pending = q
}

func (r *reporter) post(ctx context.Context, batch []api.TaskStatus) ([]string, error) {
	m := r.a.cfg.Master
	if sa, ok := m.(statusAnswerer); ok {
		ans, err := sa.PostStatusAnswer(ctx, r.a.cfg.ID, batch)
		if err != nil {
			return nil, err
		}
		return ans.Unknown, nil
	}
	return nil, m.PostStatus(ctx, r.a.cfg.ID, batch)
}

// flush posts what is pending, once, without retrying failures.
func (r *reporter) flush(ctx context.Context) {
	r.mu.Lock()
	batch := append([]queued(nil), r.pending...)
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	updates := make([]api.TaskStatus, len(batch))
	for i, u := range batch {
		updates[i] = u.st
	}
	if _, err := r.post(ctx, updates); err != nil {
		r.a.log.Warn("could not post the last status updates before exiting", "count", len(updates), "err", err)
		return
	}
	r.remove(batch)
}

// postEach posts updates one at a time after a conflict, dropping those
// the master refuses with 409. It reports whether it got through them all.
func (r *reporter) postEach(ctx context.Context, batch []queued) bool {
	for _, u := range batch {
		unknown, err := r.post(ctx, []api.TaskStatus{u.st})
		switch {
		case err == nil:
			if len(unknown) > 0 {
				r.a.unknownTasks(unknown)
			}
		case api.StatusCode(err) == http.StatusConflict:
			r.a.log.Error("master says this task is not assigned to this agent; dropping its update", "task", u.st.TaskID, "err", err)
		default:
			return false
		}
		r.remove([]queued{u})
	}
	return true
}

// backoff is a jittered exponential delay for the attempt-th retry.
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	// full jitter over the upper half keeps retries spread but not instant
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// sleepCtx sleeps d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
