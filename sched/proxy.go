package sched

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// A follower forwards what only the leader may answer. Right after a
// leader dies, raft still names it for up to a heartbeat timeout, so a
// forward can find nobody listening. The follower then waits (up to
// MasterConfig.ProxyRetryWait) for raft to name another leader and forwards
// once more, or serves the request itself if it was elected; failing that
// it answers 503 with Retry-After, which tells a client that the request
// was not carried out and may be sent again. A 502 is left only for a
// leader that broke off after the request had reached it.

// retryAfter is the Retry-After of a 503 for want of a leader, in seconds.
const retryAfter = "1"

// writeNoLeader answers 503 with Retry-After and Marathon's error body.
func writeNoLeader(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", retryAfter)
	writeError(w, http.StatusServiceUnavailable, msg)
}

// followerServes reports whether a follower answers r from its own replica:
// an agent's assignments (the handler waits until this replica has applied
// the index the agent has already seen, so the answer is never older than
// what the agent knows). An agent may then long-poll any master, and a
// leader's death does not interrupt the agents attached to followers.
func followerServes(r *http.Request) bool {
	if !strings.HasPrefix(r.URL.Path, "/v1/agents/") {
		return false
	}
	// An agent's notice that it is stopping goes to the master it polls,
	// which sees the poll end.
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/assignments") ||
		r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/stopping")
}

// leaderGate sends a follower's requests to the leader: /v2/events by
// redirect (Marathon ≥ 1.7), everything else by proxy with Marathon's
// X-Marathon-Leader and X-Marathon-Via headers.
func (m *Master) leaderGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if localRequest(r) || followerServes(r) || m.store.IsLeader() {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("X-Marathon-Via") != "" {
			// Forwarded by a master that took us for the leader. Just
			// elected (raft names us, the barrier is still applying the
			// log): serve it once ready, rather than send the client
			// round again. Otherwise leadership is moving; the client
			// asks again.
			if m.store.RaftLeader() && m.awaitLeader(r.Context(), "") == m.cfg.APIAdvertise {
				next.ServeHTTP(w, r)
				return
			}
			writeNoLeader(w, "There is no leader: leadership is changing")
			return
		}
		leader := m.leaderAPI()
		if leader == "" || leader == m.cfg.APIAdvertise {
			leader = m.awaitLeader(r.Context(), "")
			if leader == "" {
				writeNoLeader(w, "There is no leader")
				return
			}
		}
		if r.URL.Path == "/v2/events" && leader != m.cfg.APIAdvertise {
			u := *r.URL
			u.Scheme, u.Host = "http", leader
			http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
			return
		}
		body, ok := m.bufferBody(w, r)
		if !ok {
			return
		}
		for try := 0; try < 2; try++ {
			if leader == m.cfg.APIAdvertise {
				// Elected while the request waited.
				r.Body = io.NopCloser(bytes.NewReader(body))
				next.ServeHTTP(w, r)
				return
			}
			if m.forward(w, r, leader, body) {
				return
			}
			dead := leader
			if try == 1 {
				writeNoLeader(w, fmt.Sprintf("There is no leader: %s, named leader after another that did not answer, does not answer either", dead))
				return
			}
			m.log.Info("the leader does not answer; waiting for raft to name another", "leader", dead)
			if leader = m.awaitLeader(r.Context(), dead); leader == "" {
				writeNoLeader(w, fmt.Sprintf("There is no leader: %s does not answer and no other master has been elected yet", dead))
				return
			}
		}
	})
}

// awaitLeader waits up to ProxyRetryWait for a leader other than not and
// returns its API address (this master's own when it was elected), or ""
// when none came.
func (m *Master) awaitLeader(ctx context.Context, not string) string {
	deadline := time.NewTimer(m.cfg.ProxyRetryWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if m.store.IsLeader() {
			return m.cfg.APIAdvertise
		}
		if l := m.leaderAPI(); l != "" && l != not && l != m.cfg.APIAdvertise {
			return l
		}
		select {
		case <-ctx.Done():
			return ""
		case <-deadline.C:
			return ""
		case <-tick.C:
		}
	}
}

// bufferBody reads the request body (bounded by MaxStatusBody) so that a
// forward that found no leader can be sent again.
func (m *Master) bufferBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, m.cfg.MaxStatusBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	if int64(len(b)) > m.cfg.MaxStatusBody {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", m.cfg.MaxStatusBody))
		return nil, false
	}
	return b, true
}

// forward proxies r to leader. It reports false, having written nothing,
// when the leader could not be reached at all (the request never left),
// so the caller may try another.
func (m *Master) forward(w http.ResponseWriter, r *http.Request, leader string, body []byte) bool {
	unreached := false
	scheme := "http"
	if m.cfg.NodeTLS != nil {
		scheme = "https" // mutual TLS between masters
	}
	target := &url.URL{Scheme: scheme, Host: leader}
	p := &httputil.ReverseProxy{
		Transport: m.proxyTransport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = leader
			pr.Out.Header.Set("X-Marathon-Via", "1.1 "+m.cfg.APIAdvertise)
			pr.Out.Header.Del(HeaderNode)
			if node, ok := NodeIdentity(pr.In); ok {
				pr.Out.Header.Set(HeaderNode, node)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set("X-Marathon-Leader", "http://"+leader)
			resp.Header.Set("X-Marathon-Via", "1.1 "+m.cfg.APIAdvertise)
			return nil
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if notSent(err) && r.Context().Err() == nil {
				unreached = true
				return
			}
			writeError(w, http.StatusBadGateway, fmt.Sprintf("proxying to the leader %s: %v", leader, err))
		},
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	p.ServeHTTP(w, r)
	return !unreached
}

// notSent reports whether err shows that a request never reached its
// server: the connection could not be made.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// newProxyTransport is the transport followers forward with: a dead leader
// on another host is given up on after dialTimeout; with tc (the cluster
// has a token) it speaks mutual TLS.
func newProxyTransport(dialTimeout time.Duration, tc *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: dialTimeout,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}
