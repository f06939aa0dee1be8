package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ResourceStatistics is a running task's usage and limits, read from its
// cgroup by its agent. The names are those of Mesos's ResourceStatistics
// (the agent's /monitor/statistics).
type ResourceStatistics struct {
	Timestamp          float64 `json:"timestamp"` // seconds since the epoch
	CpusUserTimeSecs   float64 `json:"cpus_user_time_secs"`
	CpusSystemTimeSecs float64 `json:"cpus_system_time_secs"`
	CpusLimit          float64 `json:"cpus_limit,omitempty"` // shares/1024, or the CFS quota in cores
	MemRSSBytes        uint64  `json:"mem_rss_bytes"`        // anonymous memory
	MemTotalBytes      uint64  `json:"mem_total_bytes"`      // everything charged: rss and page cache
	MemLimitBytes      uint64  `json:"mem_limit_bytes,omitempty"`
}

// TaskStats is one task's usage: GET /v1/tasks/{id}/stats on the agent
// API and on the master, which asks the task's agent.
type TaskStats struct {
	ID         string             `json:"id"`
	AppID      string             `json:"appId,omitempty"`
	Statistics ResourceStatistics `json:"statistics"`
}

// ReadTaskStats asks the agent API at base (scheme://host:port) for a
// task's usage. An agent that does not run the task answers an *Error with
// status 404; one that cannot measure it (no cgroups) 409.
func ReadTaskStats(ctx context.Context, hc *http.Client, base, taskID string) (*TaskStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/tasks/"+url.PathEscape(taskID)+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the usage of %s: %w", taskID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the usage of %s: %w", taskID, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode, Raw: b}
		_ = json.Unmarshal(b, &e.Body)
		return nil, e
	}
	var out TaskStats
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("the usage of %s: %w", taskID, err)
	}
	return &out, nil
}

// TaskStats reads a running task's usage through the master:
// GET /v1/tasks/{id}/stats.
func (c *Client) TaskStats(ctx context.Context, taskID string) (*TaskStats, error) {
	var out TaskStats
	if _, err := c.Do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(taskID)+"/stats", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
