package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to a weft master over HTTP. Everything outside sched uses it.
type Client struct {
	// Base is the master's API URL, e.g. http://127.0.0.1:8080.
	Base string
	// HTTP is used for ordinary calls; nil uses a client with a 30 s timeout.
	HTTP *http.Client
	// Stream is used for long polls and event streams; nil uses one with no timeout.
	Stream *http.Client
	// Token is the ACL token's secret sent as "Authorization: Bearer"
	// (`--api-token`, WEFT_API_TOKEN); empty sends none.
	Token string
}

// NewClient returns a client for base ("host:port" or a URL).
func NewClient(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/")}
}

// Error is a non-2xx answer from the master.
type Error struct {
	Status int
	Body   ErrorBody
	Raw    []byte
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
	if e, ok := err.(*Error); ok {
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

func (c *Client) do(ctx context.Context, stream bool, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		if r, ok := in.(io.Reader); ok {
			body = r
		} else {
			b, err := json.Marshal(in)
			if err != nil {
				return nil, err
			}
			body = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	resp, err := c.httpClient(stream).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, c.Base+path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.Header, fmt.Errorf("%s %s: reading answer: %w", method, c.Base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, Raw: raw}
		_ = json.Unmarshal(raw, &e.Body)
		return resp.Header, e
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: decoding answer: %w", method, c.Base+path, err)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v2/events?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	c.authorize(req)
	resp, err := c.httpClient(true).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /v2/events: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, &Error{Status: resp.StatusCode, Raw: raw}
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
