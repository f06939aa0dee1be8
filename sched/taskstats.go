package sched

import (
	"fmt"
	"net/http"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// handleTaskStats serves GET /v1/tasks/{id}/stats: a running task's cpu
// and memory usage and limits, read from its agent over the node channel
// (the agent reads the task's cgroup). It is a read of the task's app or
// job. Marathon's task JSON has no usage, so /v2 answers carry none.
func (m *Master) handleTaskStats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, ok := m.store.Get(TableTasks, id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no task %s runs (usage is measured for running tasks only)", id))
		return
	}
	if api.Terminal(e.Value.(*TaskRecord).Task.State) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("task %s has ended (usage is measured for running tasks only)", id))
		return
	}
	src, code, msg := m.taskLogSource(AuthzFrom(r.Context()), id)
	if msg != "" {
		writeError(w, code, msg)
		return
	}
	scheme, rt := m.nodeTransport()
	hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	st, err := api.ReadTaskStats(r.Context(), hc, scheme+"://"+src.agents[0], id)
	if err != nil {
		switch c := api.StatusCode(err); c {
		case http.StatusNotFound, http.StatusConflict:
			writeError(w, c, fmt.Sprintf("the agent of task %s: %v", id, errMessage(err)))
		default:
			writeError(w, http.StatusBadGateway, fmt.Sprintf("the agent of task %s: %v", id, errMessage(err)))
		}
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// errMessage is an agent's own message when it sent one.
func errMessage(err error) string {
	if e, ok := err.(*api.Error); ok && e.Body.Message != "" {
		return e.Body.Message
	}
	return err.Error()
}
