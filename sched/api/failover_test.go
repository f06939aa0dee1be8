package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestClientFailsOverAndRetries(t *testing.T) {
	var unavailable atomic.Int32
	unavailable.Store(2)
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			keys = append(keys, r.Header.Get(IdempotencyHeader))
		}
		if unavailable.Add(-1) >= 0 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"message":"There is no leader"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()

	c := NewClient(deadAddr(t) + "," + srv.URL)
	if len(c.Bases) != 2 {
		t.Fatalf("bases %v", c.Bases)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A refused connection moves on; 503 with Retry-After is retried.
	if _, err := c.PutApp(ctx, "/a", []byte(`{"id":"/a"}`), false); err != nil {
		t.Fatalf("PUT through a dead master and two 503s: %v", err)
	}
	// The master that answered is tried first next time.
	if got := c.bases()[0]; got != srv.URL {
		t.Fatalf("first master now %s, want %s", got, srv.URL)
	}
	// A POST carries an Idempotency-Key, the same one on every attempt.
	unavailable.Store(1)
	keys = nil
	if _, err := c.Do(ctx, http.MethodPost, "/v2/apps", map[string]string{"id": "/b"}, nil); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("POST attempts carried keys %q, want one key twice", keys)
	}
}

func TestClientDoesNotRepeatUnsafeWrites(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"message":"proxying to the leader: EOF"}`, http.StatusBadGateway)
	}))
	defer srv.Close()
	c := NewClientOf(srv.URL)
	c.RetryFor = time.Second
	ctx := WithIdempotencyKey(context.Background(), "")
	// PATCH without a key: a 502 may come after the master acted.
	if _, err := c.Do(ctx, http.MethodPatch, "/v2/apps/a", map[string]int{"instances": 2}, nil); StatusCode(err) != http.StatusBadGateway {
		t.Fatalf("err %v, want the 502", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("a PATCH without a key was sent %d times after a 502, want once", n)
	}
	// A GET is retried on 502 until RetryFor.
	calls.Store(0)
	if _, err := c.Do(ctx, http.MethodGet, "/v2/apps", nil, nil); StatusCode(err) != http.StatusBadGateway {
		t.Fatalf("err %v", err)
	}
	if n := calls.Load(); n < 2 {
		t.Fatalf("a GET was sent %d times, want retries", n)
	}
}

func TestMasterSetMovesOnAtOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"index":3,"tasks":[]}`))
	}))
	defer srv.Close()
	dead := "http://" + deadAddr(t)
	s := &MasterSet{Candidates: func() []string { return []string{dead, srv.URL} }}
	ctx := context.Background()
	if _, err := s.Assignments(ctx, "a1", 0, 0); err == nil {
		t.Fatal("the first call goes to the dead master and fails")
	}
	if _, err := s.Assignments(ctx, "a1", 0, 0); err != nil {
		t.Fatalf("the next call must go to the other master: %v", err)
	}
	views := s.Views()
	if len(views) != 2 || views[0].State != "failing" || views[1].State != "current" || views[0].LastError == "" {
		t.Fatalf("views %+v", views)
	}
}
