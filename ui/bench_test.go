package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// BenchmarkAppsPage renders /ui/apps for 1,000 apps from a canned API
// answer (the rendering cost alone; bench/ui measures the real master).
func BenchmarkAppsPage(b *testing.B) {
	var apps []map[string]any
	for i := 0; i < 1000; i++ {
		apps = append(apps, map[string]any{"id": fmt.Sprintf("/bench/g%02d/app-%04d", i%10, i), "instances": 10, "cpus": 0.01, "mem": 8,
			"tasksRunning": 10, "tasksHealthy": 0, "labels": map[string]string{"team": "bench"}, "deployments": []any{},
			"cmd": "exec sleep 600", "env": map[string]string{}, "constraints": []any{}, "healthChecks": []any{}, "portDefinitions": []any{}})
	}
	body, _ := json.Marshal(map[string]any{"apps": apps})
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/apps":
			_, _ = w.Write(body)
		case "/v2/queue":
			_, _ = w.Write([]byte(`{"queue":[]}`))
		default:
			w.WriteHeader(404)
		}
	})
	u, err := New(Config{API: api})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/apps", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkAppsPageAfterChange is the apps page of 1,000 apps right after
// one app changed: the view is patched from the change feed (one app read
// again), then the page and the live delta are rendered.
func BenchmarkAppsPageAfterChange(b *testing.B) {
	f := &fakeStore{running: map[string]int{}, gets: map[string]int{}, hidden: "/none/"}
	for i := 0; i < 1000; i++ {
		f.running[fmt.Sprintf("/bench/g%02d/app-%04d", i%10, i)] = 3
	}
	f.index = 1
	u, err := New(Config{API: f, Index: f.Index, Changes: f.Changes})
	if err != nil {
		b.Fatal(err)
	}
	get := func(since uint64) {
		req := httptest.NewRequest("GET", "/ui/apps", nil)
		if since > 0 {
			req.Header.Set("X-Weft-Partial", "1")
			req.Header.Set("X-Weft-Since", fmt.Sprint(since))
		}
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
	get(0)
	b.ReportAllocs()
	for b.Loop() {
		at := f.Index()
		f.step(api.Changes{Apps: []api.App{{ID: "/bench/g03/app-0003"}}})
		get(0)
		get(at)
	}
}
