package dns

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

// fakeMaster serves GET /v1/state?index=N&wait=D the way the master's
// blocking query does, so the real api.Client is exercised end to end.
type fakeMaster struct {
	mu      sync.Mutex
	st      *api.State
	changed chan struct{}
	stop    chan struct{}
}

func (m *fakeMaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/state" {
		http.NotFound(w, r)
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil {
		wait = 30 * time.Second
	}
	deadline := time.After(wait)
	for {
		m.mu.Lock()
		st, ch := m.st, m.changed
		m.mu.Unlock()
		if st.Index > after {
			_ = json.NewEncoder(w).Encode(st)
			return
		}
		select {
		case <-ch:
		case <-deadline:
			_ = json.NewEncoder(w).Encode(st)
			return
		case <-r.Context().Done():
			return
		case <-m.stop:
			return
		}
	}
}

func (m *fakeMaster) set(st *api.State) {
	m.mu.Lock()
	m.st = st
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

func TestSyncThroughAPIClient(t *testing.T) {
	st := goldenStates()["01-host-app"]
	fm := &fakeMaster{st: st, changed: make(chan struct{}), stop: make(chan struct{})}
	hs := httptest.NewServer(fm)
	defer hs.Close()
	s := startServer(t, func(c *Config) { c.Source = api.NewClient(hs.URL) })
	select {
	case <-s.Ready():
	case <-time.After(3 * time.Second):
		t.Fatal("no first sync through api.Client")
	}
	next := *st
	next.Index++
	next.Tasks = st.Tasks[:1]
	fm.set(&next)
	d := waitFor(t, time.Second, "pushed change through GET /v1/state", func() bool {
		return len(ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0).Answer) == 1
	})
	t.Logf("staleness through the HTTP blocking query: %v", d)
	// The master goes away: names keep resolving from the last table.
	close(fm.stop)
	hs.Close()
	time.Sleep(300 * time.Millisecond)
	if r := ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("master gone: %s with %d answers", mdns.RcodeToString[r.Rcode], len(r.Answer))
	}
}
