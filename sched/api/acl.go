package api

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ACLRules are a policy's grants. Apps and Jobs map a pattern to "read",
// "write" or "deny": a pattern ending in "*" is a prefix ("/team-a/*"
// covers /team-a and everything under it), any other is an exact name.
// The most specific pattern wins.
type ACLRules struct {
	Description string            `json:"description,omitempty" yaml:"description"`
	Apps        map[string]string `json:"apps,omitempty" yaml:"apps"`         // Marathon paths: apps, groups, tasks, deployments, queue
	Jobs        map[string]string `json:"jobs,omitempty" yaml:"jobs"`         // Chronos job names
	Secrets     map[string]string `json:"secrets,omitempty" yaml:"secrets"`   // secret names: read to use in apps, write to put/delete
	Node        string            `json:"node,omitempty" yaml:"node"`         // read: /v1/nodes and the cluster state
	Operator    string            `json:"operator,omitempty" yaml:"operator"` // read: metrics, raft peers; write: abdicate, remove a peer
	ACL         string            `json:"acl,omitempty" yaml:"acl"`           // read: list tokens and policies; write: change them
}

// ACLPolicy is a named set of rules.
type ACLPolicy struct {
	Name  string   `json:"name"`
	Rules ACLRules `json:"rules"`
}

// ACLToken is a token as the API shows it. SecretID is only filled in the
// answer that creates the token: weft keeps a hash, never the secret.
type ACLToken struct {
	AccessorID string   `json:"accessorId"`
	SecretID   string   `json:"secretId,omitempty"`
	Name       string   `json:"name"`
	Policies   []string `json:"policies"`
	Management bool     `json:"management,omitempty"`
	CreateTime string   `json:"createTime,omitempty"`
}

// ACLTokenCreate is the body of POST /v1/acl/token.
type ACLTokenCreate struct {
	Name     string   `json:"name"`
	Policies []string `json:"policies"`
}

// ACLTokenSelf answers GET /v1/acl/token/self: who the caller is and what
// it may do (a UI hides the actions it may not take). Open is true while
// the cluster has no ACLs yet (everyone may do everything).
type ACLTokenSelf struct {
	Name       string     `json:"name"`
	AccessorID string     `json:"accessorId,omitempty"`
	Management bool       `json:"management"`
	Open       bool       `json:"open,omitempty"`
	Policies   []string   `json:"policies"`
	Rules      []ACLRules `json:"rules"`
}

// SecretInfo is a secret as listings show it: its name and when it
// changed, never its value.
type SecretInfo struct {
	Name      string `json:"name"`
	UpdatedAt string `json:"updatedAt"`
	UpdatedBy string `json:"updatedBy,omitempty"`
}

// ACLBootstrap creates the first (management) token: POST /v1/acl/bootstrap.
func (c *Client) ACLBootstrap(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	if _, err := c.Do(ctx, http.MethodPost, "/v1/acl/bootstrap", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ACLPolicyApply creates or replaces a policy from its file's text
// (JSON or YAML): PUT /v1/acl/policy/{name}.
func (c *Client) ACLPolicyApply(ctx context.Context, name string, raw io.Reader) (*ACLPolicy, error) {
	var out ACLPolicy
	if _, err := c.Do(ctx, http.MethodPut, "/v1/acl/policy/"+url.PathEscape(name), raw, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ACLPolicies lists policies: GET /v1/acl/policies.
func (c *Client) ACLPolicies(ctx context.Context) ([]ACLPolicy, error) {
	var out []ACLPolicy
	_, err := c.Do(ctx, http.MethodGet, "/v1/acl/policies", nil, &out)
	return out, err
}

// ACLPolicyDelete removes a policy: DELETE /v1/acl/policy/{name}.
func (c *Client) ACLPolicyDelete(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/acl/policy/"+url.PathEscape(name), nil, nil)
	return err
}

// ACLTokenCreate makes a token: POST /v1/acl/token. The answer is the only
// place its secret ever appears.
func (c *Client) ACLTokenCreate(ctx context.Context, req ACLTokenCreate) (*ACLToken, error) {
	var out ACLToken
	if _, err := c.Do(ctx, http.MethodPost, "/v1/acl/token", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ACLTokens lists tokens (accessors, names, policies): GET /v1/acl/tokens.
func (c *Client) ACLTokens(ctx context.Context) ([]ACLToken, error) {
	var out []ACLToken
	_, err := c.Do(ctx, http.MethodGet, "/v1/acl/tokens", nil, &out)
	return out, err
}

// ACLTokenDelete removes a token by accessor id: DELETE /v1/acl/token/{accessor}.
func (c *Client) ACLTokenDelete(ctx context.Context, accessor string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/acl/token/"+url.PathEscape(accessor), nil, nil)
	return err
}

// ACLTokenSelf says who the client's token is: GET /v1/acl/token/self.
func (c *Client) ACLTokenSelf(ctx context.Context) (*ACLTokenSelf, error) {
	var out ACLTokenSelf
	if _, err := c.Do(ctx, http.MethodGet, "/v1/acl/token/self", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SecretPut stores a secret's value: PUT /v1/secrets/{name} with the raw
// value as the body.
func (c *Client) SecretPut(ctx context.Context, name string, value io.Reader) error {
	_, err := c.Do(ctx, http.MethodPut, "/v1/secrets/"+escapeSecretName(name), value, nil)
	return err
}

// Secrets lists secret names: GET /v1/secrets.
func (c *Client) Secrets(ctx context.Context) ([]SecretInfo, error) {
	var out []SecretInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/secrets", nil, &out)
	return out, err
}

// SecretDelete removes a secret: DELETE /v1/secrets/{name}.
func (c *Client) SecretDelete(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/secrets/"+escapeSecretName(name), nil, nil)
	return err
}

// escapeSecretName escapes each segment of a secret name; '/' separates
// namespaces ("team-a/db").
func escapeSecretName(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// authorize adds the client's token to a request.
func (c *Client) authorize(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// BasicAuth is the Authorization value of HTTP Basic with the token as
// the password, as --http_credentials users and the Jenkins Marathon
// plugin send it.
func BasicAuth(user, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
}
