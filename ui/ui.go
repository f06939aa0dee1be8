package ui

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

//go:embed assets
var assets embed.FS

// Config says where the UI finds the API and the nodes.
type Config struct {
	// API is the master's HTTP API handler. Every page calls it in-process
	// with the user's token, so ACL filtering is the API's own.
	API http.Handler
	// AgentClient reaches a node's agent API (task logs, mesh status) at
	// the host:port the node advertises. nil: a plain client with a short
	// timeout. The cmd wiring passes the cluster's TLS client when there is
	// one.
	AgentClient *http.Client
	// AgentScheme is "http" or "https" for AgentClient; default "http".
	AgentScheme string
	// LocalMesh, when set, returns this node's own mesh status as JSON
	// (a master-only node has no agent API to ask).
	LocalMesh func() any
	// LocalNode is this node's name, to pair LocalMesh with its row.
	LocalNode string
	Logger    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Index, when set, is the master's store index. The apps page then
	// keeps its rows and its rendered <main> per index and token, and asks
	// the API again only once the index moved (or, while an app is
	// Delayed, whose status changes with time alone, after a second).
	Index func() uint64
	// Changes, when set with Index, is the master's change feed
	// (sched.Master.Changes): what changed in the store after an index.
	// The apps page then reads again only the apps a change touched (with
	// the user's token, through API), not every app. Only app ids are
	// taken from it.
	Changes func(after uint64) api.Changes
}

// UI serves /ui/.
type UI struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	files http.Handler

	track   tracker // which apps each store change touched (Config.Changes)
	viewsMu sync.Mutex
	views   map[string]*tokenView // the apps page by token, with Config.Index
}

// New parses the templates; it fails only on a broken build.
func New(cfg Config) (*UI, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("ui: no API handler")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.AgentClient == nil {
		cfg.AgentClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.AgentScheme == "" {
		cfg.AgentScheme = "http"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u := &UI{cfg: cfg, log: cfg.Logger.With("component", "ui"), pages: map[string]*template.Template{}}
	names, err := fs.Glob(assets, "assets/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "assets/"), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/parts.html", n)
		if err != nil {
			return nil, fmt.Errorf("ui: parsing %s: %w", n, err)
		}
		u.pages[base] = t
	}
	static, _ := fs.Sub(assets, "assets")
	u.files = http.StripPrefix("/ui/static/", http.FileServerFS(static))
	return u, nil
}

// Mount adds the UI to mux: /ui/ and / (a redirect to /ui/).
func (u *UI) Mount(mux *http.ServeMux) {
	mux.Handle("/ui/", u)
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusFound))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
}

// session is what one request knows about its user.
type session struct {
	Token string // the ACL token, "" in open mode
	CSRF  string
	Name  string // the token's name, "" in open mode
	ACL   bool   // ACLs are on (a token is needed)
	rules *rules
	tls   bool
}

const (
	tokenCookie = "weft_token"
	csrfCookie  = "weft_csrf"
)

// ServeHTTP routes /ui/...
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/ui")
	if strings.HasPrefix(path, "/static/") {
		cc := "public, max-age=300"
		if v := r.URL.Query().Get("v"); v != "" && v == assetVersions()[strings.TrimPrefix(path, "/static/")] {
			cc = "public, max-age=31536000, immutable" // the address changes with the content
		}
		w.Header().Set("Cache-Control", cc)
		u.files.ServeHTTP(w, r)
		return
	}
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Cache-Control", "no-store")
	s := u.session(w, r)
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			u.fail(w, r, s, http.StatusBadRequest, "reading the form: "+err.Error())
			return
		}
		got := r.PostFormValue("csrf")
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) != 1 {
			u.fail(w, r, s, http.StatusForbidden, "this form is stale or came from another site (CSRF check failed): reload the page and try again")
			return
		}
	}
	switch {
	case path == "/login":
		u.login(w, r, s)
		return
	case path == "/logout" && r.Method == http.MethodPost:
		http.SetCookie(w, u.cookie(s, tokenCookie, "", -1))
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	if s.ACL && s.Name == "" {
		if path == "/events" {
			http.Error(w, "login needed", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	u.route(w, r, s, path)
}

func (u *UI) route(w http.ResponseWriter, r *http.Request, s *session, path string) {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case path == "/" || path == "":
		http.Redirect(w, r, "/ui/apps", http.StatusFound)
	case path == "/events" && get:
		u.events(w, r, s)
	case path == "/apps" && get:
		u.appsPage(w, r, s)
	case path == "/new" && (get || post):
		u.editPage(w, r, s, "")
	case strings.HasPrefix(path, "/app/"):
		u.appRoutes(w, r, s, strings.TrimPrefix(path, "/app"))
	case strings.HasPrefix(path, "/logs/") && get:
		u.logsPage(w, r, s, strings.TrimPrefix(path, "/logs/"))
	case strings.HasPrefix(path, "/logdata/") && get:
		u.logData(w, r, s, strings.TrimPrefix(path, "/logdata/"))
	case path == "/jobs" && get:
		u.jobsPage(w, r, s)
	case path == "/graph.svg" && get:
		u.graphSVG(w, r, s)
	case strings.HasPrefix(path, "/job/") && get:
		u.jobPage(w, r, s, strings.TrimPrefix(path, "/job/"))
	case strings.HasPrefix(path, "/job/") && post:
		u.jobAction(w, r, s, strings.TrimPrefix(path, "/job/"))
	case path == "/nodes" && get:
		u.nodesPage(w, r, s)
	case path == "/mesh" && get:
		u.meshPage(w, r, s)
	default:
		u.fail(w, r, s, http.StatusNotFound, "no such page: "+r.Method+" "+r.URL.Path)
	}
}

// session reads the user's cookies and asks the API who the token is.
func (u *UI) session(w http.ResponseWriter, r *http.Request) *session {
	s := &session{tls: r.TLS != nil}
	if c, err := r.Cookie(tokenCookie); err == nil {
		s.Token = c.Value
	}
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 64 {
		s.CSRF = c.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		s.CSRF = hex.EncodeToString(b)
		http.SetCookie(w, u.cookie(s, csrfCookie, s.CSRF, 0))
	}
	u.whoami(r.Context(), s)
	return s
}

// whoami fills in the token's name and rules from GET /v1/acl/token/self.
// 404 (a master without ACL support) and an open cluster mean open mode;
// 401 or 403 mean a login is needed.
func (u *UI) whoami(ctx context.Context, s *session) {
	code, body := u.call(ctx, s, http.MethodGet, "/v1/acl/token/self", nil)
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		s.ACL, s.Name = true, ""
	case code == http.StatusOK:
		if self, ok := decodeSelf(body); ok && !self.Open {
			s.Name = self.Name
			s.rules = parseRules(self)
			s.ACL = true
		}
	}
}

func (u *UI) cookie(s *session, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/ui", MaxAge: maxAge, HttpOnly: true, Secure: s.tls, SameSite: http.SameSiteStrictMode}
}

// login shows the token form (GET) or checks a token and keeps it (POST).
func (u *UI) login(w http.ResponseWriter, r *http.Request, s *session) {
	next := r.FormValue("next")
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") {
		next = "/ui/apps"
	}
	data := map[string]any{"Next": next}
	if r.Method == http.MethodPost {
		try := &session{Token: strings.TrimSpace(r.PostFormValue("token")), CSRF: s.CSRF, tls: s.tls}
		u.whoami(r.Context(), try)
		if try.Token != "" && try.Name != "" {
			http.SetCookie(w, u.cookie(s, tokenCookie, try.Token, 0))
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		data["Error"] = "that token was not accepted"
		w = withCode(w, http.StatusUnauthorized)
	}
	u.render(w, r, s, "login", "Log in", data)
}

// call runs one API request in-process with the session's token.
func (u *UI) call(ctx context.Context, s *session, method, path string, body []byte) (int, []byte) {
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return http.StatusBadRequest, []byte(`{"message":"bad request path"}`)
	}
	req.RemoteAddr = "127.0.0.1:0"
	req.Host = "weft-ui"
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	rec := &recorder{h: http.Header{}}
	u.cfg.API.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return rec.code, rec.buf.Bytes()
}

// getJSON calls GET path and decodes a 200 answer into out.
func (u *UI) getJSON(ctx context.Context, s *session, path string, out any) error {
	code, body := u.call(ctx, s, http.MethodGet, path, nil)
	if code != http.StatusOK {
		return apiErr(path, code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// httpError is an API answer other than 200, carrying Marathon's message.
type httpError struct {
	Code int
	Body api.ErrorBody
}

func (e *httpError) Error() string {
	if e.Body.Message != "" {
		return fmt.Sprintf("%d: %s", e.Code, e.Body.Message)
	}
	return fmt.Sprintf("the API answered %d", e.Code)
}

func apiErr(path string, code int, body []byte) error {
	e := &httpError{Code: code}
	_ = json.Unmarshal(body, &e.Body)
	if e.Body.Message == "" {
		e.Body.Message = strings.TrimSpace(string(body))
	}
	_ = path
	return e
}

// recorder is a ResponseWriter that keeps the answer.
type recorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(c int) {
	if r.code == 0 {
		r.code = c
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.buf.Write(b)
}

// events relays /v2/events with the user's token: EventSource cannot set
// headers, and the cookie is HttpOnly.
func (u *UI) events(w http.ResponseWriter, r *http.Request, s *session) {
	r2 := r.Clone(r.Context())
	r2.URL = &url.URL{Path: "/v2/events", RawQuery: r.URL.RawQuery}
	r2.RequestURI = ""
	r2.Header = http.Header{"Accept": {"text/event-stream"}}
	if s.Token != "" {
		r2.Header.Set("Authorization", "Bearer "+s.Token)
	}
	u.cfg.API.ServeHTTP(w, r2)
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	S       *session
	Data    any
	Partial bool
	Main    template.HTML // the <main> already rendered (renderWith)
}

// render writes a page, or only its <main> when the live-update script
// asks for it (X-Weft-Partial).
func (u *UI) render(w http.ResponseWriter, r *http.Request, s *session, name, title string, data any) {
	t := u.pages[name]
	if t == nil {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	p := page{Title: title, Nav: name, S: s, Data: data, Partial: r.Header.Get("X-Weft-Partial") != ""}
	var buf bytes.Buffer
	tmpl := "layout.html"
	if p.Partial {
		tmpl = "main"
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		u.log.Error("rendering", "page", name, "err", err)
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeHTML(w, r, buf.Bytes())
}

// renderMain executes page name's "main" template alone (what a live
// refresh asks for, and what the apps page keeps).
func (u *UI) renderMain(s *session, name, title string, data any) ([]byte, error) {
	t := u.pages[name]
	if t == nil {
		return nil, fmt.Errorf("no template %s", name)
	}
	var buf bytes.Buffer
	err := t.ExecuteTemplate(&buf, "main", page{Title: title, Nav: name, S: s, Data: data, Partial: true})
	return buf.Bytes(), err
}

// renderWith writes page name around an already rendered <main>, or only
// that <main> for a live refresh.
func (u *UI) renderWith(w http.ResponseWriter, r *http.Request, s *session, name, title string, main []byte) {
	if r.Header.Get("X-Weft-Partial") != "" {
		writeHTML(w, r, main)
		return
	}
	var buf bytes.Buffer
	buf.Grow(len(main) + 4096)
	p := page{Title: title, Nav: name, S: s, Main: template.HTML(main)}
	if err := u.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		u.log.Error("rendering", "page", name, "err", err)
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeHTML(w, r, buf.Bytes())
}

// gzips are gzip writers at BestSpeed: a page of a thousand apps is
// ~300 KB of HTML and ~30 KB compressed, in about a millisecond.
var gzips = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return w }}

// writeHTML writes an HTML answer, gzipped when the browser accepts it and
// the page is large enough to gain from it.
func writeHTML(w http.ResponseWriter, r *http.Request, b []byte) {
	writeBody(w, r, "text/html; charset=utf-8", b)
}

// writeBody writes an answer of type ctype, gzipped as writeHTML says.
func writeBody(w http.ResponseWriter, r *http.Request, ctype string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Add("Vary", "Accept-Encoding")
	if len(b) < 2048 || !acceptsGzip(r) {
		h.Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
		return
	}
	h.Set("Content-Encoding", "gzip")
	zw := gzips.Get().(*gzip.Writer)
	zw.Reset(w)
	_, _ = zw.Write(b)
	_ = zw.Close()
	zw.Reset(io.Discard)
	gzips.Put(zw)
}

func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, q, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// fail shows an error page with the API's message.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	u.render(withCode(w, code), r, s, "error", "Error", map[string]any{"Code": code, "Message": msg})
}

// coded answers with its status code at the first write, so that the
// headers writeHTML sets (gzip) go out with it.
type coded struct {
	http.ResponseWriter
	code int
	sent bool
}

func withCode(w http.ResponseWriter, code int) http.ResponseWriter {
	return &coded{ResponseWriter: w, code: code}
}

func (c *coded) WriteHeader(code int) {
	if !c.sent {
		c.code = code
	}
}

func (c *coded) Write(b []byte) (int, error) {
	if !c.sent {
		c.sent = true
		c.ResponseWriter.WriteHeader(c.code)
	}
	return c.ResponseWriter.Write(b)
}

// failErr shows err, keeping the API's status code.
func (u *UI) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := http.StatusBadGateway
	if he, ok := err.(*httpError); ok {
		code = he.Code
	}
	u.fail(w, r, s, code, err.Error())
}
