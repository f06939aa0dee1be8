package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client talks to weft's masters over HTTP. Everything outside sched uses
// it.
//
// With several masters (Bases) a call that finds no usable answer moves on
// to the next: a connection that cannot be made, or a 503 that says the
// request was not carried out (Retry-After), is retried on the next master
// for every call. A broken connection, a timeout, a 502 or a 503 without
// Retry-After may come after the master acted, so only idempotent calls are
// retried then: GET, HEAD, PUT (a definition replaces what is there),
// DELETE (a second one answers 404) and any request that carries an
// Idempotency-Key header. Every POST gets a fresh Idempotency-Key unless the
// context gives one (WithIdempotencyKey); the leader remembers the answer to
// a key for ten minutes and replays it for a repeat instead of acting twice.
// Calls keep trying for up to RetryFor, going round the masters with a
// short pause once each has failed.
type Client struct {
	// Base is the first master's API URL, e.g. http://127.0.0.1:8080.
	Base string
	// Bases are every master's API URL, Base first. Empty means Base alone.
	Bases []string
	// HTTP is used for ordinary calls; nil uses a client with a 30 s timeout.
	HTTP *http.Client
	// Stream is used for long polls and event streams; nil uses one with no timeout.
	Stream *http.Client
	// Token is the ACL token's secret sent as "Authorization: Bearer"
	// (`--api-token`, WEFT_API_TOKEN); empty sends none.
	Token string
	// RetryFor bounds how long a call keeps trying masters (default 15 s);
	// negative sends each call once, to one master.
	RetryFor time.Duration

	mu  sync.Mutex
	cur int // index in Bases of the master that answered last
}

// NewClient returns a client for one master or several: base is
// "host:port" or a URL, or several of them separated by commas (as
// WEFT_API gives them).
func NewClient(base string) *Client {
	return NewClientOf(strings.Split(base, ",")...)
}

// NewClientOf returns a client for the given masters, tried in turn.
func NewClientOf(bases ...string) *Client {
	var out []string
	for _, b := range bases {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if !strings.Contains(b, "://") {
			b = "http://" + b
		}
		out = append(out, strings.TrimRight(b, "/"))
	}
	c := &Client{Bases: out}
	if len(out) > 0 {
		c.Base = out[0]
	}
	return c
}

// IdempotencyHeader is the request header that makes a write safe to
// retry: the leader replays its first answer to a repeated key.
const IdempotencyHeader = "Idempotency-Key"

type idemKey struct{}

// WithIdempotencyKey makes the calls under ctx carry key as their
// Idempotency-Key (instead of a fresh one per POST), so that a caller that
// retries on its own, or resends after a crash, is not served twice.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

// NewIdempotencyKey returns a random key.
func NewIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Error is a non-2xx answer from the master.
type Error struct {
	Status int
	Body   ErrorBody
	Raw    []byte
	// RetryAfter is the answer's Retry-After header: set on a 503 when
	// the request was not carried out (no leader), so it may be sent again.
	RetryAfter string
}

func (e *Error) Error() string {
	msg := e.Body.Message
	if msg == "" {
		msg = strings.TrimSpace(string(e.Raw))
	}
	for _, d := range e.Body.Details {
		msg += fmt.Sprintf("; %s: %s", d.Path, strings.Join(d.Errors, ", "))
	}
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), msg)
}

// StatusCode returns the HTTP status of err if it is an *Error, else 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func (c *Client) httpClient(stream bool) *http.Client {
	if stream {
		if c.Stream != nil {
			return c.Stream
		}
		return http.DefaultClient
	}
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (if non-nil). It returns the response headers.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	return c.do(ctx, false, method, path, in, out)
}

// Idempotent reports whether a request with this method may be sent twice
// with the effect of once (and so is retried on another master after a
// failure that may have come after the master acted).
func Idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// bases returns the masters to try, starting with the one that answered
// last.
func (c *Client) bases() []string {
	all := c.Bases
	if len(all) == 0 {
		all = []string{c.Base}
	}
	c.mu.Lock()
	cur := c.cur % len(all)
	c.mu.Unlock()
	out := make([]string, 0, len(all))
	out = append(out, all[cur:]...)
	return append(out, all[:cur]...)
}

// prefer remembers the master that answered.
func (c *Client) prefer(base string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.Bases {
		if b == base {
			c.cur = i
		}
	}
}

// retryPause is the pause before going round the masters once more.
func retryPause(round int, e *Error) time.Duration {
	d := time.Duration(50<<min(round, 4)) * time.Millisecond // 50 ms .. 800 ms
	if e != nil && e.RetryAfter != "" {
		// The master says it did not act and a leader is being elected
		// (raft's lan profile takes well under a second): ask again soon.
		d = min(d, 100*time.Millisecond)
	}
	return d
}

func (c *Client) do(ctx context.Context, stream bool, method, path string, in, out any) (http.Header, error) {
	var body []byte
	if in != nil {
		switch v := in.(type) {
		case []byte:
			body = v
		case io.Reader:
			b, err := io.ReadAll(v)
			if err != nil {
				return nil, fmt.Errorf("%s %s: reading the request body: %w", method, path, err)
			}
			body = b
		default:
			b, err := json.Marshal(in)
			if err != nil {
				return nil, err
			}
			body = b
		}
	}
	key, _ := ctx.Value(idemKey{}).(string)
	if key == "" && method == http.MethodPost {
		key = NewIdempotencyKey()
	}
	retryable := Idempotent(method) || key != ""
	var deadline time.Time
	// Long polls (Watch, Assignments) go round the masters once: their
	// callers loop, and keep their own count of failures.
	if c.RetryFor >= 0 && !stream {
		retry := c.RetryFor
		if retry == 0 {
			retry = 15 * time.Second
		}
		deadline = time.Now().Add(retry)
	}
	var lastErr error
	for round := 0; ; round++ {
		for _, base := range c.bases() {
			h, err := c.once(ctx, stream, base, method, path, in != nil, body, key, out)
			if err == nil {
				c.prefer(base)
				return h, nil
			}
			lastErr = err
			if ctx.Err() != nil || (deadline.IsZero() && !stream) || !mayRetry(err, retryable) {
				return h, err
			}
		}
		if deadline.IsZero() {
			return nil, lastErr
		}
		var e *Error
		errors.As(lastErr, &e)
		pause := retryPause(round, e)
		if time.Now().Add(pause).After(deadline) {
			return nil, lastErr
		}
		select {
		case <-ctx.Done():
			return nil, lastErr
		case <-time.After(pause):
		}
	}
}

// mayRetry reports whether err leaves the call to be sent again (to
// another master).
func mayRetry(err error, retryable bool) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusServiceUnavailable:
			return retryable || e.RetryAfter != ""
		case http.StatusBadGateway, http.StatusGatewayTimeout:
			return retryable
		}
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // the request never left
	}
	return retryable
}

// once sends the request to one master.
func (c *Client) once(ctx context.Context, stream bool, base, method, path string, hasBody bool, body []byte, key string, out any) (http.Header, error) {
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	if key != "" {
		req.Header.Set(IdempotencyHeader, key)
	}
	resp, err := c.httpClient(stream).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, base+path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.Header, fmt.Errorf("%s %s: reading answer: %w", method, base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, Raw: raw, RetryAfter: resp.Header.Get("Retry-After")}
		_ = json.Unmarshal(raw, &e.Body)
		return resp.Header, e
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: decoding answer: %w", method, base+path, err)
		}
	}
	return resp.Header, nil
}

// Watch blocks until the master's state index is above after (or about
// wait has passed), then returns the whole state. It is the blocking query
// dns, lb and the CLI build on: GET /v1/state?index=N&wait=30s.
func (c *Client) Watch(ctx context.Context, after uint64, wait time.Duration) (*State, error) {
	var st State
	q := url.Values{"index": {strconv.FormatUint(after, 10)}, "wait": {wait.String()}}
	_, err := c.do(ctx, true, http.MethodGet, "/v1/state?"+q.Encode(), nil, &st)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Assignments is an agent's blocking query for its tasks:
// GET /v1/agents/{id}/assignments?index=N&wait=30s.
func (c *Client) Assignments(ctx context.Context, agentID string, after uint64, wait time.Duration) (*Assignments, error) {
	var a Assignments
	q := url.Values{"index": {strconv.FormatUint(after, 10)}, "wait": {wait.String()}}
	_, err := c.do(ctx, true, http.MethodGet, "/v1/agents/"+url.PathEscape(agentID)+"/assignments?"+q.Encode(), nil, &a)
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// AssignmentChanges is the delta form of Assignments:
// GET /v1/agents/{id}/assignments?index=N&wait=30s&delta=true. Apply its
// answers to an AssignmentMirror.
func (c *Client) AssignmentChanges(ctx context.Context, agentID string, after uint64, wait time.Duration) (*Assignments, error) {
	var a Assignments
	q := url.Values{"index": {strconv.FormatUint(after, 10)}, "wait": {wait.String()}, "delta": {"true"}}
	_, err := c.do(ctx, true, http.MethodGet, "/v1/agents/"+url.PathEscape(agentID)+"/assignments?"+q.Encode(), nil, &a)
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// AgentStopping tells the master an agent is stopping on purpose and
// means to come back (its tasks keep running): PUT
// /v1/agents/{id}/stopping. The master then does not take the end of the
// agent's long poll for its death, and leaves it to gossip.
func (c *Client) AgentStopping(ctx context.Context, agentID string) error {
	_, err := c.do(ctx, false, http.MethodPut, "/v1/agents/"+url.PathEscape(agentID)+"/stopping", nil, nil)
	return err
}

// PostStatus reports task status updates: POST /v1/agents/{id}/status.
func (c *Client) PostStatus(ctx context.Context, agentID string, updates []TaskStatus) error {
	_, err := c.do(ctx, false, http.MethodPost, "/v1/agents/"+url.PathEscape(agentID)+"/status", updates, nil)
	return err
}

// Nodes lists the cluster's members: GET /v1/nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out struct {
		Nodes []Node `json:"nodes"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
	return out.Nodes, err
}

// Apps lists apps: GET /v2/apps?embed=...
func (c *Client) Apps(ctx context.Context, embed ...string) ([]AppInfo, error) {
	q := url.Values{}
	for _, e := range embed {
		q.Add("embed", e)
	}
	var out struct {
		Apps []AppInfo `json:"apps"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v2/apps?"+q.Encode(), nil, &out)
	return out.Apps, err
}

// App gets one app with its tasks: GET /v2/apps/{id}.
func (c *Client) App(ctx context.Context, id string) (*AppInfo, error) {
	var out struct {
		App AppInfo `json:"app"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v2/apps/"+strings.TrimPrefix(id, "/"), nil, &out)
	if err != nil {
		return nil, err
	}
	return &out.App, nil
}

// PutApp creates or replaces an app from its JSON definition:
// PUT /v2/apps/{id}. def may be an App, raw JSON bytes or a reader.
func (c *Client) PutApp(ctx context.Context, id string, def any, force bool) (*DeploymentResult, error) {
	if b, ok := def.([]byte); ok {
		def = bytes.NewReader(b)
	}
	var out DeploymentResult
	path := "/v2/apps/" + strings.TrimPrefix(id, "/")
	if force {
		path += "?force=true"
	}
	_, err := c.Do(ctx, http.MethodPut, path, def, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteApp removes an app: DELETE /v2/apps/{id}.
func (c *Client) DeleteApp(ctx context.Context, id string, force bool) (*DeploymentResult, error) {
	var out DeploymentResult
	path := "/v2/apps/" + strings.TrimPrefix(id, "/")
	if force {
		path += "?force=true"
	}
	_, err := c.Do(ctx, http.MethodDelete, path, nil, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Tasks lists every task: GET /v2/tasks.
func (c *Client) Tasks(ctx context.Context) ([]Task, error) {
	var out struct {
		Tasks []Task `json:"tasks"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v2/tasks", nil, &out)
	return out.Tasks, err
}

// Deployments lists running deployments: GET /v2/deployments.
func (c *Client) Deployments(ctx context.Context) ([]Deployment, error) {
	var out []Deployment
	_, err := c.Do(ctx, http.MethodGet, "/v2/deployments", nil, &out)
	return out, err
}

// Events streams /v2/events (Server-Sent Events) until ctx ends or the
// stream breaks; the channel is closed then. types filters by event_type.
func (c *Client) Events(ctx context.Context, types ...string) (<-chan Event, error) {
	q := url.Values{}
	for _, t := range types {
		q.Add("event_type", t)
	}
	var resp *http.Response
	var lastErr error
	for _, base := range c.bases() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/events?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "text/event-stream")
		c.authorize(req)
		r, err := c.httpClient(true).Do(req)
		if err != nil {
			lastErr = fmt.Errorf("GET /v2/events: %w", err)
			continue
		}
		if r.StatusCode != http.StatusOK {
			raw, _ := io.ReadAll(r.Body)
			r.Body.Close()
			lastErr = &Error{Status: r.StatusCode, Raw: raw, RetryAfter: r.Header.Get("Retry-After")}
			continue
		}
		c.prefer(base)
		resp = r
		break
	}
	if resp == nil {
		return nil, lastErr
	}
	ch := make(chan Event, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var typ string
		var data bytes.Buffer
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if typ != "" || data.Len() > 0 {
					ev := Event{Type: typ, Data: json.RawMessage(bytes.Clone(data.Bytes()))}
					if ev.Type == "" {
						var probe struct {
							EventType string `json:"eventType"`
						}
						_ = json.Unmarshal(ev.Data, &probe)
						ev.Type = probe.EventType
					}
					select {
					case ch <- ev:
					case <-ctx.Done():
						return
					}
				}
				typ = ""
				data.Reset()
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event:"):
				typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
	}()
	return ch, nil
}
