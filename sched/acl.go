package sched

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/sched/api"
)

// ACL tables. Tokens are keyed by the SHA-256 of their secret, so a
// request's token is one map lookup away and the secret itself is never
// stored; policies by name.
const (
	TableACLTokens   = "acltokens"   // hex SHA-256 of the secret → *ACLToken
	TableACLPolicies = "aclpolicies" // policy name → *api.ACLPolicy
)

// metaACLBootstrap is the meta key whose presence means `weft acl
// bootstrap` has run: from then on every API call needs a token.
const metaACLBootstrap = "aclBootstrapped"

func init() {
	tableTypes[TableACLTokens] = func() any { return new(ACLToken) }
	tableTypes[TableACLPolicies] = func() any { return new(api.ACLPolicy) }
}

// ACLToken is a token as the store keeps it: what the API shows, and the
// hash of its secret.
type ACLToken struct {
	api.ACLToken
	SecretHash string `json:"secretHash"`
}

// Access is a level of rights on a resource; a higher one includes the
// lower ones.
type Access int

const (
	AccessNone Access = iota
	AccessRead
	AccessWrite
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	}
	return "deny"
}

func parseAccess(s string) (Access, bool) {
	switch s {
	case "deny", "none":
		return AccessNone, true
	case "read":
		return AccessRead, true
	case "write":
		return AccessWrite, true
	}
	return AccessNone, false
}

// hashSecret is how a token's secret is kept: the hex SHA-256. Secrets are
// 256 random bits, so a plain hash is enough: there is nothing to guess.
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// newSecret returns a token secret (256 random bits, hex) and an accessor id.
func newSecret() (secret, accessor string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	a := make([]byte, 16)
	_, _ = rand.Read(a)
	a[6] = a[6]&0x0f | 0x40
	a[8] = a[8]&0x3f | 0x80
	h := hex.EncodeToString(a)
	return hex.EncodeToString(b), h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// rule is one compiled pattern of a policy: a name matches when it equals
// exact, or starts with prefix (a pattern ending in "*"). A prefix ending
// in "/" also matches the group it names ("/team-a/*" covers "/team-a").
type rule struct {
	pattern string
	exact   bool
	prefix  string
	access  Access
}

func compileRules(m map[string]string) ([]rule, error) {
	out := make([]rule, 0, len(m))
	for p, a := range m {
		acc, ok := parseAccess(a)
		if !ok {
			return nil, fmt.Errorf("%q: access %q is not deny, read or write", p, a)
		}
		r := rule{pattern: p, access: acc}
		if strings.HasSuffix(p, "*") {
			r.prefix = strings.TrimSuffix(p, "*")
			if strings.Contains(r.prefix, "*") {
				return nil, fmt.Errorf("%q: '*' may only end a pattern", p)
			}
		} else {
			if strings.Contains(p, "*") {
				return nil, fmt.Errorf("%q: '*' may only end a pattern", p)
			}
			r.exact = true
		}
		out = append(out, r)
	}
	// Most specific first: longer patterns, and exact before prefix.
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].pattern) != len(out[j].pattern) {
			return len(out[i].pattern) > len(out[j].pattern)
		}
		return out[i].exact && !out[j].exact
	})
	return out, nil
}

// match is the access the most specific matching rule grants (none when
// no rule matches).
func match(rules []rule, name string) Access {
	for _, r := range rules {
		if r.exact {
			if name == r.pattern {
				return r.access
			}
			continue
		}
		if strings.HasPrefix(name, r.prefix) {
			return r.access
		}
		if strings.HasSuffix(r.prefix, "/") && name == strings.TrimSuffix(r.prefix, "/") && name != "" {
			return r.access
		}
	}
	return AccessNone
}

var policyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ParsePolicy reads a policy file (JSON or YAML):
//
//	apps:     {"/team-a/*": write, "/*": read}   # Marathon paths: apps, groups, tasks, deployments, queue
//	jobs:     {"team-a-*": write}                # Chronos job names
//	secrets:  {"team-a/*": read}                 # secret names: read lets apps use them, write puts/deletes
//	node: read                                   # /v1/nodes and the cluster state
//	operator: write                              # leader abdication, metrics, raft peers
//	acl: write                                   # policies and tokens
//
// It fails naming the field and value that are wrong.
func ParsePolicy(name string, raw []byte) (*api.ACLPolicy, error) {
	if !policyName.MatchString(name) {
		return nil, fmt.Errorf("policy name %q: use letters, digits, '.', '_' and '-' (at most 128)", name)
	}
	var rules api.ACLRules
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rules); err != nil {
			return nil, fmt.Errorf("policy %s: %w (want the keys apps, jobs, secrets, node, operator, acl, description)", name, err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(trimmed))
		dec.KnownFields(true)
		if err := dec.Decode(&rules); err != nil {
			return nil, fmt.Errorf("policy %s is neither JSON nor valid YAML: %w (want the keys apps, jobs, secrets, node, operator, acl, description)", name, err)
		}
	}
	if err := validateRules(rules); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	return &api.ACLPolicy{Name: name, Rules: rules}, nil
}

func validateRules(r api.ACLRules) error {
	for k := range r.Apps {
		if !strings.HasPrefix(k, "/") {
			return fmt.Errorf("apps: %q: Marathon paths start with '/' (e.g. \"/team-a/*\")", k)
		}
	}
	for field, m := range map[string]map[string]string{"apps": r.Apps, "jobs": r.Jobs, "secrets": r.Secrets} {
		if _, err := compileRules(m); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	for field, v := range map[string]string{"node": r.Node, "operator": r.Operator, "acl": r.ACL} {
		if v == "" {
			continue
		}
		if _, ok := parseAccess(v); !ok {
			return fmt.Errorf("%s: %q is not deny, read or write", field, v)
		}
	}
	return nil
}

// Authz is who made a request and what they may do. A nil *Authz means
// the API is open (no `weft acl bootstrap` yet): everything is allowed.
type Authz struct {
	// Name is the token's name, or "node:<name>" for a cluster node.
	Name string
	// Accessor is the token's accessor id ("" for nodes).
	Accessor   string
	Management bool
	// Node is set when the caller proved it is a cluster node.
	Node string

	apps, jobs, secrets []rule
	node, operator, acl Access
	policies            []string
	rules               []api.ACLRules
}

// compileAuthz builds a token's rights from its policies; a policy that
// no longer exists grants nothing.
func compileAuthz(tok *ACLToken, policies []*api.ACLPolicy) *Authz {
	a := &Authz{Name: tok.Name, Accessor: tok.AccessorID, Management: tok.Management, policies: tok.Policies}
	if a.Name == "" {
		a.Name = tok.AccessorID
	}
	apps, jobs, secrets := map[string]string{}, map[string]string{}, map[string]string{}
	maxAcc := func(cur Access, s string) Access {
		if v, ok := parseAccess(s); ok && v > cur {
			return v
		}
		return cur
	}
	merge := func(dst, src map[string]string) {
		for k, v := range src {
			if old, ok := dst[k]; ok {
				o, _ := parseAccess(old)
				n, _ := parseAccess(v)
				if o >= n {
					continue
				}
			}
			dst[k] = v
		}
	}
	for _, p := range policies {
		if p == nil {
			continue
		}
		a.rules = append(a.rules, p.Rules)
		merge(apps, p.Rules.Apps)
		merge(jobs, p.Rules.Jobs)
		merge(secrets, p.Rules.Secrets)
		a.node = maxAcc(a.node, p.Rules.Node)
		a.operator = maxAcc(a.operator, p.Rules.Operator)
		a.acl = maxAcc(a.acl, p.Rules.ACL)
	}
	a.apps, _ = compileRules(apps)
	a.jobs, _ = compileRules(jobs)
	a.secrets, _ = compileRules(secrets)
	return a
}

// Full reports whether a is allowed everything: the open API, a
// management token, or a node.
func (a *Authz) Full() bool { return a == nil || a.Management || a.Node != "" }

// App is the access to a Marathon path (an app, a group, their tasks,
// deployments and queue entries).
func (a *Authz) App(id string) Access {
	if a.Full() {
		return AccessWrite
	}
	return match(a.apps, id)
}

// CanReadApp and CanWriteApp are App compared with a level.
func (a *Authz) CanReadApp(id string) bool  { return a.App(id) >= AccessRead }
func (a *Authz) CanWriteApp(id string) bool { return a.App(id) >= AccessWrite }

// Job is the access to a Chronos job by name.
func (a *Authz) Job(name string) Access {
	if a.Full() {
		return AccessWrite
	}
	return match(a.jobs, name)
}

// Secret is the access to a secret by name: read lets an app refer to it,
// write puts and deletes it. Nobody reads a secret's value over the API.
func (a *Authz) Secret(name string) Access {
	if a.Full() {
		return AccessWrite
	}
	return match(a.secrets, name)
}

// NodeRights, Operator and ACL are the access of the global rules.
func (a *Authz) NodeRights() Access {
	if a.Full() {
		return AccessWrite
	}
	return a.node
}

func (a *Authz) Operator() Access {
	if a.Full() {
		return AccessWrite
	}
	return a.operator
}

func (a *Authz) ACL() Access {
	if a == nil || a.Management {
		return AccessWrite
	}
	return a.acl
}

// ScopeKey tells apart callers whose filtered listings differ: "" for
// callers that see everything. Cached answers are kept per scope.
func (a *Authz) ScopeKey() string {
	if a.Full() {
		return ""
	}
	return "t:" + a.Accessor
}

// Label names the caller in audit lines and events: the token's name and
// accessor, never its secret.
func (a *Authz) Label() string {
	switch {
	case a == nil:
		return "anonymous"
	case a.Node != "":
		return "node:" + a.Node
	}
	return a.Name
}

// Self is what GET /v1/acl/token/self answers.
func (a *Authz) Self() api.ACLTokenSelf {
	if a == nil {
		return api.ACLTokenSelf{Name: "anonymous", Open: true, Management: true, Policies: []string{}, Rules: []api.ACLRules{}}
	}
	s := api.ACLTokenSelf{Name: a.Name, AccessorID: a.Accessor, Management: a.Management, Policies: a.policies, Rules: a.rules}
	if s.Policies == nil {
		s.Policies = []string{}
	}
	if s.Rules == nil {
		s.Rules = []api.ACLRules{}
	}
	return s
}

// tokenFromRequest reads the secret a request carries: "Authorization:
// Bearer S", DC/OS's "Authorization: token=S", or HTTP Basic with S as
// the password (any user name). ok is false when there is no
// Authorization header at all.
func tokenFromRequest(r *http.Request) (secret string, ok bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer":
		return rest, true
	case "basic":
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", true
		}
		_, pw, _ := strings.Cut(string(b), ":")
		return pw, true
	}
	if v, found := strings.CutPrefix(h, "token="); found {
		return strings.Trim(strings.TrimSpace(v), `"`), true
	}
	return "", true
}

// equalSecret compares secrets in constant time.
func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
