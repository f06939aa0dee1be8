package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/dns"
	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/lb"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Roles a node process can play.
const (
	roleUp     = "master+agent"
	roleMaster = "master"
	roleAgent  = "agent"
)

func init() {
	registerCommand(&cli.Command{
		Name:  "up",
		Usage: "run a one-node cluster on this machine: master, agent, DNS and load balancer in one process",
		Description: "The embedded default. Listens on loopback only, runs no overlay unless --mesh is given,\n" +
			"and needs no root. Ctrl-C stops it cleanly; starting it again on the same data dir\n" +
			"keeps every app and job.",
		Flags:  append(append(nodeFlags(roleUp), meshFlags()...), tlsFlags(roleUp)...),
		Action: func(c *cli.Context) error { return runNode(c, roleUp) },
	})
	registerCommand(&cli.Command{
		Name:   "master",
		Usage:  "run a master (scheduler, Marathon and Chronos APIs) that agents join",
		Flags:  append(append(nodeFlags(roleMaster), meshFlags()...), tlsFlags(roleMaster)...),
		Action: func(c *cli.Context) error { return runNode(c, roleMaster) },
	})
	registerCommand(&cli.Command{
		Name:   "agent",
		Usage:  "run an agent that joins a cluster and runs its tasks",
		Flags:  append(append(nodeFlags(roleAgent), meshFlags()...), tlsFlags(roleAgent)...),
		Action: func(c *cli.Context) error { return runNode(c, roleAgent) },
	})
	registerCommand(&cli.Command{
		Name:  "node",
		Usage: "cluster members",
		Subcommands: []*cli.Command{{
			Name:   "list",
			Usage:  "role, site, overlay address, resources and health of every node",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: nodeList,
		}},
	})
}

func hasRole(role, r string) bool { return role == r || role == roleUp }

// nodeFlags are the flags of `weft up`, `weft master` and `weft agent`;
// their defaults follow DESIGN.md's table, which differs for `weft up`.
func nodeFlags(role string) []cli.Flag {
	up := role == roleUp
	pick := func(upv, other string) string {
		if up {
			return upv
		}
		return other
	}
	str := func(name, val, usage string) cli.Flag {
		return &cli.StringFlag{Name: name, Value: val, Usage: usage, EnvVars: envName(name)}
	}
	fs := []cli.Flag{
		str("data-dir", defaultDataDir(), "where raft state, keys, sandboxes and claims are kept"),
		str("node-name", "", "this node's name in the cluster (default: the hostname)"),
		str("site", "default", "the site this node is at (constraints, DNS and lb prefer same-site tasks)"),
		&cli.StringSliceFlag{Name: "join", Usage: "HOST[:PORT] of a node already in the cluster (repeatable)", EnvVars: envName("join")},
		str("log-level", "info", "debug, info, warn or error"),
		str("agent-addr", pick("127.0.0.1:0", "0.0.0.0:5051"), "the node-local agent API (sandbox logs, local status, mesh status)"),
		str("domain", "pcm", "the DNS domain tasks are named under"),
	}
	if role != roleAgent {
		fs = append(fs,
			str("api-addr", pick("127.0.0.1:8080", "0.0.0.0:8080"), "the master API: Marathon /v2, Chronos /v1/scheduler, weft /v1, /metrics"),
			str("api-advertise", "", "host:port agents and clients reach the master API at (default: the overlay or host address)"),
			str("raft-addr", pick("", "0.0.0.0:8300"), "raft's TCP address (empty: in-process, one voter)"),
			&cli.IntFlag{Name: "bootstrap-expect", Value: 1, Usage: "how many masters form the raft cluster", EnvVars: envName("bootstrap-expect")},
			str("raft-profile", "lan", "raft timeouts: lan (masters on one LAN or region; a dead leader is replaced in about 0.3-0.9 s) or wan (masters across sites; about 1.5-3.5 s, robust to slow lossy links)"),
			&cli.DurationFlag{Name: "chronos-failure-retry", Value: 60 * time.Second, Usage: "delay before a failed job run is retried (Chronos's --failure_retry)", EnvVars: envName("chronos-failure-retry")},
			&cli.BoolFlag{Name: "safe", Usage: "start with every framework paused (nothing is deployed, scaled or run) so an app or job that takes weft down can be deleted", EnvVars: envName("safe")},
			&cli.BoolFlag{Name: "pprof", Usage: "serve Go's profiler (net/http/pprof) under /debug/pprof/ on the master API", EnvVars: envName("pprof")},
			&cli.DurationFlag{Name: "chronos-task-epsilon", Value: 60 * time.Second, Usage: "default epsilon: a run missed by more is skipped (Chronos's --task_epsilon)", EnvVars: envName("chronos-task-epsilon")},
		)
	}
	if role != roleMaster {
		fs = append(fs,
			&cli.StringSliceFlag{Name: "attribute", Usage: "KEY=VALUE attribute for constraints (repeatable)", EnvVars: envName("attribute")},
			str("role", "*", "the Mesos resource role of this agent's resources (e.g. slave_public)"),
			&cli.Float64Flag{Name: "cpus", Usage: "cpus offered (default: the machine's)", EnvVars: envName("cpus")},
			&cli.Float64Flag{Name: "mem", Usage: "memory offered in MB (default: the machine's less 1 GB)", EnvVars: envName("mem")},
			&cli.Float64Flag{Name: "disk", Usage: "disk offered in MB (default: the data dir's free space)", EnvVars: envName("disk")},
			str("ports", "31000-32000", "host port ranges offered to tasks"),
			str("docker-host", "", "Docker Engine address (default: DOCKER_HOST or the local socket)"),
			&cli.BoolFlag{Name: "no-docker", Usage: "do not run Docker tasks on this agent", EnvVars: envName("no-docker")},
			str("volume-root", "", "host directory that Docker volumes of tasks must be under (empty: no host volumes)"),
			str("task-user", "nobody", "the user process tasks run as when the agent runs as root (Docker tasks keep Docker's user handling)"),
			&cli.StringSliceFlag{Name: "allowed-task-users", Usage: "users an app's \"user\" field may name to run as instead of --task-user (repeatable; root only if listed)", EnvVars: envName("allowed-task-users")},
			&cli.BoolFlag{Name: "no-cgroups", Usage: "run process tasks without cgroups: no memory or cpu limits and no usage figures", EnvVars: envName("no-cgroups")},
			&cli.BoolFlag{Name: "cgroups-cpu-quota", Usage: "also cap each process task at its cpus with a CFS quota (Mesos's --cgroups_enable_cfs); without it cpus are shares", EnvVars: envName("cgroups-cpu-quota")},
			&cli.DurationFlag{Name: "gc-delay", Value: agent.DefaultSandboxKeep, Usage: "how long the sandbox of a finished task is kept at most (Mesos's --gc_delay); less as the disk fills, see --gc-disk-headroom", EnvVars: envName("gc-delay")},
			&cli.Float64Flag{Name: "gc-disk-headroom", Value: agent.DefaultGCDiskHeadroom, Usage: "fraction of the sandbox disk to keep free: sandboxes are kept gc-delay * max(0, 1 - headroom - disk use) (Mesos's --gc_disk_headroom)", EnvVars: envName("gc-disk-headroom")},
		)
	}
	fs = append(fs,
		str("dns-addr", pick("127.0.0.1:8053", ""), "DNS listen address (default on master/agent: port 53 of the overlay address)"),
		&cli.BoolFlag{Name: "dns-local", Usage: "also serve DNS on 127.0.0.1:53", EnvVars: envName("dns-local")},
		str("dns-http-addr", "", "Mesos-DNS HTTP API address (/v1/hosts, /v1/services, ...); empty: off"),
		str("dns-config", "", "a Mesos-DNS config.json: weft's DNS takes its domain, ttl, resolvers, externalon, timeout, listener and port, HTTP API settings, SOA fields, srvRecordDefaultWeight, enforceRFC952 and IPSources (flags given on the command line win); the settings weft keeps without honouring are logged as warnings"),
		&cli.IntFlag{Name: "dns-ttl", Value: 5, Usage: "TTL of weft's DNS answers, in seconds", EnvVars: envName("dns-ttl")},
		&cli.StringSliceFlag{Name: "dns-upstream", Usage: "upstream resolver HOST[:PORT] for other names (default: /etc/resolv.conf)", EnvVars: envName("dns-upstream")},
		&cli.BoolFlag{Name: "no-dns-forward", Usage: "answer REFUSED for names outside the domain", EnvVars: envName("no-dns-forward")},
		&cli.BoolFlag{Name: "no-dns", Usage: "run no DNS server", EnvVars: envName("no-dns")},
		&cli.BoolFlag{Name: "no-host-dns", Usage: "leave this host's resolver alone (default on master/agent with the overlay: the domain goes to weft's DNS, through systemd-resolved or a block in /etc/resolv.conf undone on stop)", EnvVars: envName("no-host-dns")},
		&cli.StringFlag{Name: "resolv-conf", Value: "/etc/resolv.conf", Usage: "the resolv.conf host DNS manages when systemd-resolved does not run", EnvVars: envName("resolv-conf"), Hidden: true},
		str("lb-http-addr", pick("127.0.0.1:10080", ":80"), "HTTP virtual hosts"),
		str("lb-https-addr", pick("", ":443"), "HTTPS virtual hosts (needs --lb-certs)"),
		&cli.StringSliceFlag{Name: "lb-certs", Usage: "PEM files with certificate and key for HTTPS vhosts", EnvVars: envName("lb-certs")},
		&cli.StringSliceFlag{Name: "lb-group", Value: cli.NewStringSlice("external"), Usage: "HAPROXY_GROUP values this lb serves (* for all)", EnvVars: envName("lb-group")},
		str("lb-admin-addr", pick("127.0.0.1:9090", ":9090"), "marathon-lb admin endpoints (/_haproxy_health_check, ...)"),
		str("lb-appid-addr", pick("127.0.0.1:9091", ":9091"), "routing by X-Marathon-App-Id"),
		str("lb-bind", pick("127.0.0.1", ""), "address service ports bind to (empty: all)"),
		&cli.BoolFlag{Name: "no-lb", Usage: "run no load balancer", EnvVars: envName("no-lb")},
		&cli.IntFlag{Name: "lb-max-conns", Value: lb.DefaultMaxConns, Usage: "client connections the lb holds open at once (more wait in the backlog); at most a quarter of the open file limit", EnvVars: envName("lb-max-conns")},
	)
	return fs
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// node is one weft process and the roles it runs.
type node struct {
	c           *cli.Context
	role        string
	log         *slog.Logger
	name        string
	site        string
	dataDir     string
	registry    *prometheus.Registry
	mesh        *mesh.Mesh
	meshOverlay bool       // the WireGuard overlay runs, not only gossip
	tagsMu      sync.Mutex // guards tags
	finder      *masterFinder
	watcher     *api.Watcher      // the node's one change watch of the master, shared by dns and lb
	tags        api.Node          // the scheduling facts this node gossips
	apiLns      []net.Listener    // the master API: overlay and loopback, or as --api-addr says
	agentLns    []net.Listener    // the agent API
	token       string            // the cluster join token ("" for none)
	id          *nodetls.Identity // this node's certificate under the cluster CA (nil without a token)
	apiTLS      *tls.Config       // what the master API serves TLS with (nil: plain only)

	nodeTransportOnce sync.Once
	nodeTransport     http.RoundTripper             // to other nodes, over mutual TLS
	localMux          *http.ServeMux                // served on --agent-addr
	runs              []func(context.Context) error // roles that stop last (servers, master, dns, lb)
	firstRuns         []func(context.Context) error // roles that stop first (the agent)
	closers           []func()
	nofile            uint64      // the open file limit in force
	addrLines         [][2]string // what printAddrs prints
	nodeSecretV       string      // see nodeSecret
	dnsFile           *dns.Config // what --dns-config says (nil without it)
}

// clusterToken is the join token this node was given ("" for none).
func (n *node) clusterToken() string { return n.token }

// nodeSecret is the bearer secret this node's own agent, dns and lb
// present to the master API, so that ACLs, once bootstrapped, take them
// for nodes: derived from the join token, or without one made at random
// for this process (enough for `weft up`, whose roles share it).
func (n *node) nodeSecret() string {
	if n.nodeSecretV != "" {
		return n.nodeSecretV
	}
	if s, err := sched.DeriveNodeSecret(n.clusterToken()); err == nil {
		n.nodeSecretV = s
		return s
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	n.nodeSecretV = fmt.Sprintf("weft-node.%x", b)
	return n.nodeSecretV
}

func runNode(c *cli.Context, role string) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	n := &node{c: c, role: role, log: log, site: c.String("site"), localMux: http.NewServeMux()}
	if role == roleAgent {
		mesh.LeanGC()
	}
	n.nofile = raiseNoFile(log)
	defer func() {
		for i := len(n.closers) - 1; i >= 0; i-- {
			n.closers[i]()
		}
	}()
	n.registry = prometheus.NewRegistry()
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	n.dataDir = c.String("data-dir")
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir %s: %w (choose another with --data-dir)", n.dataDir, err)
	}
	release, err := lockDataDir(n.dataDir)
	if err != nil {
		return err
	}
	// The first closer runs last: the lock outlives everything else.
	n.closers = append(n.closers, release)
	n.name = c.String("node-name")
	if n.name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --node-name given and the hostname is unknown: %w", err)
		}
		n.name = h
	}
	if role == roleUp && !c.IsSet("gossip-addr") {
		if err := c.Set("gossip-addr", "127.0.0.1:0"); err != nil {
			return err
		}
	}

	if err := n.resolveToken(); err != nil {
		return err
	}
	// Shutdown order: on Ctrl-C (or a role's error) the agent stops first,
	// so it can stop its tasks and report them while the master, the APIs
	// and gossip still run; then everything else stops. runCtx is the
	// latter's context and outlives the signal until the agent is done.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
	defer cancel()
	g, ctx := errgroup.WithContext(runCtx)
	firstCtx, cancelFirst := context.WithCancel(ctx)
	defer cancelFirst()
	go func() {
		select {
		case <-c.Context.Done():
			cancelFirst()
		case <-firstCtx.Done():
		}
	}()
	// On a setup error after the mesh started, stop it (it leaves gossip)
	// before returning the error.
	fail := func(err error) error {
		cancel()
		_ = g.Wait()
		return err
	}
	// The mesh starts first: the other roles bind to and advertise the
	// overlay address it claims.
	if err := n.setupMesh(); err != nil {
		return err
	}
	g.Go(func() error { return n.mesh.Run(ctx) })
	if err := n.waitMesh(ctx); err != nil {
		return fail(err)
	}
	// The listeners open once the overlay address is known: they bind to
	// it. Their real addresses (port 0 in tests) go out in gossip tags.
	if err := n.setupIdentity(); err != nil {
		return fail(err)
	}
	if err := n.listen(); err != nil {
		return fail(err)
	}
	if err := n.setupRoles(); err != nil {
		return fail(err)
	}
	n.localMux.Handle("/v1/mesh/status", n.mesh.StatusHandler())
	n.localMux.Handle("/metrics", metricsHandler(n.registry))
	local := ""
	for _, l := range n.agentLns {
		n.serve(l, n.localMux, "agent API")
		n.addr("agent API", n.describe(l, n.id != nil, "node certificate required"))
		if a, ok := l.Addr().(*net.TCPAddr); ok && (local == "" || a.IP.IsLoopback()) {
			local = l.Addr().String()
		}
	}
	// Client commands on this host (weft mesh status) read the plain
	// loopback listener.
	if remove, err := writeAgentAPIFile(n.dataDir, "http://"+local); err != nil {
		n.log.Warn("recording the agent API address for client commands", "err", err)
	} else {
		n.closers = append(n.closers, remove)
	}
	if err := n.publishTags(); err != nil {
		n.log.Warn("publishing gossip tags", "err", err)
	}

	n.printAddrs()
	for _, run := range n.runs {
		run := run
		g.Go(func() error { return run(ctx) })
	}
	firstDone := make(chan error, len(n.firstRuns))
	for _, run := range n.firstRuns {
		run := run
		go func() {
			// The agent ending for any reason stops the node.
			firstDone <- run(firstCtx)
			cancelFirst()
		}()
	}
	go func() {
		<-firstCtx.Done()
		var firstErr error
		for range n.firstRuns {
			select {
			case e := <-firstDone:
				if e != nil && !errors.Is(e, context.Canceled) && firstErr == nil {
					firstErr = e
				}
			case <-time.After(15 * time.Second):
				n.log.Warn("the agent did not stop within 15s; stopping the rest")
			}
		}
		if firstErr != nil {
			n.log.Error("agent stopped", "err", firstErr)
		}
		cancel()
	}()
	err = g.Wait()
	cancelFirst()
	if errors.Is(err, context.Canceled) || c.Context.Err() != nil {
		err = nil
	}
	if err != nil {
		log.Error("weft stopped", "err", err)
	} else {
		log.Info("weft stopped")
	}
	return err
}

// setupRoles builds every role this node runs.
func (n *node) setupRoles() error {
	if err := n.loadDNSConfig(); err != nil {
		return err
	}
	if hasRole(n.role, roleMaster) {
		if err := n.setupMaster(); err != nil {
			return err
		}
	}
	if hasRole(n.role, roleAgent) {
		if err := n.setupAgent(); err != nil {
			return err
		}
	}
	if !n.c.Bool("no-dns") {
		if err := n.setupDNS(); err != nil {
			return err
		}
	}
	if !n.c.Bool("no-lb") {
		if err := n.setupLB(); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) addr(what, where string) { n.addrLines = append(n.addrLines, [2]string{what, where}) }

// listen opens the master API and agent API listeners where bindAddrs
// says. With a token, the master API serves plain HTTP to peers on
// loopback and in the overlay network and TLS to all (a node certificate
// makes a caller a node); the agent API serves plain HTTP to loopback
// only and otherwise requires a node certificate.
func (n *node) listen() error {
	if hasRole(n.role, roleMaster) {
		addrs, err := n.bindAddrs("api-addr", true)
		if err != nil {
			return err
		}
		if n.apiLns, err = n.listenNode("api-addr", addrs, n.apiTLS, nodetls.FromLoopbackOr(n.overlayNet())); err != nil {
			return err
		}
	}
	addrs, err := n.bindAddrs("agent-addr", true)
	if err != nil {
		return err
	}
	var agentTLS *tls.Config
	if n.id != nil {
		agentTLS = n.id.ServerConfig()
	}
	n.agentLns, err = n.listenNode("agent-addr", addrs, agentTLS, nodetls.FromLoopbackOr())
	return err
}

// describe is how printAddrs shows a listener.
func (n *node) describe(l net.Listener, tlsOn bool, note string) string {
	if tlsOn && n.needsTLS(l) {
		return "https://" + l.Addr().String() + "  (" + note + ")"
	}
	if tlsOn && !l.Addr().(*net.TCPAddr).IP.IsLoopback() {
		return "http(s)://" + l.Addr().String() + "  (" + note + ")"
	}
	return "http://" + l.Addr().String()
}

func listenTCP(flag, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s %s is already in use: is another weft running? choose a free address with %s", flag, addr, flag)
		}
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	return l, nil
}

// serve runs an HTTP server on l until the node stops.
func (n *node) serve(l net.Listener, h http.Handler, what string) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	n.runs = append(n.runs, func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
			return fmt.Errorf("%s on %s: %w", what, l.Addr(), err)
		}
		return nil
	})
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttpHandler(reg)
}

// advertiseHost is the address other nodes reach this node's listeners at:
// the overlay address when the mesh runs, else the gossip address.
func (n *node) advertiseHost() string {
	self := n.mesh.Self()
	if self.OverlayIP != "" {
		return self.OverlayIP
	}
	if self.Addr != "" && self.Addr != "0.0.0.0" {
		return self.Addr
	}
	return "127.0.0.1"
}

// advertised turns a bound listener address into one others can dial.
func (n *node) advertised(l net.Listener) string {
	a := l.Addr().(*net.TCPAddr)
	if a.IP.IsUnspecified() {
		return net.JoinHostPort(n.advertiseHost(), strconv.Itoa(a.Port))
	}
	return a.String()
}

// detectResources fills what the agent offers from flags or the machine.
func (n *node) detectResources() (api.Resources, error) {
	r := api.Resources{Cpus: n.c.Float64("cpus"), Mem: n.c.Float64("mem"), Disk: n.c.Float64("disk")}
	if r.Cpus <= 0 {
		r.Cpus = float64(runtime.NumCPU())
	}
	if r.Mem <= 0 {
		r.Mem = memTotalMB() - 1024
		if r.Mem < 256 {
			r.Mem = 256
		}
	}
	if r.Disk <= 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(n.dataDir, &st); err == nil {
			r.Disk = float64(st.Bavail*uint64(st.Bsize)) / (1 << 20)
		}
	}
	ports, err := api.ParsePortRanges(n.c.String("ports"))
	if err != nil {
		return r, fmt.Errorf("--ports: %w", err)
	}
	r.Ports = ports
	return r, nil
}

func memTotalMB() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 4096
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / 1024
		}
	}
	return 4096
}

func parseAttributes(list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attribute %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

// subdir is a directory under the data dir, created if missing.
func (n *node) subdir(name string) (string, error) {
	d := filepath.Join(n.dataDir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", d, err)
	}
	return d, nil
}

func (n *node) printAddrs() {
	w := n.c.App.ErrWriter
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, "weft %s: node %s (%s) at site %s, data in %s\n", Version, n.name, n.role, n.site, n.dataDir)
	for _, l := range n.addrLines {
		fmt.Fprintf(w, "  %-14s %s\n", l[0], l[1])
	}
}

func nodeList(c *cli.Context) error {
	nodes, err := apiClient(c).Nodes(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, nodes)
	}
	tw := newTable(c, "NAME", "ROLE", "SITE", "STATUS", "ADDRESS", "OVERLAY", "CPUS", "MEM", "DISK", "PORTS", "CAPABILITIES", "PROBLEMS")
	for _, nd := range nodes {
		ports := []string{}
		for _, p := range nd.Resources.Ports {
			ports = append(ports, fmt.Sprintf("%d-%d", p.Begin, p.End))
		}
		tw.row(nd.Name, nd.Role, nd.Site, nd.Status, nd.Address, dash(nd.OverlayIP),
			fmt.Sprintf("%.4g/%.4g", nd.Used.Cpus, nd.Resources.Cpus),
			fmt.Sprintf("%.0f/%.0f MB", nd.Used.Mem, nd.Resources.Mem),
			fmt.Sprintf("%.0f/%.0f MB", nd.Used.Disk, nd.Resources.Disk),
			dash(strings.Join(ports, ",")), dash(strings.Join(nd.Capabilities, ",")), dash(strings.Join(nd.Problems, "; ")))
	}
	return tw.flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
