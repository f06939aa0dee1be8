package lb

import (
	"bytes"
	"net"
	"strconv"
)

// A route's per-request policy — marathon-lb's
// HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL, _REDIRECT_TO_HTTPS, _AUTH,
// _HTTP_BACKEND_REDIR, _STICKY and _USE_HSTS — is decided here once, for
// the HTTP/1 fast path (http1.go) and the net/http paths (https.go: TLS,
// HTTP/2, streams). Each path only writes the answer in its own way.

// verdict is what the policy says to do with a request.
type verdict int

const (
	forward      verdict = iota // to a backend (the sticky one if any)
	forbid                      // 403: the client is not in the allowed networks
	toHTTPS                     // 301 to the same host and path over https
	askAuth                     // 401 with WWW-Authenticate: Basic realm=Service.Auth.Realm
	rootRedirect                // 301 to Service.Redir
)

// requestFacts is what the policy reads of one request.
type requestFacts struct {
	remote net.Addr // the client connection's address
	plain  bool     // on the plain-HTTP vhost frontend (:80), where REDIRECT_TO_HTTPS applies
	auth   []byte   // Authorization header value (nil: none)
	host   []byte   // the vhost asked for: lower case, no port
	path   []byte   // the request path, with or without its query
	cookie []byte   // the sticky cookie's value (nil: none); read only for sticky routes
}

// decide applies r's policy to a request, in marathon-lb's order: the
// network ACL, the redirect to HTTPS, basic auth, the root redirect. When
// none answers, the request is forwarded, to the backend its sticky cookie
// names if the route is sticky and the backend still exists.
func (r *route) decide(q *requestFacts) (verdict, *backend) {
	s := r.svc
	if !allowed(s, q.remote) {
		return forbid, nil
	}
	if s.RedirectToHTTPS && q.plain {
		return toHTTPS, nil
	}
	if s.Auth != nil && !r.checkAuth(q.auth) {
		return askAuth, nil
	}
	if s.Redir != "" && isRoot(q.path) && vhostOfBytes(s, q.host) {
		return rootRedirect, nil
	}
	if s.Sticky && q.cookie != nil {
		return forward, r.byCookie[string(q.cookie)]
	}
	return forward, nil
}

// isRoot reports whether path, without its query, is "/".
func isRoot(path []byte) bool {
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	return len(path) == 1 && path[0] == '/'
}

func vhostOfBytes(s *Service, host []byte) bool {
	for _, v := range s.VHosts {
		if v == string(host) {
			return true
		}
	}
	return false
}

// hstsValue is the Strict-Transport-Security value of HAPROXY_{n}_USE_HSTS.
var hstsValue = "max-age=" + strconv.Itoa(HSTSMaxAge)

// responseHeaders are the headers the policy adds to a backend's answer.
type responseHeaders struct {
	setCookie string // Set-Cookie value, sent with Cache-Control: private ("": none)
	hsts      string // Strict-Transport-Security value ("": none)
}

// answerHeaders returns the headers to add to an answer from b to a
// client that sent the sticky cookie value cookie: the cookie naming b
// when the route is sticky and the client does not hold it yet, and HSTS.
func (r *route) answerHeaders(cookie []byte, b *backend) responseHeaders {
	var h responseHeaders
	if r.svc.Sticky && string(cookie) != b.serverID {
		h.setCookie = b.cookie
	}
	if r.svc.HSTS {
		h.hsts = hstsValue
	}
	return h
}
