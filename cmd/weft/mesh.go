package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/mesh"
)

func init() { registerCommand(meshCommand()) }

// meshFlags are the node flags the mesh needs; main.go defines the shared
// ones (--join, --site, --data-dir, --node-name, --api-addr, --agent-addr).
func meshFlags() []cli.Flag {
	d := mesh.DefaultConfig()
	return []cli.Flag{
		&cli.StringFlag{Name: "token", Usage: "cluster join token (create one with `weft mesh token`); gossip is encrypted with it", EnvVars: envName("token")},
		&cli.BoolFlag{Name: "no-mesh", Usage: "no WireGuard overlay: gossip only, host addresses are used (no root needed)", EnvVars: envName("no-mesh")},
		&cli.BoolFlag{Name: "mesh", Usage: "weft up: run the WireGuard overlay too (needs root or CAP_NET_ADMIN)", EnvVars: envName("mesh")},
		&cli.StringFlag{Name: "overlay-cidr", Value: d.OverlayCIDR, Usage: "the overlay network; each node claims one block of it", EnvVars: envName("overlay-cidr")},
		&cli.StringFlag{Name: "block", Usage: "this node's overlay block (e.g. 10.47.9.0/24) instead of one derived from its key", EnvVars: envName("block")},
		&cli.IntFlag{Name: "mtu", Usage: "overlay MTU (default: underlay MTU - 80, at least 1280)", EnvVars: envName("mtu")},
		&cli.IntFlag{Name: "wg-port", Value: d.ListenPort, Usage: "WireGuard UDP port", EnvVars: envName("wg-port")},
		&cli.StringSliceFlag{Name: "advertise", Usage: "extra endpoint(s) peers may reach this node's WireGuard at (host or host:port)", EnvVars: envName("advertise")},
		&cli.StringFlag{Name: "gossip-addr", Usage: "gossip (serf) bind address host:port, tcp+udp (default 0.0.0.0:7946; weft up: 127.0.0.1 and a free port)", EnvVars: envName("gossip-addr")},
		&cli.StringFlag{Name: "gossip-advertise", Usage: "gossip address other nodes dial, when it differs from --gossip-addr", EnvVars: envName("gossip-advertise")},
		&cli.StringFlag{Name: "interface", Value: d.Interface, Usage: "WireGuard interface name", EnvVars: envName("interface")},
		&cli.BoolFlag{Name: "wg-userspace", Usage: "use the embedded wireguard-go even when the kernel module exists", EnvVars: envName("wg-userspace")},
	}
}

// newMeshWith builds the node's Mesh from the flags; mut, when set,
// adjusts the config last. wireguardDefault is true for master/agent (off
// with --no-mesh) and false for `weft up` (on with --mesh); without
// WireGuard and without --gossip-addr, gossip binds to 127.0.0.1 on a free
// port (the local playground).
func newMeshWith(c *cli.Context, role string, wireguardDefault bool, extraTags map[string]string, log *slog.Logger, mut func(*mesh.Config)) (*mesh.Mesh, error) {
	cfg := mesh.DefaultConfig()
	cfg.Role = role
	cfg.NodeName = c.String("node-name")
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("no --node-name and no hostname: %w", err)
		}
		cfg.NodeName = h
	}
	if dir := c.String("data-dir"); dir != "" {
		cfg.DataDir = filepath.Join(dir, "mesh")
	}
	cfg.Site = c.String("site")
	cfg.Join = c.StringSlice("join")
	cfg.Token = c.String("token")
	cfg.Tags = extraTags
	cfg.WireGuard = wireguardDefault
	if c.Bool("no-mesh") {
		cfg.WireGuard = false
	}
	if c.Bool("mesh") {
		cfg.WireGuard = true
	}
	switch {
	case c.String("gossip-addr") != "":
		cfg.GossipBind = c.String("gossip-addr")
	case !wireguardDefault:
		cfg.GossipBind = "127.0.0.1:0"
	}
	cfg.GossipAdvertise = c.String("gossip-advertise")
	cfg.OverlayCIDR = c.String("overlay-cidr")
	cfg.StaticBlock = c.String("block")
	cfg.MTU = c.Int("mtu")
	cfg.ListenPort = c.Int("wg-port")
	cfg.Advertise = c.StringSlice("advertise")
	cfg.Interface = c.String("interface")
	cfg.Userspace = c.Bool("wg-userspace")
	// An agent's tasks keep running while it restarts: it must not look
	// like a node that left for good. Nor may a master that stops (a
	// rolling restart, SIGTERM): the leader would take it out of raft, and
	// the cluster would run with one voter fewer, losing its quorum at the
	// next failure. A master gone for good is removed as a dead voter, or
	// with `weft operator raft remove-peer`.
	cfg.StayOnStop = role == "agent" || role == "master"
	cfg.Logger = log
	if mut != nil {
		mut(&cfg)
	}
	return mesh.New(cfg)
}

func meshCommand() *cli.Command {
	return &cli.Command{
		Name:  "mesh",
		Usage: "the overlay: status of every peer, join tokens",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "per peer: site, block, endpoint, path (direct|relay via X), handshake age, rx/tx, RTT, MTU, data plane",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "agent-api", Usage: "the local node's agent API (default: the one the node on --data-dir serves, else the local node the master lists, else 127.0.0.1:5051)", EnvVars: envName("agent-api")},
					&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "the data dir of the local node", EnvVars: envName("data-dir")},
					&cli.BoolFlag{Name: "json", Usage: "print the raw JSON"},
				},
				Action: meshStatus,
			},
			{
				Name:  "token",
				Usage: "print a new cluster join token (pass it to every node with --token)",
				Action: func(c *cli.Context) error {
					t, err := mesh.GenerateToken()
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, t)
					return nil
				},
			},
			{
				Name:   "node",
				Usage:  "run only gossip and the overlay on this host (no scheduler); for testing a network",
				Hidden: true,
				Flags: append(meshFlags(),
					&cli.StringSliceFlag{Name: "join", Usage: "seed host[:port]", EnvVars: envName("join")},
					&cli.StringFlag{Name: "site", EnvVars: envName("site")},
					&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), EnvVars: envName("data-dir")},
					&cli.StringFlag{Name: "node-name", EnvVars: envName("node-name")},
					&cli.StringFlag{Name: "agent-addr", Value: "127.0.0.1:5051", Usage: "serve GET /v1/mesh/status here", EnvVars: envName("agent-addr")},
					&cli.StringFlag{Name: "role", Value: "agent", EnvVars: envName("role")},
					&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: envName("log-level")},
					&cli.DurationFlag{Name: "reap-timeout", Value: mesh.DefaultConfig().ReapTimeout, Usage: "how long a failed member (and its WireGuard peer) is kept", EnvVars: envName("reap-timeout")},
					&cli.BoolFlag{Name: "pprof", Usage: "serve net/http/pprof under /debug/pprof/ on --agent-addr (for profiling)", EnvVars: envName("pprof")},
				),
				Action: meshNode,
			},
		},
	}
}

// meshNode runs a mesh-only node: gossip, overlay and the status endpoint.
func meshNode(c *cli.Context) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	mesh.LeanGC()
	m, err := newMeshWith(c, c.String("role"), true, nil, log, func(cfg *mesh.Config) {
		cfg.ReapTimeout = c.Duration("reap-timeout")
		cfg.IdleProcs = true
	})
	if err != nil {
		return err
	}
	if !c.Bool("pprof") {
		idleMemProfile()
	}
	ln, err := net.Listen("tcp", c.String("agent-addr"))
	if err != nil {
		return fmt.Errorf("--agent-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/mesh/status", m.StatusHandler())
	mux.HandleFunc("GET /v1/mesh/members", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m.Members())
	})
	if c.Bool("pprof") {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	err = m.Run(c.Context)
	if err != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// localAgentAPI finds the local node's agent API: --agent-api; else the
// address the node running on --data-dir recorded (`weft up` serves it on
// a free port); else the node the master lists whose agent API is on an
// address of this machine; else 127.0.0.1:5051.
func localAgentAPI(c *cli.Context) string {
	if a := c.String("agent-api"); a != "" {
		return a
	}
	if a := readAgentAPIFile(c.String("data-dir")); a != "" {
		return a
	}
	ctx, cancel := context.WithTimeout(c.Context, 3*time.Second)
	defer cancel()
	if nodes, err := apiClient(c).Nodes(ctx); err == nil {
		local := localAddrs()
		for _, n := range nodes {
			if host, _, err := net.SplitHostPort(n.AgentAPI); err == nil && local[host] {
				return n.AgentAPI
			}
		}
	}
	return "127.0.0.1:5051"
}

// localAddrs are the IP addresses of this machine's interfaces.
func localAddrs() map[string]bool {
	out := map[string]bool{"127.0.0.1": true, "::1": true}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			out[ipn.IP.String()] = true
		}
	}
	return out
}

func meshStatus(c *cli.Context) error {
	addr := localAgentAPI(c)
	shown := addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(strings.TrimRight(addr, "/") + "/v1/mesh/status")
	if err != nil {
		return fmt.Errorf("asking the local node at %s (is weft running? pass --agent-api or --data-dir): %w", shown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if c.Bool("json") {
		_, err := c.App.Writer.Write(body)
		return err
	}
	var st mesh.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("reading status: %w", err)
	}
	printMeshStatus(c.App.Writer, st)
	return nil
}

func printMeshStatus(w io.Writer, st mesh.Status) {
	fmt.Fprintf(w, "node %s  site %s  role %s  members %d (%d alive)  gossip %s", st.Node, st.Site, st.Role, st.Members, st.Alive, st.GossipAddr)
	if st.Encrypted {
		fmt.Fprint(w, " (encrypted)")
	}
	fmt.Fprintln(w)
	if st.WireGuard {
		nat := ""
		if st.NAT {
			nat = "  behind NAT"
			if st.NATKind != "" {
				nat = "  behind NAT (" + st.NATKind + ")"
			}
		}
		fmt.Fprintf(w, "overlay %s  block %s  %s %s  port %d  MTU %d%s\n", st.OverlayIP, st.Block, st.Interface, st.DataPlane, st.ListenPort, st.MTU, nat)
		if len(st.Endpoints) > 0 {
			fmt.Fprintf(w, "endpoints %s\n", strings.Join(st.Endpoints, ", "))
		}
	} else {
		fmt.Fprintln(w, "overlay off (--no-mesh): gossip only")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSITE\tSTATUS\tNAT\tBLOCK\tENDPOINT\tPATH\tHANDSHAKE\tRX\tTX\tRTT\tMTU\tDATA PLANE")
	for _, p := range st.Peers {
		path := p.Path
		if p.Path == "relay" {
			path = "relay via " + p.Via
		}
		hs := "never"
		if p.HandshakeAge >= 0 {
			hs = (time.Duration(p.HandshakeAge * float64(time.Second))).Round(time.Second).String() + " ago"
		}
		rtt := "-"
		if p.RTTMillis >= 0 {
			rtt = fmt.Sprintf("%.1fms", p.RTTMillis)
		}
		mtu := "-"
		if p.MTU > 0 {
			mtu = fmt.Sprint(p.MTU)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, meshDash(p.Site), p.Status, meshDash(p.NAT), meshDash(p.Block), meshDash(p.Endpoint), path, hs,
			meshBytes(p.RxBytes), meshBytes(p.TxBytes), rtt, mtu, meshDash(p.DataPlane))
	}
	tw.Flush()
}

func meshDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func meshBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// idleMemProfile turns off the heap profile's sampling (nothing reads it
// without --pprof). An idle node's allocations are small and few, but each
// sampled one unwinds its stack: in a profile of an idle mesh node that
// was about a sixth of what allocation cost.
func idleMemProfile() { runtime.MemProfileRate = 0 }
