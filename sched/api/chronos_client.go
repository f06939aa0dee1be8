package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// ChronosBase is where the master serves the Chronos API (also at
// /scheduler for Chronos 2 clients).
const ChronosBase = "/v1/scheduler"

// JobSummary is an entry of GET /v1/scheduler/jobs/summary.
type JobSummary struct {
	Name     string   `json:"name"`
	Status   string   `json:"status"` // success, failure, fresh
	State    string   `json:"state"`  // idle, queued, "N running"
	Schedule string   `json:"schedule"`
	Parents  []string `json:"parents"`
	Disabled bool     `json:"disabled"`
}

// PutJob creates or replaces a job: POST /iso8601 for a scheduled job,
// POST /dependency for one with parents.
func (c *Client) PutJob(ctx context.Context, j *Job) error {
	path := ChronosBase + "/iso8601"
	if len(j.Parents) > 0 {
		path = ChronosBase + "/dependency"
	}
	_, err := c.Do(ctx, http.MethodPost, path, j, nil)
	return err
}

// PutJobJSON is PutJob for a definition as the user wrote it, so fields
// this client does not know (and Chronos's defaults for absent ones) are
// kept: parents decides the endpoint.
func (c *Client) PutJobJSON(ctx context.Context, raw []byte, dependent bool) error {
	path := ChronosBase + "/iso8601"
	if dependent {
		path = ChronosBase + "/dependency"
	}
	_, err := c.Do(ctx, http.MethodPost, path, strings.NewReader(string(raw)), nil)
	return err
}

// Jobs lists every job: GET /jobs.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	var out []Job
	_, err := c.Do(ctx, http.MethodGet, ChronosBase+"/jobs", nil, &out)
	return out, err
}

// Job returns one job: GET /job/{name}.
func (c *Client) Job(ctx context.Context, name string) (*Job, error) {
	var out Job
	if _, err := c.Do(ctx, http.MethodGet, ChronosBase+"/job/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// JobsSummary is GET /jobs/summary.
func (c *Client) JobsSummary(ctx context.Context) ([]JobSummary, error) {
	var out struct {
		Jobs []JobSummary `json:"jobs"`
	}
	_, err := c.Do(ctx, http.MethodGet, ChronosBase+"/jobs/summary", nil, &out)
	return out.Jobs, err
}

// DeleteJob removes a job: DELETE /job/{name}.
func (c *Client) DeleteJob(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, ChronosBase+"/job/"+url.PathEscape(name), nil, nil)
	return err
}

// RunJob starts a job now: PUT /job/{name}?arguments=....
func (c *Client) RunJob(ctx context.Context, name string, args []string) error {
	p := ChronosBase + "/job/" + url.PathEscape(name)
	if len(args) > 0 {
		p += "?" + url.Values{"arguments": {strings.Join(args, " ")}}.Encode()
	}
	_, err := c.Do(ctx, http.MethodPut, p, nil, nil)
	return err
}

// JobRuns is a job's run ledger, oldest first: GET /job/runs/{name}
// (weft's addition to the Chronos API).
func (c *Client) JobRuns(ctx context.Context, name string) ([]JobRun, error) {
	var out []JobRun
	_, err := c.Do(ctx, http.MethodGet, ChronosBase+"/job/runs/"+url.PathEscape(name), nil, &out)
	return out, err
}
