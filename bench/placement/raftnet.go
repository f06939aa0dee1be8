package main

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/marathon"
)

// runRaftTLS places apps × instances tasks on three masters whose raft
// logs are on disk and replicate over TCP, then over mutual TLS with node
// certificates of one token. After one warm-up run of each it runs pairs
// in alternating order (TCP then TLS, TLS then TCP, ...), so that drift
// on a shared machine falls on both sides of a pair; the figure is the
// median over the pairs of TLS placements/s over TCP placements/s.
func runRaftTLS(agents, apps, instances, pairs int, timeout time.Duration) (float64, string, error) {
	token, err := mesh.GenerateToken()
	if err != nil {
		return 0, "", err
	}
	one := func(useTLS bool) (float64, string, error) {
		res, err := runMarathonOn(func(nodes []api.Node) (*sched.Master, *httptest.Server, func(), error) {
			return startCluster(nodes, token, useTLS)
		}, agents, apps, instances, 0, timeout)
		if err != nil {
			return 0, "", fmt.Errorf("tls=%v: %w", useTLS, err)
		}
		// From the first PUT to the last placement: the commits through
		// raft are all of it (the placement window alone is short and
		// swings with the machine's other load).
		w := res.elapsed
		rate := float64(res.placed) / w.Seconds()
		name := "3 masters, raft on disk over TCP"
		if useTLS {
			name = "3 masters, raft on disk over mutual TLS"
		}
		return rate, fmt.Sprintf("%-55s %6d placed in %7.3fs = %8.0f placements/s\n", name, res.placed, w.Seconds(), rate), nil
	}
	out := ""
	for _, useTLS := range []bool{false, true} { // warm-up, not counted
		if _, _, err := one(useTLS); err != nil {
			return 0, "", err
		}
	}
	var ratios []float64
	for i := 0; i < pairs; i++ {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		rate := map[bool]float64{}
		for _, useTLS := range order {
			r, line, err := one(useTLS)
			if err != nil {
				return 0, "", err
			}
			rate[useTLS] = r
			out += line
		}
		ratios = append(ratios, rate[true]/rate[false])
	}
	sort.Float64s(ratios)
	ratio := ratios[len(ratios)/2]
	out += fmt.Sprintf("%-55s %.2f× median of %d pairs (each %.2f..%.2f; target ≥ 0.9×)\n", "raft over mutual TLS / over TCP", ratio, pairs, ratios[0], ratios[len(ratios)-1])
	return ratio, out, nil
}

// startCluster starts three masters on loopback that bootstrap one raft
// cluster (raft in temporary dirs on disk, over TCP or mutual TLS) and
// returns the leader with its API.
func startCluster(agentNodes []api.Node, token string, useTLS bool) (*sched.Master, *httptest.Server, func(), error) {
	dir, err := os.MkdirTemp("", "weft-bench-raft-")
	if err != nil {
		return nil, nil, nil, err
	}
	ids := []string{"m1", "m2", "m3"}
	raftAddr := map[string]string{}
	nodes := append([]api.Node{}, agentNodes...)
	for _, id := range ids {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		raftAddr[id] = l.Addr().String()
		l.Close()
		nodes = append(nodes, api.Node{ID: id, Name: id, Role: api.RoleMaster, Status: sched.NodeAlive, Address: "127.0.0.1"})
	}
	members := sched.NewStaticMembers(nodes...)
	type started struct {
		m    *sched.Master
		srv  *httptest.Server
		stop func()
	}
	var all []started
	stopAll := func() {
		for _, s := range all {
			s.stop()
		}
		os.RemoveAll(dir)
	}
	for _, id := range ids {
		cfg := sched.DefaultMasterConfig()
		cfg.Members = members
		cfg.Frameworks = []sched.Framework{marathon.New(marathon.DefaultConfig())}
		cfg.Store.NodeID = id
		cfg.Store.Dir = filepath.Join(dir, id)
		cfg.Store.Bind = raftAddr[id]
		cfg.BootstrapExpect = len(ids)
		cfg.PeerRaftAddr = func(n api.Node) string { return raftAddr[n.ID] }
		if useTLS {
			nid, err := nodetls.NewIdentity(token, id, []net.IP{net.IPv4(127, 0, 0, 1)})
			if err != nil {
				stopAll()
				return nil, nil, nil, err
			}
			cfg.Store.TLS, cfg.NodeTLS = nid, nid
		}
		srv := httptest.NewUnstartedServer(nil)
		cfg.APIAdvertise = srv.Listener.Addr().String()
		m, err := sched.NewMaster(cfg)
		if err != nil {
			stopAll()
			return nil, nil, nil, err
		}
		srv.Config.Handler = m.Handler()
		srv.Start()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = m.Run(ctx); close(done) }()
		all = append(all, started{m, srv, func() { cancel(); srv.Close(); <-done }})
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range all {
			if s.m.Store().IsLeader() {
				return s.m, s.srv, stopAll, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopAll()
	return nil, nil, nil, fmt.Errorf("no leader among 3 masters within 30 s")
}
