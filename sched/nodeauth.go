package sched

import (
	"fmt"
	"net/http"

	"github.com/weftnet/weft/internal/nodetls"
)

// HeaderNode carries, on a request a follower proxies to the leader, the
// node the original caller proved to be; the leader trusts it only from a
// node (NodeIdentity), and a follower always replaces it.
const HeaderNode = "X-Weft-Node"

// NodeIdentity reports whether r came from a node of this cluster, and
// which: a TLS client certificate of the cluster CA names it. A request
// proxied by a master (X-Marathon-Via, over mutual TLS) is the original
// caller's, so it is a node's only when the proxy vouches for it with
// X-Weft-Node; people's requests proxied by a master are not nodes'.
func NodeIdentity(r *http.Request) (node string, ok bool) {
	name, ok := nodetls.NodeName(r.TLS)
	if !ok {
		return "", false
	}
	if r.Header.Get("X-Marathon-Via") != "" {
		v := r.Header.Get(HeaderNode)
		return v, v != ""
	}
	return name, true
}

// nodeOnly guards an endpoint only cluster nodes may call (assignments,
// status, lb problems): with a cluster token, a caller without a node
// certificate gets 403.
func (m *Master) nodeOnly(h http.HandlerFunc) http.HandlerFunc {
	if m.cfg.NodeTLS == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := m.cfg.NodeIdentity(r); !ok {
			writeError(w, http.StatusForbidden, r.Method+" "+r.URL.Path+" is for cluster nodes only: it needs a node certificate of the cluster CA (nodes started with the join token have one)")
			return
		}
		h(w, r)
	}
}

// nodeTransport is how this master reaches other nodes' HTTP APIs: over
// mutual TLS when the cluster has a token.
func (m *Master) nodeTransport() (scheme string, rt http.RoundTripper) {
	if m.cfg.NodeTLS == nil {
		return "http", http.DefaultTransport
	}
	m.transportOnce.Do(func() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = m.cfg.NodeTLS.ClientConfig()
		m.transport = t
	})
	return "https", m.transport
}

// notSelf returns why the node behind r may not act as node id (pull its
// assignments, post its task statuses, report its lb's problems), or ""
// when it may: a node certificate names the one node whose agent id it
// may use. A request without a node identity (an open cluster with no
// token, or a management token) and the node secret `weft up` hands its
// own agent, dns and lb (nodeSecretName) are not bound to one node.
func notSelf(r *http.Request, id string) string {
	a := AuthzFrom(r.Context())
	if a == nil || a.Node == "" || a.Node == nodeSecretName || a.Node == id {
		return ""
	}
	return fmt.Sprintf("%s %s: the node certificate names node %q, which may act only for itself, not for %q", r.Method, r.URL.Path, a.Node, id)
}
