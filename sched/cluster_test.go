package sched

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type clusterMaster struct {
	*Master
	id     string
	srv    *httptest.Server
	fw     *testFramework
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *clusterMaster) stop() {
	c.cancel()
	c.srv.CloseClientConnections()
	c.srv.Close()
	<-c.done
}

func TestThreeMastersElectProxyAndFailOver(t *testing.T) {
	if testing.Short() {
		t.Skip("raft over TCP takes a few seconds")
	}
	members := NewStaticMembers(agentNode("a1", 4, 4096))
	raftAddr := map[string]string{}
	var masters []*clusterMaster
	var nodes []api.Node
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("m%d", i)
		raftAddr[id] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		srv := httptest.NewUnstartedServer(nil)
		cfg := DefaultMasterConfig()
		cfg.Members = members
		cfg.Store.NodeID = id
		cfg.Store.Bind = raftAddr[id]
		cfg.BootstrapExpect = 3
		if testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("master", id)
		}
		cfg.PeerRaftAddr = func(n api.Node) string { return raftAddr[n.ID] }
		cfg.AllocInterval = 50 * time.Millisecond
		cfg.APIAdvertise = srv.Listener.Addr().String()
		fw := &testFramework{name: "tiny", cpus: 0.5, mem: 10, prefix: id + "-"}
		cfg.Frameworks = []Framework{fw}
		m, err := NewMaster(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = m.Handler()
		srv.Start()
		ctx, cancel := context.WithCancel(context.Background())
		cm := &clusterMaster{Master: m, id: id, srv: srv, fw: fw, cancel: cancel, done: make(chan struct{})}
		go func() { _ = m.Run(ctx); close(cm.done) }()
		masters = append(masters, cm)
		nodes = append(nodes, api.Node{ID: id, Name: id, Role: api.RoleMaster, Status: NodeAlive, Address: "127.0.0.1", API: cfg.APIAdvertise})
	}
	stopped := map[string]bool{}
	t.Cleanup(func() {
		for _, cm := range masters {
			if !stopped[cm.id] {
				cm.stop()
			}
		}
	})
	// The masters appear in membership one after another, as gossip would
	// show them; none bootstraps before it sees all three.
	for i := range nodes {
		members.Set(append(members.Nodes(), nodes[i]))
		if i < 1 { // each master counts itself: two in membership make three
			time.Sleep(100 * time.Millisecond)
			for _, cm := range masters {
				if cm.Store().hasRaftState() {
					t.Fatalf("%s bootstrapped with %d of 3 masters", cm.id, i+1)
				}
			}
		}
	}
	leaderOf := func(ms []*clusterMaster) *clusterMaster {
		for _, cm := range ms {
			if cm.Store().IsLeader() {
				return cm
			}
		}
		return nil
	}
	eventually(t, 15*time.Second, "a leader among three", func() bool { return leaderOf(masters) != nil })
	leader := leaderOf(masters)
	var follower *clusterMaster
	for _, cm := range masters {
		if cm != leader {
			follower = cm
			break
		}
	}
	eventually(t, 5*time.Second, "the follower knows the leader", func() bool { return follower.leaderAPI() == leader.cfg.APIAdvertise })

	ctx := context.Background()
	fc := api.NewClient(follower.srv.URL)
	var info map[string]any
	hdr, err := fc.Do(ctx, http.MethodGet, "/v2/info", nil, &info)
	if err != nil {
		t.Fatal(err)
	}
	if info["elected"] != true || hdr.Get("X-Marathon-Leader") != "http://"+leader.cfg.APIAdvertise || hdr.Get("X-Marathon-Via") == "" {
		t.Fatalf("proxied /v2/info: elected %v headers %v", info["elected"], hdr)
	}
	var ld map[string]string
	if _, err := fc.Do(ctx, http.MethodGet, "/v2/leader", nil, &ld); err != nil || ld["leader"] != leader.cfg.APIAdvertise {
		t.Fatalf("follower /v2/leader: %v %v", ld, err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(follower.srv.URL + "/v2/events?event_type=status_update_event")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "http://"+leader.cfg.APIAdvertise+"/v2/events?event_type=status_update_event" {
		t.Fatalf("follower /v2/events: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Only the leader's framework places tasks; every master has them.
	for _, cm := range masters {
		cm.fw.add(2)
	}
	eventually(t, 10*time.Second, "tasks replicated to every master", func() bool {
		for _, cm := range masters {
			if len(tasksOf(cm.Store())) != 2 {
				return false
			}
		}
		return true
	})
	// An agent reporting through the follower reaches the leader.
	var taskID string
	for id := range tasksOf(leader.Store()) {
		taskID = id
	}
	if err := fc.PostStatus(ctx, "a1", []api.TaskStatus{{TaskID: taskID, State: api.TaskRunning}}); err != nil {
		t.Fatal(err)
	}
	if s := tasksOf(leader.Store())[taskID].Task.State; s != api.TaskRunning {
		t.Fatalf("status through the follower: %s", s)
	}
	// A blocking assignments query through the follower is proxied and
	// wakes on the leader's write.
	as, err := fc.Assignments(ctx, "a1", 0, time.Second)
	if err != nil || len(as.Tasks) != 2 {
		t.Fatalf("assignments through the follower: %+v %v", as, err)
	}
	woke := make(chan error, 1)
	go func() {
		_, err := fc.Assignments(ctx, "a1", as.Index, 10*time.Second)
		woke <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := fc.PostStatus(ctx, "a1", []api.TaskStatus{{TaskID: taskID, State: api.TaskFinished}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("proxied blocking query did not wake")
	}

	// An agent that hangs up its poll on the follower and answers no
	// gossip ping: the follower tells the leader, which pings it too and
	// shows it failed; once it answers pings again it is alive.
	members.Set(append(members.Nodes(), agentNode("a9", 1, 512)))
	members.SetPing(func(name string) error {
		if name == "a9" {
			return errors.New("no ack")
		}
		return nil
	})
	statusOn := func(cm *clusterMaster, id string) string {
		for _, n := range cm.Nodes() {
			if n.ID == id {
				return n.Status
			}
		}
		return ""
	}
	as9, err := fc.Assignments(ctx, "a9", 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pctx, hangUp := context.WithCancel(ctx)
	go func() { _, _ = fc.Assignments(pctx, "a9", as9.Index, 30*time.Second) }()
	eventually(t, 3*time.Second, "a9's poll open on the follower", func() bool {
		follower.polls.mu.Lock()
		defer follower.polls.mu.Unlock()
		return follower.polls.open["a9"] > 0
	})
	hungUp := time.Now()
	hangUp()
	eventually(t, 5*time.Second, "the leader shows a9 failed", func() bool { return statusOn(leader, "a9") == NodeFailed })
	t.Logf("a9 hung up on the follower: the leader shows it failed %v later", time.Since(hungUp).Round(time.Millisecond))
	members.SetPing(nil)
	eventually(t, 5*time.Second, "a9 answers pings: alive again", func() bool { return statusOn(leader, "a9") == NodeAlive })
	var without []api.Node
	for _, n := range members.Nodes() {
		if n.ID != "a9" {
			without = append(without, n)
		}
	}
	members.Set(without)

	// The leader dies: the other two elect a new one, which keeps placing.
	leader.stop()
	stopped[leader.id] = true
	members.SetStatus(leader.id, NodeFailed)
	var rest []*clusterMaster
	for _, cm := range masters {
		if cm != leader {
			rest = append(rest, cm)
		}
	}
	eventually(t, 15*time.Second, "a new leader", func() bool { return leaderOf(rest) != nil })
	nl := leaderOf(rest)
	eventually(t, 10*time.Second, "the new leader's framework placed its tasks", func() bool { return len(tasksOf(nl.Store())) == 4 })
	st, err := api.NewClient(nl.srv.URL).Watch(ctx, 0, time.Second)
	if err != nil || st.Leader != nl.cfg.APIAdvertise {
		t.Fatalf("state after failover: leader %q err %v", st.Leader, err)
	}

	// DELETE /v2/leader through the follower: the leader abdicates and the
	// follower takes over.
	var other *clusterMaster
	for _, cm := range rest {
		if cm != nl {
			other = cm
		}
	}
	eventually(t, 5*time.Second, "the other master knows the new leader", func() bool { return other.leaderAPI() == nl.cfg.APIAdvertise })
	var msg map[string]string
	if _, err := api.NewClient(other.srv.URL).Do(ctx, http.MethodDelete, "/v2/leader", nil, &msg); err != nil || msg["message"] != "Leadership abdicated" {
		t.Fatalf("DELETE /v2/leader via the follower: %v %v", msg, err)
	}
	eventually(t, 10*time.Second, "leadership moved", func() bool { return other.Store().IsLeader() })
	// Frameworks run only on the leader: the old one's Run was cancelled.
	eventually(t, 5*time.Second, "frameworks follow leadership", func() bool {
		return other.fw.running.Load() == 1 && nl.fw.running.Load() == 0
	})
}
