package sched

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// buildHandler mounts the master's routes and every framework's, and wraps
// them: panics become 500s, requests are counted, and a follower proxies
// to the leader.
func (m *Master) buildHandler() (h http.Handler, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("master: mounting routes: %v (two handlers claim the same path?)", r)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agents/{id}/assignments", m.nodeOnly(m.handleAssignments))
	mux.HandleFunc("POST /v1/agents/{id}/status", m.nodeOnly(m.handleStatus))
	mux.HandleFunc("POST /v1/agents/{id}/lost", m.nodeOnly(m.handleAgentLost))
	mux.HandleFunc("PUT /v1/agents/{id}/stopping", m.nodeOnly(m.handleAgentStopping))
	mux.HandleFunc("GET /v1/state", m.handleState)
	mux.HandleFunc("GET /v1/state/changes", m.handleChanges)
	mux.HandleFunc("GET /v1/nodes", m.handleNodes)
	mux.HandleFunc("GET /v1/tasks/{id}/logs", m.handleTaskLogs)
	mux.HandleFunc("GET /v1/tasks/{id}/stats", m.handleTaskStats)
	mux.HandleFunc("POST /v1/lb/problems", m.nodeOnly(m.handleLBReport))
	mux.HandleFunc("GET /v1/lb/problems", m.handleLBProblems)
	mux.HandleFunc("GET /v1/operator/raft/configuration", m.handleRaftConfiguration)
	mux.HandleFunc("DELETE /v1/operator/raft/peer", m.handleRemoveRaftPeer)
	mux.HandleFunc("GET /v2/events", m.handleEvents)
	mux.HandleFunc("GET /v2/info", m.handleInfo)
	mux.HandleFunc("GET /v2/leader", m.handleLeader)
	mux.HandleFunc("DELETE /v2/leader", m.handleAbdicate)
	mux.HandleFunc("GET /v2/plugins", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"plugins": []any{}})
	})
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "must-revalidate,no-cache,no-store")
		_, _ = w.Write([]byte("pong\n"))
	})
	metricsH := m.metrics.handler()
	mux.Handle("GET /metrics", metricsH)
	mux.Handle("GET /metrics/prometheus", metricsH)
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s: no such Marathon API path", r.Method, r.URL.Path))
	})
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s: no such weft API path", r.Method, r.URL.Path))
	})
	if m.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	for _, fw := range m.cfg.Frameworks {
		fw.Routes(mux, m)
	}
	m.mountACL(mux)
	m.mountSecrets(mux)
	m.mux = mux
	return m.counted(m.recoverer(gzipped(m.leaderGate(m.authorize(m.idempotent(mux)))))), nil
}

// localRequest reports whether any master answers r itself, leader or not:
// liveness, its own metrics, who leads, and the (replicated) watch.
func localRequest(r *http.Request) bool {
	switch r.URL.Path {
	case "/ping", "/metrics", "/metrics/prometheus", "/v1/state", "/v1/state/changes", "/v1/nodes":
		return true
	case "/v2/leader":
		return r.Method == http.MethodGet
	}
	return strings.HasPrefix(r.URL.Path, "/debug/pprof/")
}

// recoverer turns a handler panic into a 500 and a log line.
func (m *Master) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				m.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, fmt.Sprintf("internal error serving %s %s: %v", r.Method, r.URL.Path, v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		if s.code == 0 {
			s.code = http.StatusOK
		}
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// counted counts requests by route pattern and status code.
func (m *Master) counted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		defer func() {
			route := r.Pattern
			if route == "" {
				route = "proxied"
			}
			code := rec.code
			if code == 0 {
				code = http.StatusOK
			}
			m.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			m.metrics.requestSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	writeRawJSON(w, code, b)
}

func writeRawJSON(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}

// writeError writes Marathon's error body.
func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(api.ErrorBody{Message: msg})
	writeRawJSON(w, code, b)
}

// hostOnly strips a port.
func hostOnly(hostport string) string {
	if i := strings.LastIndex(hostport, ":"); i > 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}

// extendWriteDeadline lets a long poll outlive the server's WriteTimeout.
func extendWriteDeadline(w http.ResponseWriter, wait time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 30*time.Second))
}
