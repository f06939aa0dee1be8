package ui

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestAppStatus(t *testing.T) {
	cases := []struct {
		name string
		app  listApp
		q    *queueEntry
		want string
	}{
		{"running", listApp{Instances: 2, TasksRunning: 2}, nil, StatusRunning},
		{"deploying wins", listApp{Instances: 0, Deployments: []api.DeploymentRef{{ID: "d"}}}, &queueEntry{Count: 1}, StatusDeploying},
		{"suspended", listApp{Instances: 0}, nil, StatusSuspended},
		{"scaled to 0, still stopping", listApp{Instances: 0, TasksRunning: 1}, nil, StatusRunning},
		{"delayed", listApp{Instances: 1}, &queueEntry{Count: 1, Delay: api.QueueDelay{TimeLeftSeconds: 3}}, StatusDelayed},
		{"overdue delay is waiting", listApp{Instances: 1}, &queueEntry{Count: 1, Delay: api.QueueDelay{TimeLeftSeconds: 3, Overdue: true}}, StatusWaiting},
		{"waiting", listApp{Instances: 3, TasksRunning: 2}, &queueEntry{Count: 1}, StatusWaiting},
	}
	for _, c := range cases {
		if got := appStatus(&c.app, c.q); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestHealthBar(t *testing.T) {
	b := healthBar(4, 1, 3, 2, 1, true)
	if b.Healthy != 50 || b.Unhealthy != 25 || b.Staged != 25 || b.Missing != 0 || b.Running != 0 {
		t.Fatalf("bar %+v", b)
	}
	if b.Title != "2 healthy, 1 unhealthy, 1 staging" {
		t.Fatalf("title %q", b.Title)
	}
	// Without health checks, running tasks are neither healthy nor not.
	b = healthBar(2, 0, 1, 0, 0, false)
	if b.Running != 50 || b.Missing != 50 || b.Healthy != 0 {
		t.Fatalf("bar %+v", b)
	}
}

func TestAnnotatePutsErrorsBesideTheirField(t *testing.T) {
	raw := `{"id":"/a","cpus":-1,"portDefinitions":[{"port":1},{"port":99999}],"nested":{"x":1}}`
	lines, other := annotate([]byte(raw), []api.ErrorDetail{
		{Path: "/cpus", Errors: []string{"got -1.0, expected 0.0 or more"}},
		{Path: "/portDefinitions(1)/port", Errors: []string{"too big"}},
		{Path: "/nested/missing", Errors: []string{"is required"}},
		{Path: "/container/docker/image", Errors: []string{"needs an image"}},
	})
	got := map[string]string{}
	for _, l := range lines {
		if len(l.Errors) > 0 {
			got[strings.TrimSpace(l.Text)] = strings.Join(l.Errors, ";")
		}
	}
	want := map[string]string{
		`"cpus": -1,`:   "got -1.0, expected 0.0 or more",
		`"port": 99999`: "too big",
		`"nested": {`:   "is required", // a missing field goes to its parent
	}
	if len(got) != len(want) {
		t.Fatalf("annotated %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("line %s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(other) != 1 || other[0].Path != "/container/docker/image" {
		t.Fatalf("other: %v", other)
	}
	// Broken JSON: everything is "other".
	if lines, other := annotate([]byte(`{"id":`), []api.ErrorDetail{{Path: "/", Errors: []string{"bad"}}}); lines != nil || len(other) != 1 {
		t.Fatalf("broken JSON: %v %v", lines, other)
	}
}

func TestScheduleWords(t *testing.T) {
	now := time.Date(2026, 12, 3, 16, 20, 0, 0, time.UTC)
	cases := []struct {
		sched, words, next string
	}{
		{"R/2026-01-01T00:00:00Z/PT1H", "every hour, from 2026-01-01 00:00 UTC", "2026-12-03T17:00:00Z"},
		{"R/2026-12-03T16:00:00Z/PT15M", "every 15 minutes, from 2026-12-03 16:00 UTC", "2026-12-03T16:30:00Z"},
		{"R3/2026-12-01T00:00:00Z/P1D", "every day, 3 more time(s), from 2026-12-01 00:00 UTC", "2026-12-04T00:00:00Z"},
		{"R2/2026-12-01T00:00:00Z/P1D", "every day, 2 more time(s), from 2026-12-01 00:00 UTC", ""},
		{"R/2027-01-01T00:00:00Z/P1M", "every month, from 2027-01-01 00:00 UTC", "2027-01-01T00:00:00Z"},
		{"R0/2026-12-01T00:00:00Z/PT1H", "once, at 2026-12-01 00:00 UTC", ""},
		{"nonsense", "nonsense", ""},
	}
	for _, c := range cases {
		words, next := scheduleWords(c.sched, now)
		gotNext := ""
		if !next.IsZero() {
			gotNext = next.UTC().Format(time.RFC3339)
		}
		if words != c.words || gotNext != c.next {
			t.Errorf("%s: %q next %q, want %q next %q", c.sched, words, gotNext, c.words, c.next)
		}
	}
}

func TestLineDiff(t *testing.T) {
	d := lineDiff([]string{"a", "b", "c"}, []string{"a", "x", "c", "d"})
	var got []string
	for _, l := range d {
		got = append(got, l.Op+l.Text)
	}
	if strings.Join(got, " ") != " a -b +x  c +d" {
		t.Fatalf("diff %q", got)
	}
}

func TestJobGraphSVG(t *testing.T) {
	svg := jobGraphSVG([]api.Job{{Name: "a"}, {Name: "b", Parents: []string{"a"}}, {Name: "c", Parents: []string{"a", "b"}}, {Name: "loop", Parents: []string{"loop"}}})
	for _, want := range []string{`data-from="a" data-to="b"`, `data-from="a" data-to="c"`, `data-from="b" data-to="c"`, `data-job="loop"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %s", want)
		}
	}
}

// fakeAPI answers like a master with ACLs on: only token "s3cret"
// (alice) may read; it records the Authorization headers it saw.
type fakeAPI struct {
	mu   sync.Mutex
	auth []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth = append(f.auth, r.URL.Path+" "+r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer s3cret" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"a token is needed"}`))
		return
	}
	switch r.URL.Path {
	case "/v1/acl/token/self":
		_, _ = w.Write([]byte(`{"name":"alice","management":false,"policies":["team-a","all-read"],"rules":[{"apps":{"/team-a/*":"write"}},{"apps":{"/*":"read","/team-a/db":"read"}}]}`))
	case "/v2/apps":
		_, _ = w.Write([]byte(`{"apps":[{"id":"/team-a/web","instances":1,"tasksRunning":1},{"id":"/other/db","instances":0}]}`))
	case "/v2/queue":
		_, _ = w.Write([]byte(`{"queue":[]}`))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"no such path"}`))
	}
}

func TestLoginCookieAndCSRF(t *testing.T) {
	fake := &fakeAPI{}
	u, err := New(Config{API: fake})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	u.Mount(mux)
	do := func(method, target string, form url.Values, cookies []*http.Cookie, tlsOn bool) *http.Response {
		var req *http.Request
		if form != nil {
			req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req = httptest.NewRequest(method, target, nil)
		}
		if tlsOn {
			req.TLS = &tls.ConnectionState{}
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Result()
	}

	// No token: to the login page, keeping where the user was going.
	resp := do("GET", "/ui/apps?status=Running", nil, nil, false)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next="+url.QueryEscape("/ui/apps?status=Running") {
		t.Fatalf("no token: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var csrf *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie {
			csrf = c
		}
	}
	if csrf == nil || !csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode {
		t.Fatalf("csrf cookie %+v", csrf)
	}

	// A login without the CSRF field is refused, whatever the token.
	resp = do("POST", "/ui/login", url.Values{"token": {"s3cret"}}, []*http.Cookie{csrf}, false)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login without csrf: %d", resp.StatusCode)
	}
	// A wrong token is refused.
	resp = do("POST", "/ui/login", url.Values{"token": {"nope"}, "csrf": {csrf.Value}}, []*http.Cookie{csrf}, false)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	// The right one is kept in an HttpOnly, SameSite=Strict cookie; Secure
	// under TLS.
	resp = do("POST", "/ui/login", url.Values{"token": {"s3cret"}, "csrf": {csrf.Value}, "next": {"/ui/apps?status=Running"}}, []*http.Cookie{csrf}, true)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/apps?status=Running" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var tok *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == tokenCookie {
			tok = c
		}
	}
	if tok == nil || tok.Value != "s3cret" || !tok.HttpOnly || !tok.Secure || tok.SameSite != http.SameSiteStrictMode {
		t.Fatalf("token cookie %+v", tok)
	}
	// A next that leaves the UI is not followed.
	resp = do("POST", "/ui/login", url.Values{"token": {"s3cret"}, "csrf": {csrf.Value}, "next": {"//evil.example/"}}, []*http.Cookie{csrf}, false)
	if resp.Header.Get("Location") != "/ui/apps" {
		t.Fatalf("open redirect to %q", resp.Header.Get("Location"))
	}

	// With the cookie, pages are rendered with the token as Bearer, and
	// actions are hidden where the token may not write.
	resp = do("GET", "/ui/apps", nil, []*http.Cookie{csrf, tok}, false)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("apps with token: %d", resp.StatusCode)
	}
	fake.mu.Lock()
	saw := strings.Join(fake.auth, "\n")
	fake.mu.Unlock()
	if !strings.Contains(saw, "/v2/apps Bearer s3cret") {
		t.Fatalf("the API was not called with the token:\n%s", saw)
	}
	self, _ := decodeSelf([]byte(`{"name":"alice","rules":[{"apps":{"/team-a/*":"write"},"jobs":{"etl-*":"write"}},{"apps":{"/*":"read","/team-a/db":"read"}}]}`))
	rs := parseRules(self)
	for id, want := range map[string]bool{"/team-a/web": true, "/team-a": true, "/team-a/db": false, "/other/db": false, "/team-ab": false} {
		if rs.canWriteApp(id) != want {
			t.Errorf("canWriteApp(%s) = %v", id, !want)
		}
	}
	if !rs.canWriteJob("etl-load") || rs.canWriteJob("other") {
		t.Errorf("job rules %+v", rs.jobs)
	}
	if parseRules(tokenSelf{Open: true}) != nil || parseRules(tokenSelf{Management: true}) != nil {
		t.Error("open or management tokens must allow everything")
	}
	// A form posted without the CSRF field is refused before the API is
	// called.
	resp = do("POST", "/ui/app/team-a/web", url.Values{"action": {"delete"}, "confirm": {"yes"}}, []*http.Cookie{csrf, tok}, false)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("action without csrf: %d", resp.StatusCode)
	}
}

// The page loads its script async (DOMContentLoaded waits for neither it
// nor the stylesheet) from addresses that carry the files' content hash;
// those the browser may keep for long, the bare ones for a few minutes.
func TestPageAssetsHashedAndAsync(t *testing.T) {
	u, err := New(Config{API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/apps":
			_, _ = w.Write([]byte(`{"apps":[]}`))
		case "/v2/queue":
			_, _ = w.Write([]byte(`{"queue":[]}`))
		default:
			w.WriteHeader(404)
		}
	})})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/apps", nil))
	page := rec.Body.String()
	js, css := assetURL("ui.js"), assetURL("ui.css")
	if !strings.Contains(js, "?v=") || !strings.Contains(css, "?v=") || js[strings.Index(js, "?"):] == css[strings.Index(css, "?"):] {
		t.Fatalf("asset addresses %q %q, want each with its own content hash", js, css)
	}
	if !strings.Contains(page, `<script src="`+strings.ReplaceAll(js, "&", "&amp;")+`" async></script>`) || !strings.Contains(page, `href="`+css+`"`) {
		t.Fatalf("the page does not load %s async and %s:\n%.600s", js, css, page)
	}
	for _, c := range []struct{ url, cache string }{
		{js, "public, max-age=31536000, immutable"},
		{css, "public, max-age=31536000, immutable"},
		{"/ui/static/ui.js", "public, max-age=300"},
		{"/ui/static/ui.js?v=0123", "public, max-age=300"},
	} {
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, httptest.NewRequest("GET", c.url, nil))
		if rec.Code != 200 || rec.Header().Get("Cache-Control") != c.cache {
			t.Errorf("GET %s: %d, Cache-Control %q, want 200 and %q", c.url, rec.Code, rec.Header().Get("Cache-Control"), c.cache)
		}
	}
	rec = httptest.NewRecorder()
	u.ServeHTTP(rec, httptest.NewRequest("GET", js, nil))
	if body := rec.Body.String(); !strings.Contains(body, `document.readyState === "loading"`) {
		t.Errorf("ui.js does not wait for the document when it runs before it is parsed")
	}
}
