package api

import (
	"context"
	"net/http"
	"net/url"
)

// RaftPeer is one server of the masters' raft configuration, as
// GET /v1/operator/raft/configuration lists it.
type RaftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
	// Status is the master's gossip status (alive, failed, left), or
	// "unknown" when gossip no longer lists it.
	Status string `json:"status"`
}

// RaftConfiguration is the masters' raft configuration.
type RaftConfiguration struct {
	Servers []RaftPeer `json:"servers"`
	Index   uint64     `json:"index"`
}

// RaftConfiguration lists the raft servers (`weft operator raft list-peers`).
func (c *Client) RaftConfiguration(ctx context.Context) (*RaftConfiguration, error) {
	var out RaftConfiguration
	if _, err := c.do(ctx, false, http.MethodGet, "/v1/operator/raft/configuration", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveRaftPeer removes a server from the raft configuration by id
// (`weft operator raft remove-peer ID`).
func (c *Client) RemoveRaftPeer(ctx context.Context, id string) error {
	_, err := c.do(ctx, false, http.MethodDelete, "/v1/operator/raft/peer?id="+url.QueryEscape(id), nil, nil)
	return err
}
