package ui

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The apps page asks the API again only when the store index moved (per
// token), serves the kept page meanwhile, shows the change once it moved,
// re-checks a page with a Delayed app after a second, and is gzipped for a
// browser that accepts it.
func TestAppsPageKeptPerIndexAndToken(t *testing.T) {
	var index atomic.Uint64
	index.Store(7)
	var calls atomic.Int64
	running := atomic.Int64{}
	running.Store(3)
	delayed := atomic.Bool{}
	now := time.Unix(1e9, 0)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/apps":
			calls.Add(1)
			var b strings.Builder
			b.WriteString(`{"apps":[`)
			for i := 0; i < 40; i++ {
				if i > 0 {
					b.WriteString(",")
				}
				id := fmt.Sprintf("/g/app-%02d", i)
				if r.Header.Get("Authorization") == "Bearer team" && i >= 20 {
					id = fmt.Sprintf("/secret/app-%02d", i)
				}
				fmt.Fprintf(&b, `{"id":%q,"instances":3,"cpus":0.1,"mem":16,"tasksRunning":%d,"deployments":[]}`, id, running.Load())
			}
			b.WriteString(`]}`)
			_, _ = w.Write([]byte(b.String()))
		case "/v2/queue":
			if delayed.Load() {
				_, _ = w.Write([]byte(`{"queue":[{"app":{"id":"/g/app-00"},"count":1,"delay":{"timeLeftSeconds":30,"overdue":false}}]}`))
				return
			}
			_, _ = w.Write([]byte(`{"queue":[]}`))
		case "/v1/acl/token/self":
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})
	u, err := New(Config{API: api, Index: index.Load, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string, gz bool) (string, http.Header) {
		t.Helper()
		req := httptest.NewRequest("GET", "/ui/apps", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip, deflate, br")
		}
		if token != "" {
			req.AddCookie(&http.Cookie{Name: tokenCookie, Value: token})
		}
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("GET /ui/apps: %d %s", rec.Code, rec.Body)
		}
		body := rec.Body.Bytes()
		if rec.Header().Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		return string(body), rec.Header()
	}
	page, h := get("", true)
	if h.Get("Content-Encoding") != "gzip" || !strings.Contains(page, "3 / 3") || strings.Count(page, "<tr data-app=") != 40 {
		t.Fatalf("first page: encoding %q, %d rows", h.Get("Content-Encoding"), strings.Count(page, "<tr data-app="))
	}
	if _, h := get("", false); h.Get("Content-Encoding") != "" {
		t.Fatal("gzipped for a client that did not ask for it")
	}
	if calls.Load() != 1 {
		t.Fatalf("%d API listings for two views at one index, want 1", calls.Load())
	}
	// Another token has its own view: it never sees the first one's.
	if team, _ := get("team", false); !strings.Contains(team, "/secret/app-20") || calls.Load() != 2 {
		t.Fatalf("the team token's page (%d listings): has its own apps %v", calls.Load(), strings.Contains(team, "/secret/app-20"))
	}
	if open, _ := get("", false); strings.Contains(open, "/secret/") {
		t.Fatal("a token's kept page was shown to another")
	}
	// A change: the index moves, the page shows it.
	running.Store(2)
	if page, _ := get("", false); !strings.Contains(page, "3 / 3") {
		t.Fatal("the kept page changed before the index moved")
	}
	index.Add(1)
	if page, _ := get("", false); !strings.Contains(page, "2 / 3") || strings.Contains(page, "3 / 3") {
		t.Fatal("the page does not show the change after the index moved")
	}
	// A live refresh gets the kept <main> alone.
	req := httptest.NewRequest("GET", "/ui/apps", nil)
	req.Header.Set("X-Weft-Partial", "1")
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, req)
	if b := rec.Body.String(); rec.Code != 200 || strings.Contains(b, "<html") || !strings.Contains(b, "2 / 3") {
		t.Fatalf("partial: %d %.200s", rec.Code, b)
	}
	// A Delayed app: kept for at most a second.
	delayed.Store(true)
	index.Add(1)
	if page, _ := get("", false); !strings.Contains(page, `class="st delayed"`) {
		t.Fatal("no Delayed app")
	}
	n := calls.Load()
	delayed.Store(false)
	get("", false)
	if calls.Load() != n {
		t.Fatal("a view with a Delayed app was not kept within its second")
	}
	now = now.Add(1100 * time.Millisecond)
	if page, _ := get("", false); strings.Contains(page, `class="st delayed"`) || calls.Load() != n+1 {
		t.Fatal("a view with a Delayed app was kept past its second")
	}
}
