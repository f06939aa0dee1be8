package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/chronos"
	"github.com/weftnet/weft/sched/marathon"
)

// setupMaster builds the scheduler with its two frameworks and serves the
// master API on --api-addr.
func (n *node) setupMaster() error {
	raftDir, err := n.subdir("raft")
	if err != nil {
		return err
	}
	apiAdv := n.c.String("api-advertise")
	if apiAdv == "" {
		apiAdv = n.advertised(n.apiLn)
	}

	sc := sched.DefaultStoreConfig()
	sc.Dir = raftDir
	sc.NodeID = n.name
	sc.Logger = n.log
	cfg := sched.DefaultMasterConfig()
	expect := n.c.Int("bootstrap-expect")
	if bind := n.c.String("raft-addr"); bind != "" {
		sc.Bind = bind
		host, port, err := net.SplitHostPort(bind)
		if err != nil {
			return fmt.Errorf("--raft-addr %q: %w", bind, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = n.advertiseHost()
		}
		sc.Advertise = net.JoinHostPort(host, port)
		cfg.RaftPort, _ = strconv.Atoi(port)
		cfg.JoinMasters = true
		if expect >= 2 {
			sc.Bootstrap = false
			cfg.BootstrapExpect = expect
		}
	}
	cfg.Store = sc
	cfg.Members = members{n.mesh}
	cfg.APIAdvertise = apiAdv
	cfg.Domain = n.c.String("domain")
	cfg.Logger = n.log
	cfg.Registry = n.registry
	cfg.Version = Version

	mcfg := marathon.DefaultConfig()
	mcfg.Logger = n.log
	ccfg := chronos.DefaultConfig()
	ccfg.Logger = n.log
	ccfg.LeaderAPI = func() string { return apiAdv }
	ccfg.FailureRetry = n.c.Duration("chronos-failure-retry")
	ccfg.TaskEpsilon = n.c.Duration("chronos-task-epsilon")
	cfg.Frameworks = []sched.Framework{marathon.New(mcfg), chronos.New(ccfg)}

	m, err := sched.NewMaster(cfg)
	if err != nil {
		return err
	}
	n.runs = append(n.runs, m.Run)
	n.serve(n.apiLn, m.Handler(), "master API")
	n.setTags(func() { n.tags.API = apiAdv })
	n.finder.local = "http://" + apiAdv
	n.addr("API", "http://"+n.apiLn.Addr().String()+"  (Marathon /v2, Chronos /v1/scheduler, /metrics)")
	return nil
}
