package api

import (
	"context"
	"net/http"
	"net/url"
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
