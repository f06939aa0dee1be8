package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/chronos"
	"github.com/weftnet/weft/sched/marathon"
	"github.com/weftnet/weft/ui"
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
		apiAdv = n.advertisedOn(n.apiLns)
	}

	sc := sched.DefaultStoreConfig()
	sc.Dir = raftDir
	sc.NodeID = n.name
	sc.Logger = n.log
	if sc.Timing, err = sched.RaftProfile(n.c.String("raft-profile")); err != nil {
		return fmt.Errorf("--raft-profile: %w", err)
	}
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
			if ov := n.overlayIP(); ov != nil {
				// With the mesh, raft binds to the overlay address only.
				sc.Bind = net.JoinHostPort(ov.String(), port)
			}
		}
		sc.Advertise = net.JoinHostPort(host, port)
		// Raft over mutual TLS: a peer without the token fails the handshake.
		sc.TLS = n.id
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
	cfg.Domain = n.domain()
	cfg.Logger = n.log
	cfg.Registry = n.registry
	cfg.Version = Version
	cfg.Pprof = n.c.Bool("pprof")
	cfg.NodeTLS = n.id
	cfg.DeadServerAfter = n.c.Duration("dead-master-after")
	cfg.NodeSecret = n.nodeSecret()
	if tok := n.clusterToken(); tok != "" {
		key, err := sched.DeriveSecretsKey(tok)
		if err != nil {
			return fmt.Errorf("deriving the secrets key from the join token: %w", err)
		}
		cfg.SecretsKey = key
	}
	cfg.Safe = n.c.Bool("safe")

	mcfg := marathon.DefaultConfig()
	mcfg.Logger = n.log
	mcfg.ReservedServicePorts = n.reservedServicePorts()
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
	web, err := ui.New(ui.Config{
		API:         m.Handler(),
		AgentClient: n.agentHTTPClient(),
		AgentScheme: n.agentScheme(),
		LocalMesh:   func() any { return n.mesh.Status() },
		LocalNode:   n.name,
		Logger:      n.log,
		Index:       m.Store().Index,
		Changes:     func(after uint64) api.Changes { return m.Changes(after, "") },
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	web.Mount(mux)
	mux.Handle("/", m.Handler())
	n.setTags(func() { n.tags.API, n.tags.Raft = apiAdv, sc.Advertise })
	n.finder.local = apiAdv
	tlsOnly := false
	for _, l := range n.apiLns {
		n.serve(l, mux, "master API")
		n.addr("API", n.describe(l, n.apiTLS != nil, "plain HTTP from loopback and the overlay, TLS from elsewhere")+"  (Marathon /v2, Chronos /v1/scheduler, /metrics, the UI at /ui/)")
		tlsOnly = tlsOnly || (n.apiTLS != nil && n.needsTLS(l))
	}
	if tlsOnly && n.id != nil {
		if n.id.APICert != nil {
			n.addr("API TLS", "certificate of --api-tls-cert, sha256 "+nodetls.Fingerprint(n.id.APICert.Certificate[0]))
		} else {
			n.addr("API TLS", "certificate of the cluster CA ("+filepath.Join(n.dataDir, "ca.pem")+"), sha256 "+nodetls.Fingerprint(n.id.Cert.Certificate[0]))
		}
	}
	return nil
}

// reservedServicePorts are this node's own listener ports, so the master
// never hands one out as a service port: with `weft up` the lb's vhost
// frontend (127.0.0.1:10080) lies inside Marathon's 10000–20000 range, and
// an app given 10080 could never be served.
func (n *node) reservedServicePorts() map[int]string {
	out := map[int]string{}
	add := func(flag, what string) {
		_, port, err := net.SplitHostPort(n.c.String(flag))
		if err != nil {
			return
		}
		if p, err := strconv.Atoi(port); err == nil && p > 0 {
			out[p] = what
		}
	}
	if !n.c.Bool("no-lb") {
		add("lb-http-addr", "weft's lb HTTP vhost frontend (--lb-http-addr)")
		add("lb-https-addr", "weft's lb HTTPS vhost frontend (--lb-https-addr)")
		add("lb-admin-addr", "weft's lb admin endpoints (--lb-admin-addr)")
		add("lb-appid-addr", "weft's lb X-Marathon-App-Id frontend (--lb-appid-addr)")
	}
	return out
}
