package sched

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/weftnet/weft/sched/api"
)

type authzKey struct{}

// AuthzFrom returns who made the request whose context this is: nil while
// the API is open (before `weft acl bootstrap`), when everything is allowed.
func AuthzFrom(ctx context.Context) *Authz {
	a, _ := ctx.Value(authzKey{}).(*Authz)
	return a
}

// WithAuthz returns ctx carrying a (tests and in-process callers).
func WithAuthz(ctx context.Context, a *Authz) context.Context {
	return context.WithValue(ctx, authzKey{}, a)
}

// ACLEnabled reports whether `weft acl bootstrap` has run: from then on
// every API call but /ping needs a token.
func (m *Master) ACLEnabled() bool {
	_, ok := m.store.Get(TableMeta, metaACLBootstrap)
	return ok
}

// tokenCache keeps compiled tokens by secret hash, checked against the
// store's indexes of the token and its policies on every use.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]cachedAuthz
}

type cachedAuthz struct {
	authz   *Authz
	tokIdx  uint64
	polIdxs []uint64
}

// lookupToken resolves a secret to its token's rights, or nil when no
// token has that secret.
func (m *Master) lookupToken(secret string) *Authz {
	hash := hashSecret(secret)
	e, ok := m.store.Get(TableACLTokens, hash)
	if !ok {
		return nil
	}
	tok := e.Value.(*ACLToken)
	idxs := make([]uint64, len(tok.Policies))
	pols := make([]*api.ACLPolicy, len(tok.Policies))
	for i, p := range tok.Policies {
		if pe, ok := m.store.Get(TableACLPolicies, p); ok {
			idxs[i] = pe.ModifyIndex
			pols[i] = pe.Value.(*api.ACLPolicy)
		}
	}
	c := &m.tokens
	c.mu.Lock()
	defer c.mu.Unlock()
	if ce, ok := c.entries[hash]; ok && ce.tokIdx == e.ModifyIndex && equalIdx(ce.polIdxs, idxs) {
		return ce.authz
	}
	a := compileAuthz(tok, pols)
	if c.entries == nil || len(c.entries) > 4096 {
		c.entries = map[string]cachedAuthz{}
	}
	c.entries[hash] = cachedAuthz{authz: a, tokIdx: e.ModifyIndex, polIdxs: idxs}
	return a
}

func equalIdx(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// nodeOnlyPath: the paths only cluster nodes use: agents pulling their
// assignments and posting status, lbs reporting problems.
func nodeOnlyPath(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasPrefix(p, "/v1/agents/") || (p == "/v1/lb/problems" && r.Method == http.MethodPost)
}

// nodeSecretName is the node a NodeSecret bearer is taken for: any node
// of this cluster, unnamed.
const nodeSecretName = "node"

// nodeAuthz is the identity of a request from a cluster node: a verified
// node certificate, or the node secret the master was given.
func (m *Master) nodeAuthz(r *http.Request) *Authz {
	if node, ok := m.cfg.NodeIdentity(r); ok {
		return &Authz{Name: "node:" + node, Node: node}
	}
	if m.cfg.NodeSecret != "" {
		if s, ok := tokenFromRequest(r); ok && equalSecret(s, m.cfg.NodeSecret) {
			return &Authz{Name: "node", Node: nodeSecretName}
		}
	}
	return nil
}

// authorize is the API's door. Until `weft acl bootstrap` everything is
// open. Then a request must carry a known token (401 otherwise) whose
// policy allows the route (403 otherwise); Marathon's and Chronos's
// resources are checked by their frameworks, which filter listings by the
// token's read rights. Accepted writes are audited.
func (m *Master) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			next.ServeHTTP(w, r)
			return
		}
		a := m.nodeAuthz(r)
		if a == nil && m.ACLEnabled() {
			secret, has := tokenFromRequest(r)
			if !has || secret == "" {
				writeNotAuthenticated(w, "Not Authenticated: this cluster has ACLs; send a token (Authorization: Bearer <secret>, Authorization: token=<secret>, or HTTP Basic with the secret as the password)")
				return
			}
			if a = m.lookupToken(secret); a == nil {
				writeNotAuthenticated(w, "Not Authenticated: the token is not known (deleted, or from another cluster)")
				return
			}
			if msg := routeDenied(a, r); msg != "" {
				writeError(w, http.StatusForbidden, "Not Authorized to perform this action: "+msg)
				return
			}
		}
		if a != nil {
			r = r.WithContext(WithAuthz(r.Context(), a))
		}
		if !isWrite(r) || (a != nil && a.Node != "") || nodeOnlyPath(r) {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.code == 0 || rec.code < 400 {
			accessor := ""
			if a != nil {
				accessor = a.Accessor
			}
			m.audit.Info("audit", "token", a.Label(), "accessor", accessor, "method", r.Method, "path", r.URL.Path, "status", max(rec.code, 200), "remote", hostOnly(r.RemoteAddr))
		}
	})
}

func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func writeNotAuthenticated(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="weft", charset="UTF-8"`)
	writeError(w, http.StatusUnauthorized, msg)
}

// Route classes: how the API's door (authorize) treats each route once
// ACLs are on. Every route the master or a framework mounts has one
// (TestEveryRouteClassified enumerates the mux); a path of none is refused
// to every token but a management token.
const (
	routeSelf       = "self"      // the token's own identity and bootstrap: any caller
	routePublic     = "public"    // what any known token may read: info, leader, plugins
	routeACL        = "acl"       // acl rights
	routeSecrets    = "secrets"   // per secret, in the handlers
	routeNodeOnly   = "node-only" // cluster nodes only (node certificate or node secret)
	routeNodeRead   = "node-read" // node read
	routeState      = "state"     // node read and read on every app and job
	routeOperator   = "operator"  // operator rights
	routeMarathon   = "marathon"  // per app in the Marathon framework; listings filtered
	routeChronos    = "chronos"   // per job in the Chronos framework; listings filtered
	routePerTask    = "task"      // per task's app or job, in the handler
	routeNotFound   = "not-found" // the /v1/ and /v2/ catch-alls: 404 for every caller
	routeUnassigned = ""          // no class: management tokens only
)

// routeClass classifies a request by its method and path.
func routeClass(r *http.Request) string {
	p := r.URL.Path
	under := func(prefixes ...string) bool {
		for _, x := range prefixes {
			if p == x || strings.HasPrefix(p, x+"/") {
				return true
			}
		}
		return false
	}
	switch {
	case p == "/ping" || p == "/v1/acl/token/self" || p == "/v1/acl/bootstrap":
		return routeSelf
	case under("/v1/acl"):
		return routeACL
	case under("/v1/secrets"):
		return routeSecrets
	case nodeOnlyPath(r):
		return routeNodeOnly
	case p == "/v1/nodes" || p == "/v1/lb/problems":
		return routeNodeRead
	case p == "/v1/state" || p == "/v1/state/changes":
		return routeState
	case under("/metrics", "/debug", "/v1/operator"):
		return routeOperator
	case p == "/v2/leader" && r.Method == http.MethodDelete:
		return routeOperator
	case p == "/v2/leader" || p == "/v2/info" || p == "/v2/plugins":
		return routePublic
	case under("/v2/apps", "/v2/pods", "/v2/groups", "/v2/tasks", "/v2/deployments", "/v2/queue", "/v2/events", "/v1/deployments", "/v1/apps/problems"):
		return routeMarathon
	case under("/v1/scheduler", "/scheduler"):
		return routeChronos
	case strings.HasPrefix(p, "/v1/tasks/") && (strings.HasSuffix(p, "/logs") || strings.HasSuffix(p, "/stats")):
		return routePerTask
	case under("/v1", "/v2"):
		return routeNotFound
	}
	return routeUnassigned
}

// routeDenied checks a request against its route's class; it returns why
// a is refused, or "". Marathon's and Chronos's routes are checked per
// resource by the frameworks, which also filter listings.
func routeDenied(a *Authz, r *http.Request) string {
	p := r.URL.Path
	need := func(what string, have, want Access) string {
		if have >= want {
			return ""
		}
		return fmt.Sprintf("%s %s needs %s %s (the token has %s)", r.Method, p, what, want, have)
	}
	rw := AccessRead
	if isWrite(r) {
		rw = AccessWrite
	}
	switch routeClass(r) {
	case routeSelf, routePublic, routeSecrets, routeMarathon, routeChronos, routePerTask, routeNotFound:
		return ""
	case routeACL:
		return need("acl", a.ACL(), rw)
	case routeNodeOnly:
		if a.Full() {
			return ""
		}
		return fmt.Sprintf("%s %s is for cluster nodes", r.Method, p)
	case routeNodeRead:
		return need("node", a.NodeRights(), AccessRead)
	case routeState:
		if msg := need("node", a.NodeRights(), AccessRead); msg != "" {
			return msg
		}
		if !a.CanReadApp("/") || a.Job("") < AccessRead {
			return "GET " + p + " shows every app and job: it needs read on apps \"/*\" and jobs \"*\""
		}
		return ""
	case routeOperator:
		return need("operator", a.Operator(), rw)
	}
	if a.Full() {
		return ""
	}
	return fmt.Sprintf("%s %s has no ACL class: only a management token may call it", r.Method, p)
}

// WriteForbidden writes Marathon's 403 body for a refused action;
// frameworks use it.
func WriteForbidden(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusForbidden, "Not Authorized to perform this action: "+msg)
}

// ForbiddenApp is the message for a token without access to a path.
func ForbiddenApp(a *Authz, want Access, id string) string {
	return fmt.Sprintf("token %q has no %s access to %s", a.Label(), want, id)
}

// handleACLBootstrap serves POST /v1/acl/bootstrap: the first management
// token, once. Its secret is in this answer only.
func (m *Master) handleACLBootstrap(w http.ResponseWriter, r *http.Request) {
	secret, accessor := newSecret()
	tok := &ACLToken{ACLToken: api.ACLToken{AccessorID: accessor, Name: "bootstrap", Management: true, Policies: []string{}, CreateTime: api.Timestamp(m.cfg.Now())}, SecretHash: hashSecret(secret)}
	mark := json.RawMessage(fmt.Sprintf("%q", api.Timestamp(m.cfg.Now())))
	_, err := m.store.Apply(r.Context(), []Op{Check(TableMeta, metaACLBootstrap, 0), Put(TableMeta, metaACLBootstrap, &mark), Put(TableACLTokens, tok.SecretHash, tok)})
	if errors.Is(err, ErrConflict) {
		writeError(w, http.StatusConflict, "ACL bootstrap already done: the management token was shown once then; create more tokens with it (weft acl token create)")
		return
	}
	if err != nil {
		writeStoreError(w, err)
		return
	}
	m.log.Warn("ACLs bootstrapped: from now on the API needs a token", "accessor", accessor)
	out := tok.ACLToken
	out.SecretID = secret
	writeJSON(w, http.StatusOK, out)
}

func writeStoreError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotLeader) {
		writeError(w, http.StatusServiceUnavailable, "There is no leader: the store is not writable here; retry")
		return
	}
	if errors.Is(err, ErrConflict) {
		writeError(w, http.StatusConflict, "the state changed while this request was applied; retry")
		return
	}
	writeError(w, http.StatusServiceUnavailable, "could not commit the change: "+err.Error())
}

const maxPolicyBody = 1 << 20

// handlePolicyPut serves PUT /v1/acl/policy/{name}: a policy from a JSON
// or YAML body, validated.
func (m *Master) handlePolicyPut(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxPolicyBody+1))
	if err != nil || len(raw) > maxPolicyBody {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the policy: at most %d bytes of JSON or YAML", maxPolicyBody))
		return
	}
	pol, err := ParsePolicy(r.PathValue("name"), raw)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if _, err := m.store.Apply(r.Context(), []Op{Put(TableACLPolicies, pol.Name, pol)}); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pol)
}

func (m *Master) handlePolicies(w http.ResponseWriter, r *http.Request) {
	out := []api.ACLPolicy{}
	for _, e := range m.store.List(TableACLPolicies) {
		out = append(out, *e.Value.(*api.ACLPolicy))
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *Master) handlePolicyGet(w http.ResponseWriter, r *http.Request) {
	e, ok := m.store.Get(TableACLPolicies, r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("policy %q does not exist", r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, e.Value)
}

func (m *Master) handlePolicyDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e, ok := m.store.Get(TableACLPolicies, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("policy %q does not exist", name))
		return
	}
	if _, err := m.store.Apply(r.Context(), []Op{Check(TableACLPolicies, name, e.ModifyIndex), Delete(TableACLPolicies, name)}); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
}

// handleTokenCreate serves POST /v1/acl/token {"name", "policies"}.
func (m *Master) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req api.ACLTokenCreate
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "token request: "+err.Error()+` (want {"name": "...", "policies": ["..."]})`)
		return
	}
	if len(req.Policies) == 0 {
		writeError(w, http.StatusUnprocessableEntity, "a token needs at least one policy (--policy NAME)")
		return
	}
	ops := []Op{}
	for _, p := range req.Policies {
		e, ok := m.store.Get(TableACLPolicies, p)
		if !ok {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("policy %q does not exist: apply it first (weft acl policy apply %s FILE)", p, p))
			return
		}
		ops = append(ops, Check(TableACLPolicies, p, e.ModifyIndex))
	}
	if len(req.Name) > 256 || strings.ContainsFunc(req.Name, unicode.IsControl) {
		writeError(w, http.StatusUnprocessableEntity, "token name: at most 256 characters, no control characters")
		return
	}
	secret, accessor := newSecret()
	tok := &ACLToken{ACLToken: api.ACLToken{AccessorID: accessor, Name: req.Name, Policies: req.Policies, CreateTime: api.Timestamp(m.cfg.Now())}, SecretHash: hashSecret(secret)}
	ops = append(ops, Check(TableACLTokens, tok.SecretHash, 0), Put(TableACLTokens, tok.SecretHash, tok))
	if _, err := m.store.Apply(r.Context(), ops); err != nil {
		writeStoreError(w, err)
		return
	}
	out := tok.ACLToken
	out.SecretID = secret
	writeJSON(w, http.StatusOK, out)
}

func (m *Master) handleTokens(w http.ResponseWriter, r *http.Request) {
	out := []api.ACLToken{}
	for _, e := range m.store.List(TableACLTokens) {
		out = append(out, e.Value.(*ACLToken).ACLToken)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreateTime < out[j].CreateTime })
	writeJSON(w, http.StatusOK, out)
}

// handleTokenDelete serves DELETE /v1/acl/token/{accessor}.
func (m *Master) handleTokenDelete(w http.ResponseWriter, r *http.Request) {
	acc := r.PathValue("accessor")
	for _, e := range m.store.List(TableACLTokens) {
		tok := e.Value.(*ACLToken)
		if tok.AccessorID != acc {
			continue
		}
		if tok.Management && m.managementTokens() <= 1 {
			writeError(w, http.StatusConflict, "this is the last management token: deleting it would lock everyone out")
			return
		}
		if _, err := m.store.Apply(r.Context(), []Op{Check(TableACLTokens, e.Key, e.ModifyIndex), Delete(TableACLTokens, e.Key)}); err != nil {
			writeStoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"deleted": acc})
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no token has accessor id %q (see weft acl token list)", acc))
}

func (m *Master) managementTokens() int {
	n := 0
	for _, e := range m.store.List(TableACLTokens) {
		if e.Value.(*ACLToken).Management {
			n++
		}
	}
	return n
}

func (m *Master) handleTokenSelf(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, AuthzFrom(r.Context()).Self())
}

// mountACL adds the /v1/acl routes.
func (m *Master) mountACL(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/acl/bootstrap", m.handleACLBootstrap)
	mux.HandleFunc("GET /v1/acl/policies", m.handlePolicies)
	mux.HandleFunc("GET /v1/acl/policy/{name}", m.handlePolicyGet)
	mux.HandleFunc("PUT /v1/acl/policy/{name}", m.handlePolicyPut)
	mux.HandleFunc("DELETE /v1/acl/policy/{name}", m.handlePolicyDelete)
	mux.HandleFunc("POST /v1/acl/token", m.handleTokenCreate)
	mux.HandleFunc("GET /v1/acl/tokens", m.handleTokens)
	mux.HandleFunc("GET /v1/acl/token/self", m.handleTokenSelf)
	mux.HandleFunc("DELETE /v1/acl/token/{accessor}", m.handleTokenDelete)
}

// logAccessAtStart logs, once, whether the API is open: when this master
// has caught up with the log (it leads, or follows a leader), or after
// 10 s whatever it knows then.
func (m *Master) logAccessAtStart(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m.store.IsLeader() || (!m.store.RaftLeader() && m.store.Index() > 0 && m.leaderAPI() != "") {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if m.ACLEnabled() {
		m.log.Info("ACLs are on: API calls need a token")
		return
	}
	m.log.Warn("the API is open: anyone who reaches it may do anything; run `weft acl bootstrap` to require tokens")
}
