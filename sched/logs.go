package sched

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// logChunk is how much one read from the agent asks for.
const logChunk = 1 << 20

// logPoll is how often a followed log asks its agent for new bytes when
// the agent does not wait for them (an agent from before ?wait).
var logPoll = 100 * time.Millisecond

// logWait is how long the agent holds a followed log's read at the end of
// the file for the task to write more: bytes reach the follower as soon
// as they are written, not at the next poll.
var logWait = time.Second

// taskLogSource is where a task's sandbox may be: the agent API addresses
// to ask, and whether the task will never write again (done).
type taskLogSource struct {
	agents []string
	done   func() bool
}

// handleTaskLogs serves GET /v1/tasks/{id}/logs?stream=stdout|stderr&offset=N&follow=true:
// the task's file read from its agent over the node channel. It is a read
// of the task's app (or job). Without follow the answer is the file from
// offset to its current end; with follow it goes on, chunked, as the task
// writes, and ends once the task is terminal and everything is read, or
// when the client goes away.
func (m *Master) handleTaskLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	stream := q.Get("stream")
	switch stream {
	case "":
		stream = "stdout"
	case "stdout", "stderr":
	default:
		writeError(w, http.StatusBadRequest, "stream must be stdout or stderr, not "+strconv.Quote(stream))
		return
	}
	var offset int64
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "offset must be an integer (negative: from the end), not "+strconv.Quote(v))
			return
		}
		offset = n
	}
	follow := false
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "follow must be true or false, not "+strconv.Quote(v))
			return
		}
		follow = b
	}
	src, code, msg := m.taskLogSource(AuthzFrom(r.Context()), id)
	if msg != "" {
		writeError(w, code, msg)
		return
	}
	scheme, rt := m.nodeTransport()
	hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	ctx := r.Context()
	// The first read finds the agent that holds the sandbox.
	var first *api.SandboxChunk
	var base string
	var last error
	for _, addr := range src.agents {
		c, err := api.ReadSandbox(ctx, hc, scheme+"://"+addr, id, stream, offset, logChunk)
		if err == nil {
			first, base = c, scheme+"://"+addr
			break
		}
		last = err
	}
	if first == nil {
		if last == nil || api.StatusCode(last) == http.StatusNotFound {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no agent holds the sandbox of task %s (it may have been garbage-collected)", id))
			return
		}
		writeError(w, http.StatusBadGateway, fmt.Sprintf("the agent of task %s: %v", id, last))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Log-Offset", strconv.FormatInt(first.Offset, 10))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The headers go now: a follower of a task that has written nothing
	// yet knows it is attached (net/http would hold them to the first byte).
	_ = rc.Flush()
	if err := m.copyLog(ctx, rc, w, hc, base, id, stream, first, follow, src.done); err != nil && ctx.Err() == nil {
		m.log.Debug("task logs ended early", "task", id, "err", err)
	}
}

// copyLog writes c and every following read until the end of the file
// (without follow) or until the task is done and read to the end.
func (m *Master) copyLog(ctx context.Context, rc *http.ResponseController, w http.ResponseWriter, hc *http.Client, base, id, stream string, c *api.SandboxChunk, follow bool, done func() bool) error {
	finished, stopAt := false, c.Size
	for {
		if len(c.Data) > 0 {
			if _, err := w.Write(c.Data); err != nil {
				return err
			}
			_ = rc.Flush()
		}
		if !follow && (c.Next() >= stopAt || c.Next() >= c.Size) {
			return nil
		}
		atEnd := c.Next() >= c.Size
		if atEnd && finished {
			return nil
		}
		var wait time.Duration
		if atEnd {
			// Decide before the next read: a task seen done before a read
			// that reaches the end has written everything.
			finished = done()
			if !finished {
				wait = logWait
			}
		}
		t0 := time.Now()
		next, err := api.ReadSandboxWait(ctx, hc, base, id, stream, c.Next(), logChunk, wait)
		if err != nil {
			return err
		}
		if el := time.Since(t0); wait > 0 && len(next.Data) == 0 && el < logPoll {
			// The agent did not wait: poll.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(logPoll - el):
			}
		}
		c = next
	}
}

// taskLogSource finds task id and checks that a may read it: a task the
// master lists is read from its own agent; a finished Chronos run (gone
// from the task table, its sandbox maybe still kept) from any alive agent.
func (m *Master) taskLogSource(a *Authz, id string) (src taskLogSource, code int, msg string) {
	notFound := fmt.Sprintf("no task %s (neither a task nor a job run the master knows)", id)
	if e, ok := m.store.Get(TableTasks, id); ok {
		t := e.Value.(*TaskRecord).Task
		if t.Framework == "chronos" {
			if a != nil && a.Job(t.Name) < AccessRead {
				return src, http.StatusForbidden, "Not Authorized to perform this action: " + fmt.Sprintf("token %q has no read access to job %s", a.Label(), t.Name)
			}
		} else if a != nil && !a.CanReadApp(t.AppID) {
			return src, http.StatusForbidden, "Not Authorized to perform this action: " + ForbiddenApp(a, AccessRead, t.AppID)
		}
		for _, n := range m.cfg.Members.Nodes() {
			if n.ID == t.SlaveID && n.AgentAPI != "" {
				src.agents = []string{n.AgentAPI}
			}
		}
		if len(src.agents) == 0 {
			return src, http.StatusNotFound, fmt.Sprintf("the agent of task %s (%s) is not a member any more", id, t.SlaveID)
		}
		src.done = func() bool {
			e, ok := m.store.Get(TableTasks, id)
			return !ok || api.Terminal(e.Value.(*TaskRecord).Task.State)
		}
		return src, 0, ""
	}
	for _, e := range m.store.List(TableJobRuns) {
		run := e.Value.(*api.JobRun)
		if run.TaskID != id {
			continue
		}
		if a != nil && a.Job(run.Job) < AccessRead {
			return src, http.StatusForbidden, "Not Authorized to perform this action: " + fmt.Sprintf("token %q has no read access to job %s", a.Label(), run.Job)
		}
		for _, n := range m.cfg.Members.Nodes() {
			if n.AgentAPI != "" && n.Status == "alive" && len(src.agents) < 32 {
				src.agents = append(src.agents, n.AgentAPI)
			}
		}
		src.done = func() bool { return true }
		return src, 0, ""
	}
	return src, http.StatusNotFound, notFound
}
