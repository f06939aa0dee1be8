package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// StatusAnswer is the master's answer to POST /v1/agents/{id}/status:
// the ids of posted tasks it does not know (expunged, or never launched),
// which the agent kills.
type StatusAnswer struct {
	Unknown []string `json:"unknown,omitempty"`
}

// PostStatusAnswer is PostStatus returning the master's answer.
func (c *Client) PostStatusAnswer(ctx context.Context, agentID string, updates []TaskStatus) (*StatusAnswer, error) {
	var out StatusAnswer
	_, err := c.do(ctx, false, http.MethodPost, "/v1/agents/"+url.PathEscape(agentID)+"/status", updates, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// SandboxChunk is one read of a task's stdout or stderr from its agent.
type SandboxChunk struct {
	Data   []byte
	Offset int64 // where Data starts in the file
	Size   int64 // the file's size when it was read
}

// Next is the offset to read from next.
func (s *SandboxChunk) Next() int64 { return s.Offset + int64(len(s.Data)) }

// ReadSandbox reads up to length bytes of a task's stdout or stderr
// ("stdout" or "stderr") from offset (negative: from the end) through the
// agent API at base (scheme://host:port): GET /v1/sandbox/{task}/{file}.
// An agent that holds no such sandbox answers an *Error with status 404.
func ReadSandbox(ctx context.Context, hc *http.Client, base, taskID, file string, offset, length int64) (*SandboxChunk, error) {
	return ReadSandboxWait(ctx, hc, base, taskID, file, offset, length, 0)
}

// ReadSandboxWait is ReadSandbox that, when offset is at the end of the
// file, has the agent wait up to wait for the task to write more before
// it answers (an agent from before ?wait answers at once, empty).
func ReadSandboxWait(ctx context.Context, hc *http.Client, base, taskID, file string, offset, length int64, wait time.Duration) (*SandboxChunk, error) {
	u := fmt.Sprintf("%s/v1/sandbox/%s/%s?offset=%d&length=%d", base, url.PathEscape(taskID), file, offset, length)
	if wait > 0 {
		u += "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s of %s: %w", file, taskID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, length+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s of %s: %w", file, taskID, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode, Raw: b}
		_ = json.Unmarshal(b, &e.Body)
		return nil, e
	}
	c := &SandboxChunk{Data: b}
	c.Offset, _ = strconv.ParseInt(resp.Header.Get("X-Sandbox-Offset"), 10, 64)
	c.Size, _ = strconv.ParseInt(resp.Header.Get("X-Sandbox-File-Size"), 10, 64)
	return c, nil
}

// TaskLogs opens a task's stdout or stderr through the master:
// GET /v1/tasks/{id}/logs. With follow the answer goes on as the task
// writes, and ends when the task has finished and everything is read.
// The caller closes the reader.
func (c *Client) TaskLogs(ctx context.Context, taskID, stream string, offset int64, follow bool) (io.ReadCloser, error) {
	q := url.Values{"stream": {stream}, "offset": {strconv.FormatInt(offset, 10)}}
	if follow {
		q.Set("follow", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v1/tasks/"+url.PathEscape(taskID)+"/logs?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	resp, err := c.httpClient(true).Do(req)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", taskID, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &Error{Status: resp.StatusCode, Raw: raw}
		_ = json.Unmarshal(raw, &e.Body)
		return nil, e
	}
	return resp.Body, nil
}
