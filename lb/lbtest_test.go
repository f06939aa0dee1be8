package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// fakeSource is an in-memory StateSource with blocking-query semantics.
type fakeSource struct {
	mu      sync.Mutex
	st      api.State
	changed chan struct{}
	fail    bool
	noPush  bool // answer only when wait passes, like a master that missed a change
	empty   bool // answer an empty state, like a master shutting down
}

func newFakeSource() *fakeSource { return &fakeSource{changed: make(chan struct{})} }

func (f *fakeSource) Watch(ctx context.Context, after uint64, wait time.Duration) (*api.State, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		f.mu.Lock()
		if f.fail {
			f.mu.Unlock()
			return nil, errors.New("connection refused")
		}
		if f.empty {
			f.mu.Unlock()
			return &api.State{}, nil
		}
		if f.st.Index > after && (!f.noPush || after == 0) {
			st := f.st
			f.mu.Unlock()
			return &st, nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			f.mu.Lock()
			st := f.st
			f.mu.Unlock()
			return &st, nil
		case <-ch:
		}
	}
}

func ptr[T any](v T) *T { return &v }

// ptrs points at a copy of each of xs.
func ptrs[T any](xs []T) []*T {
	out := make([]*T, len(xs))
	for i := range xs {
		out[i] = ptr(xs[i])
	}
	return out
}

// set replaces apps and tasks and raises the index.
func (f *fakeSource) set(apps []api.App, tasks []api.Task) {
	f.mu.Lock()
	f.st.Index++
	f.st.Apps, f.st.Tasks = ptrs(apps), ptrs(tasks)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeSource) setFail(v bool) {
	f.mu.Lock()
	f.fail = v
	f.mu.Unlock()
}

func (f *fakeSource) setEmpty(v bool) {
	f.mu.Lock()
	f.empty = v
	f.mu.Unlock()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func testConfig(src StateSource) Config {
	cfg := DefaultConfig()
	cfg.Group = []string{"*"}
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HTTPSAddr = ""
	cfg.AppIDAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.BindHost = "127.0.0.1"
	cfg.Source = src
	cfg.ResyncEvery = 2 * time.Second
	cfg.EjectFor = 2 * time.Second
	cfg.DrainTimeout = 5 * time.Second
	return cfg
}

func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop")
		}
	})
	select {
	case <-p.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not ready")
	}
	return p
}

// eventually retries f until it returns nil or the deadline passes.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpBackend is a Go HTTP server answering "name path" and echoing
// request headers back as X-Echo-<Header>.
type httpBackend struct {
	name string
	port int
	srv  *http.Server
	ln   net.Listener
}

func startHTTPBackend(t testing.TB, name string, h http.HandlerFunc) *httpBackend {
	t.Helper()
	return startHTTPBackendWith(t, name, h, nil)
}

func startHTTPBackendWith(t testing.TB, name string, h http.HandlerFunc, configure func(*http.Server)) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{name: name, port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			for k, v := range r.Header {
				w.Header()["X-Echo-"+k] = v
			}
			w.Header().Set("X-Backend", name)
			if r.Body != nil {
				body, _ := io.ReadAll(r.Body)
				if len(body) > 0 {
					w.Header().Set("X-Body-Len", strconv.Itoa(len(body)))
				}
			}
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}
	}
	b.srv = &http.Server{Handler: h}
	if configure != nil {
		configure(b.srv)
	}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// tcpEcho is a TCP server that echoes, then half-closes at EOF.
func startTCPEcho(t testing.TB, prefix string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(prefix))
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// app builds a host-networked app whose tasks run on 127.0.0.1.
func app(id string, servicePort int, labels map[string]string) api.App {
	return api.App{ID: id, Version: "2026-11-01T00:00:00.000Z", Labels: labels, PortDefinitions: []api.PortDefinition{{Port: servicePort}}}
}

func task(appID string, n int, port int) api.Task {
	return api.Task{ID: fmt.Sprintf("%s.%d", strings.TrimPrefix(appID, "/"), n), AppID: appID, Host: "127.0.0.1", State: api.TaskRunning, Ports: []int{port}}
}

func client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t testing.TB, c *http.Client, url, host string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
