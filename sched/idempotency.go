package sched

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// Writes that are not idempotent by nature (POST, PATCH) become safe to
// retry across masters when they carry an Idempotency-Key header: the
// leader keeps its answer to each key in raft for IdempotencyWindow, and
// answers a repeat with the same status and body (and the header
// Idempotent-Replayed: true) instead of acting again, whichever master the
// repeat reaches and even after a failover. A repeat that arrives while the
// first is still being served waits for it. A key sent again with another
// method or path gets 422.
//
// The answer is committed right after the write it answers, in its own
// raft entry: a leader that dies between the two leaves the write done and
// the key unknown, so a repeat in that moment acts a second time. Agents'
// status posts and the lb's reports are idempotent by themselves and are
// not recorded.

// TableIdempotency holds the answers to requests with an Idempotency-Key:
// key → *IdempotentAnswer.
const TableIdempotency = "idempotency"

// IdempotentAnswer is a remembered answer.
type IdempotentAnswer struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	Status      int    `json:"status"`
	ContentType string `json:"contentType,omitempty"`
	Body        []byte `json:"body,omitempty"`
	At          string `json:"at"`
}

// maxRememberedBody bounds the answer kept for a key; a larger one is not
// remembered (POST answers are small).
const maxRememberedBody = 1 << 20

func init() {
	tableTypes[TableIdempotency] = func() any { return new(IdempotentAnswer) }
}

// idempotencyApplies reports whether r's answer is remembered by its key.
func idempotencyApplies(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPatch {
		return false
	}
	if strings.HasPrefix(r.URL.Path, "/v1/agents/") || strings.HasPrefix(r.URL.Path, "/v1/lb/") {
		return false
	}
	return r.Header.Get(api.IdempotencyHeader) != ""
}

// inflight holds the keys being served now.
type inflight struct {
	mu   sync.Mutex
	keys map[string]chan struct{}
}

// claim returns a func to release key, or a channel closed when the request
// holding it is done.
func (f *inflight) claim(key string) (release func(), busy <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.keys[key]; ok {
		return nil, ch
	}
	if f.keys == nil {
		f.keys = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	f.keys[key] = ch
	return func() {
		f.mu.Lock()
		delete(f.keys, key)
		f.mu.Unlock()
		close(ch)
	}, nil
}

// idempotent serves writes with an Idempotency-Key on the leader.
func (m *Master) idempotent(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !idempotencyApplies(r) {
			next.ServeHTTP(w, r)
			return
		}
		key := r.Header.Get(api.IdempotencyHeader)
		if len(key) > 200 {
			writeError(w, http.StatusBadRequest, api.IdempotencyHeader+" is longer than 200 characters")
			return
		}
		var release func()
		for {
			if m.replay(w, r, key) {
				return
			}
			var busy <-chan struct{}
			release, busy = m.keys.claim(key)
			if release != nil {
				break
			}
			select {
			case <-busy:
			case <-r.Context().Done():
				return
			}
		}
		defer release()
		rec := &answerRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.code == 0 || rec.code >= 500 || rec.overflow {
			return // not carried out (or unknown): a repeat acts
		}
		ans := &IdempotentAnswer{
			Method: r.Method, Path: r.URL.RequestURI(), Status: rec.code,
			ContentType: rec.Header().Get("Content-Type"), Body: rec.body.Bytes(),
			At: m.cfg.Now().UTC().Format(time.RFC3339Nano),
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := m.applyTimed(ctx, "idempotency", []Op{Put(TableIdempotency, key, ans)}); err != nil {
			m.log.Warn("answer to an idempotency key not remembered; a repeat will act again", "err", err)
		}
	})
}

// replay answers r from a remembered answer to key, if there is one.
func (m *Master) replay(w http.ResponseWriter, r *http.Request, key string) bool {
	e, ok := m.store.Get(TableIdempotency, key)
	if !ok {
		return false
	}
	ans := e.Value.(*IdempotentAnswer)
	if ans.Method != r.Method || ans.Path != r.URL.RequestURI() {
		writeError(w, http.StatusUnprocessableEntity, api.IdempotencyHeader+" "+key+" was used for "+ans.Method+" "+ans.Path+"; use a new key for another request")
		return true
	}
	if ans.ContentType != "" {
		w.Header().Set("Content-Type", ans.ContentType)
	}
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(ans.Status)
	_, _ = w.Write(ans.Body)
	return true
}

// answerRecorder keeps a copy of the answer it passes on.
type answerRecorder struct {
	http.ResponseWriter
	code     int
	body     bytes.Buffer
	overflow bool
}

func (a *answerRecorder) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if a.code == 0 {
		a.code = http.StatusOK
	}
	if a.body.Len()+len(b) > maxRememberedBody {
		a.overflow = true
	} else {
		a.body.Write(b)
	}
	return a.ResponseWriter.Write(b)
}

func (a *answerRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// pruneIdempotency runs while leading: it forgets answers older than
// IdempotencyWindow, once a minute.
func (m *Master) pruneIdempotency(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cut := m.cfg.Now().Add(-m.cfg.IdempotencyWindow)
		var ops []Op
		for _, e := range m.store.List(TableIdempotency) {
			at, err := time.Parse(time.RFC3339Nano, e.Value.(*IdempotentAnswer).At)
			if err != nil || at.Before(cut) {
				ops = append(ops, Check(TableIdempotency, e.Key, e.ModifyIndex), Delete(TableIdempotency, e.Key))
			}
		}
		if len(ops) == 0 {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := m.applyTimed(actx, "idempotency", ops); err != nil {
			m.log.Debug("pruning idempotency keys", "err", err)
		}
		cancel()
	}
}
