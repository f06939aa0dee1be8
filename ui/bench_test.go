package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
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
