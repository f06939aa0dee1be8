package sched

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/sched/api"
)

const (
	testToken  = "weft-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	otherToken = "weft-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func identity(t *testing.T, token, name string) *nodetls.Identity {
	t.Helper()
	id, err := nodetls.NewIdentity(token, name, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDeadVoters(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	master := func(id, status string) api.Node {
		return api.Node{ID: id, Name: id, Role: api.RoleMaster, Status: status}
	}
	servers := func(ids ...string) map[string]string {
		out := map[string]string{}
		for _, id := range ids {
			out[id] = id + ":8300"
		}
		return out
	}
	cases := []struct {
		name    string
		servers map[string]string
		nodes   []api.Node
		expect  int
		since   time.Duration // how long the down ones have been down
		want    []string
	}{
		{"replacement joined, failed long enough", servers("m1", "m2", "m3", "m4"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeFailed), master("m4", NodeAlive)}, 3, time.Minute, []string{"m3"}},
		{"failed, but not long enough", servers("m1", "m2", "m3", "m4"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeFailed), master("m4", NodeAlive)}, 3, time.Second, nil},
		{"no replacement yet", servers("m1", "m2", "m3"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeFailed)}, 3, time.Minute, nil},
		{"reaped from gossip counts as down", servers("m1", "m2", "m3", "m4"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m4", NodeAlive)}, 3, time.Minute, []string{"m3"}},
		{"two dead, one replacement: remove only down to the intended size", servers("m1", "m2", "m3", "m4", "m5"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeFailed), master("m4", NodeAlive), master("m5", NodeFailed)}, 3, time.Minute, []string{"m3", "m5"}},
		{"quorum safety: removing one would leave no majority", servers("m1", "m2", "m3", "m4", "m5"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeFailed), master("m4", NodeFailed), master("m5", NodeFailed)}, 1, time.Minute, nil},
		{"healthy majority: every dead one goes", servers("m1", "m2", "m3", "m4", "m5"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeAlive), master("m4", NodeFailed), master("m5", NodeFailed)}, 1, time.Minute, []string{"m4", "m5"}},
		{"the leader itself is never removed", servers("m1"), nil, 1, time.Minute, nil},
		{"left is not dead (removed as left)", servers("m1", "m2", "m3", "m4"),
			[]api.Node{master("m1", NodeAlive), master("m2", NodeAlive), master("m3", NodeLeft), master("m4", NodeAlive)}, 3, time.Minute, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			down := map[string]time.Time{}
			if got := deadVoters("m1", tc.servers, tc.nodes, down, t0, 30*time.Second, tc.expect); len(got) != 0 {
				t.Fatalf("at first sight: %v", got)
			}
			got := deadVoters("m1", tc.servers, tc.nodes, down, t0.Add(tc.since), 30*time.Second, tc.expect)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRaftOverMutualTLS: masters of one token form raft over mutual TLS; a
// master of another token is never made a voter; a raw raft RPC with a
// higher term from a host without the token changes nothing.
func TestRaftOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("raft over TCP takes a few seconds")
	}
	members := NewStaticMembers()
	raftAddr := map[string]string{}
	start := func(id, token string, bootstrap bool) *Master {
		raftAddr[id] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := DefaultMasterConfig()
		cfg.Members = members
		cfg.Store.NodeID = id
		cfg.Store.Bind = raftAddr[id]
		cfg.Store.Bootstrap = bootstrap
		cfg.Store.TLS = identity(t, token, id)
		cfg.NodeTLS = cfg.Store.TLS
		cfg.JoinMasters = true
		cfg.PeerRaftAddr = func(n api.Node) string { return raftAddr[n.ID] }
		m, err := NewMaster(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = m.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return m
	}
	m1 := start("m1", testToken, true)
	m2 := start("m2", testToken, false)
	stranger := start("x9", otherToken, false)
	node := func(id string) api.Node {
		return api.Node{ID: id, Name: id, Role: api.RoleMaster, Status: NodeAlive, Address: "127.0.0.1"}
	}
	members.Set([]api.Node{node("m1"), node("m2"), node("x9")})
	eventually(t, 15*time.Second, "m2 joins as a voter over mutual TLS", func() bool {
		_, ok := m1.Store().RaftServers()["m2"]
		return ok && m2.Store().Raft().LastIndex() > 0
	})
	eventually(t, 10*time.Second, "m1 leads a cluster of m1 and m2", func() bool { return m1.Store().IsLeader() })
	time.Sleep(500 * time.Millisecond) // x9 had every chance the loop gives
	if _, ok := m1.Store().RaftServers()["x9"]; ok {
		t.Fatal("a master of another token was made a voter")
	}
	if stranger.Store().Raft().LastIndex() != 0 {
		t.Fatal("the stranger received raft state")
	}

	// A raw raft RPC: a heartbeat with a far higher term over plain TCP.
	term := m1.Store().Raft().CurrentTerm()
	tcp, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var resp raft.AppendEntriesResponse
	err = tcp.AppendEntries("m1", raft.ServerAddress(raftAddr["m1"]), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("evil"), Addr: []byte("127.0.0.1:1")},
		Term:      term + 100,
	}, &resp)
	if err == nil {
		t.Fatalf("a raw raft RPC without the token was answered: %+v", resp)
	}
	// And one with a certificate of another token.
	evil, err := newTLSStream("127.0.0.1:0", nil, identity(t, otherToken, "m9"))
	if err != nil {
		t.Fatal(err)
	}
	et := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: evil, MaxPool: 1, Timeout: time.Second})
	defer et.Close()
	if err := et.AppendEntries("m1", raft.ServerAddress(raftAddr["m1"]), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("evil"), Addr: []byte("127.0.0.1:1")}, Term: term + 100,
	}, &resp); err == nil {
		t.Fatal("a raft RPC with a certificate of another token was answered")
	}
	time.Sleep(300 * time.Millisecond)
	if got := m1.Store().Raft().CurrentTerm(); got != term || !m1.Store().RaftLeader() {
		t.Fatalf("after the attack: term %d (was %d), leader %v", got, term, m1.Store().RaftLeader())
	}
}

// TestNodeOnlyEndpoints: with a cluster token, assignments, status and lb
// reports need a node certificate; a master's proxy vouches for nodes only.
func TestNodeOnlyEndpoints(t *testing.T) {
	members := NewStaticMembers(agentNode("a1", 4, 4096))
	var srv *httptest.Server
	tm := startMasterWith(t, members, func(cfg *MasterConfig) { cfg.NodeTLS = identity(t, testToken, "m1") })
	// Serve the same handler the way weft does: TLS and plain on one port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = &httptest.Server{Listener: nodetls.NewListener(ln, tm.cfg.NodeTLS.APIServerConfig(), nodetls.FromLoopbackOr()), Config: &http.Server{Handler: tm.Handler()}}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := ln.Addr().String()

	person := api.NewClient("http://" + addr)
	tr := &http.Transport{TLSClientConfig: identity(t, testToken, "a1").ClientConfig()}
	node := &api.Client{Base: "https://" + addr, HTTP: &http.Client{Transport: tr, Timeout: 5 * time.Second}, Stream: &http.Client{Transport: tr}}
	strangerTr := &http.Transport{TLSClientConfig: identity(t, otherToken, "a1").ClientConfig()}
	stranger := &api.Client{Base: "https://" + addr, HTTP: &http.Client{Transport: strangerTr, Timeout: 5 * time.Second}, Stream: &http.Client{Transport: strangerTr}}
	ctx := context.Background()

	if _, err := person.Assignments(ctx, "a1", 0, 0); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("assignments without a node certificate: %v, want 403", err)
	}
	if err := person.PostStatus(ctx, "a1", nil); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("status without a node certificate: %v, want 403", err)
	}
	if _, err := person.Do(ctx, http.MethodPost, "/v1/lb/problems", map[string]any{"appId": "/x", "node": "a1"}, nil); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("lb problems without a node certificate: %v, want 403", err)
	}
	if _, err := stranger.Assignments(ctx, "a1", 0, 0); err == nil {
		t.Fatal("a certificate of another token was accepted")
	}
	if _, err := node.Assignments(ctx, "a1", 0, 0); err != nil {
		t.Fatalf("assignments with a node certificate: %v", err)
	}
	if err := node.PostStatus(ctx, "a1", nil); err != nil {
		t.Fatalf("status with a node certificate: %v", err)
	}
	// A node acts only for itself: a1's certificate gets 403 for a2's
	// assignments, status and lb reports, naming both.
	if _, err := node.Assignments(ctx, "a2", 0, 0); api.StatusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), `"a1"`) {
		t.Fatalf("a1 pulling a2's assignments: %v, want 403 naming a1", err)
	}
	if _, err := node.AssignmentChanges(ctx, "a2", 0, 0); api.StatusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), `"a1"`) {
		t.Fatalf("a1 pulling a2's assignment deltas: %v, want 403 naming a1", err)
	}
	if _, err := person.AssignmentChanges(ctx, "a1", 0, 0); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("assignment deltas without a node certificate: %v, want 403", err)
	}
	forged := []api.TaskStatus{{TaskID: "some.task", State: api.TaskFailed, Message: "forged"}}
	if err := node.PostStatus(ctx, "a2", forged); api.StatusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), `not for "a2"`) {
		t.Fatalf("a1 posting a2's status: %v, want 403", err)
	}
	if _, err := node.Do(ctx, http.MethodPost, "/v1/lb/problems", map[string]any{"appId": "/x", "node": "a2", "problems": []string{"forged"}}, nil); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("a1 reporting lb problems as a2: %v, want 403", err)
	}
	if _, err := node.Do(ctx, http.MethodPost, "/v1/lb/problems", map[string]any{"appId": "/x", "node": "a1", "problems": []string{}}, nil); err != nil {
		t.Fatalf("a1 reporting its own lb problems: %v", err)
	}
	// People's requests still work without a certificate.
	if _, err := person.Nodes(ctx); err != nil {
		t.Fatalf("GET /v1/nodes in plain HTTP on loopback: %v", err)
	}

	// NodeIdentity of a proxied request: the proxy's certificate alone does
	// not make the original caller a node.
	viaM2 := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{identity(t, testToken, "m2").Cert.Leaf}}}
	for _, tc := range []struct {
		name      string
		tls       *tls.ConnectionState
		via, for_ string
		want      string
	}{
		{"no TLS", nil, "", "", ""},
		{"no TLS, forged headers", nil, "1.1 m2", "a1", ""},
		{"a node", viaM2, "", "", "m2"},
		{"proxied for a person", viaM2, "1.1 m2", "", ""},
		{"proxied for a node", viaM2, "1.1 m2", "a1", "a1"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.TLS = tc.tls
		if tc.via != "" {
			req.Header.Set("X-Marathon-Via", tc.via)
		}
		if tc.for_ != "" {
			req.Header.Set(HeaderNode, tc.for_)
		}
		if got, ok := NodeIdentity(req); got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: NodeIdentity = %q %v, want %q", tc.name, got, ok, tc.want)
		}
	}
}
