package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// maxRead bounds one sandbox file read.
const maxRead = 4 << 20

// maxSandboxWait bounds how long a read at the end of a sandbox file
// waits for the task to write more (?wait=ms).
const maxSandboxWait = 5 * time.Second

// sandboxWaitPoll is how often a waiting read looks at the file's size.
var sandboxWaitPoll = 5 * time.Millisecond

// Handler serves the node-local agent API:
//
//	GET /v1/tasks                                    what runs here (pid, sandbox, state)
//	GET /v1/sandbox/{taskId}/{stdout|stderr}?offset=N&length=M
//	                                                 a task's log file; a negative offset
//	                                                 counts from the end (offset=-4096: the tail);
//	                                                 &wait=MS: at the end of the file, wait up to
//	                                                 MS ms (at most 5000) for the task to write more
//	GET /v1/tasks/{id}/stats                         a running task's cpu and memory usage and limits
//	GET /v1/stats                                    the same for every running task
//	GET /v1/health                                   the agent's own health
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"tasks": a.Tasks()})
	})
	mux.HandleFunc("GET /v1/sandbox/{taskId}/{file}", a.serveSandbox)
	mux.HandleFunc("GET /v1/tasks/{id}/stats", a.serveTaskStats)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"tasks": a.Usages()})
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Health())
	})
	return mux
}

// Health is the agent's own state as GET /v1/health shows it.
type Health struct {
	ID             string   `json:"id"`
	Name           string   `json:"name,omitempty"`
	Site           string   `json:"site,omitempty"`
	Master         string   `json:"master"` // "reachable" or "unreachable"
	MasterError    string   `json:"masterError,omitempty"`
	LastSync       string   `json:"lastSync,omitempty"`
	Index          uint64   `json:"index"`
	Tasks          int      `json:"tasks"` // tasks running or starting here
	PendingUpdates int      `json:"pendingUpdates"`
	Capabilities   []string `json:"capabilities"`
	Problems       []string `json:"problems,omitempty"`
	// Masters is how each master answered this agent's last call to it,
	// when the master client keeps that (api.MasterSet does).
	Masters []api.MasterView `json:"masters,omitempty"`
}

// masterViewer is the optional side of a MasterClient that knows every
// master (api.MasterSet).
type masterViewer interface {
	Views() []api.MasterView
}

// Health reports the agent's own state.
func (a *Agent) Health() Health {
	caps, problems := a.Capabilities()
	a.mu.Lock()
	h := Health{
		ID: a.cfg.ID, Name: a.cfg.Name, Site: a.cfg.Site, Master: "reachable",
		Index: a.index, Capabilities: caps, Problems: problems,
	}
	if a.syncErr != nil || a.lastSync.IsZero() {
		h.Master = "unreachable"
		if a.syncErr != nil {
			h.MasterError = a.syncErr.Error()
		}
	}
	if !a.lastSync.IsZero() {
		h.LastSync = api.Timestamp(a.lastSync)
	}
	for _, t := range a.tasks {
		if !t.finished {
			h.Tasks++
		}
	}
	h.Tasks += len(a.recovered)
	a.mu.Unlock()
	h.PendingUpdates = a.rep.pendingCount()
	if mv, ok := a.cfg.Master.(masterViewer); ok {
		h.Masters = mv.Views()
	}
	return h
}

func (a *Agent) serveSandbox(w http.ResponseWriter, r *http.Request) {
	id, file := r.PathValue("taskId"), r.PathValue("file")
	if file != "stdout" && file != "stderr" {
		writeError(w, http.StatusNotFound, "no such sandbox file "+strconv.Quote(file)+": use stdout or stderr")
		return
	}
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		writeError(w, http.StatusBadRequest, "bad task id "+strconv.Quote(id))
		return
	}
	f, err := os.Open(filepath.Join(a.sandboxDir(id), file))
	if err != nil {
		writeError(w, http.StatusNotFound, "no sandbox "+file+" for task "+strconv.Quote(id)+" on this agent")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	size := fi.Size()
	q := r.URL.Query()
	offset, length := int64(0), int64(maxRead)
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "offset must be an integer")
			return
		}
	}
	if v := q.Get("length"); v != "" {
		if length, err = strconv.ParseInt(v, 10, 64); err != nil || length < 0 {
			writeError(w, http.StatusBadRequest, "length must be a non-negative integer")
			return
		}
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			writeError(w, http.StatusBadRequest, "wait must be a non-negative number of milliseconds, not "+strconv.Quote(v))
			return
		}
		wait = min(time.Duration(ms)*time.Millisecond, maxSandboxWait)
	}
	if offset < 0 {
		offset = max(size+offset, 0)
	}
	if wait > 0 && offset >= size {
		// A follower at the end: answer as soon as there is more, so it
		// need not poll (the log through the master follows this way).
		size = waitForGrowth(r.Context(), f, offset, wait)
	}
	offset = min(offset, size)
	length = min(length, size-offset, maxRead)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Sandbox-File-Size", strconv.FormatInt(size, 10))
	w.Header().Set("X-Sandbox-Offset", strconv.FormatInt(offset, 10))
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	_, _ = io.Copy(w, io.NewSectionReader(f, offset, length))
}

// waitForGrowth returns f's size once it passes offset, or when wait has
// passed or ctx is done.
func waitForGrowth(ctx context.Context, f *os.File, offset int64, wait time.Duration) int64 {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(sandboxWaitPoll)
	defer tick.Stop()
	var size int64
	for {
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
			if size > offset {
				return size
			}
		}
		select {
		case <-ctx.Done():
			return size
		case <-deadline.C:
			return size
		case <-tick.C:
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.ErrorBody{Message: msg})
}
