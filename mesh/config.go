package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Named defaults. Tests start from DefaultConfig and shorten the timers.
const (
	DefaultGossipPort  = 7946
	DefaultInterface   = "weft0"
	DefaultListenPort  = 51820
	DefaultOverlayCIDR = "10.47.0.0/16"
	DefaultBlockBits   = 24
	// MTUOverhead is what WireGuard over IPv4/IPv6 UDP adds to a packet; an
	// overlay MTU above underlay-80 breaks GSO sends (measurements §1.7).
	MTUOverhead = 80
	// MinMTU is the floor of the derived overlay MTU.
	MinMTU = 1280
)

// Config configures a Mesh. Zero timer values take the named defaults.
type Config struct {
	// NodeName is the serf node name; it must be unique in the cluster.
	NodeName string
	// DataDir holds the WireGuard private key (mode 0600), the block claim
	// and the peer cache (with WireGuard), or the serf snapshot (without).
	// Empty keeps everything in memory (tests).
	DataDir string
	// Site and Role go out in tags; Role is "master", "agent" or
	// "master+agent".
	Site, Role string
	// GossipBind is host:port for serf (tcp+udp). Port 0 picks a free port.
	GossipBind string
	// GossipAdvertise is the host[:port] other nodes dial; optional.
	GossipAdvertise string
	// Join lists host[:port] seeds; they are re-dialled while no other
	// member is alive.
	Join []string
	// Token is the cluster join token (GenerateToken); the gossip key is
	// derived from it. Empty = unencrypted gossip (only for `weft up`).
	Token string
	// Tags are extra tags owned by other roles. They share serf's 512-byte
	// budget with the mesh's own keys (see the tag* constants).
	Tags map[string]string

	// WireGuard false (--no-mesh) runs gossip only: no device, no overlay.
	WireGuard bool
	// Interface is the WireGuard interface name.
	Interface string
	// ListenPort is the WireGuard UDP port.
	ListenPort int
	// OverlayCIDR is the whole overlay; every node claims one block of it.
	OverlayCIDR string
	// BlockBits is the prefix length of a node's block.
	BlockBits int
	// StaticBlock, when set, is this node's block (no derivation).
	StaticBlock string
	// MTU of the WireGuard interface; 0 = underlay MTU - 80, floor 1280.
	MTU int
	// Advertise lists extra candidate endpoints (host or host:port).
	Advertise []string
	// Userspace forces wireguard-go even when the kernel module exists.
	Userspace bool
	// The userspace device's UAPI socket is /var/run/wireguard/<if>.sock,
	// which every network namespace on a host shares: nodes in separate
	// namespaces need a private /var/run/wireguard (meshtest mounts one).

	// IdleProcs runs the process on one P (GOMAXPROCS=1) while it is
	// idle (under procsBusyCPU of a core for procsQuietFor), and gives Go's
	// default back as soon as it works: an idle process with more Ps
	// wakes a second thread at every wake-up. For agents and mesh-only
	// nodes; GOMAXPROCS in the environment turns it off.
	IdleProcs bool

	// StayOnStop stops gossip without announcing a leave: peers see the
	// node fail, as after a crash, and keep it (and its WireGuard peer)
	// until it returns or is reaped. For an agent whose tasks outlive its
	// process, so that a restart is not taken for a departure.
	StayOnStop bool

	// Logger receives the mesh's logs (component=mesh). nil discards.
	Logger *slog.Logger
	// Registerer, when set, gets the mesh's Prometheus collector.
	Registerer prometheus.Registerer

	// ReconcileInterval is the safety-net reconcile period.
	ReconcileInterval time.Duration
	// RejoinInterval is how often seeds are re-dialled while alone.
	RejoinInterval time.Duration
	// ProbeInterval is how often the data plane is looked at, the
	// keepalive of a path that is not up (and of one between two nodes
	// behind NAT), and the period of endpoint rotation. An idle path that
	// works carries no keepalives (but NATKeepalive).
	ProbeInterval time.Duration
	// DeadAfter: a send to a peer that gets no answer for this long marks
	// the direct path down (between two nodes behind NAT: this long
	// without a packet); traffic then goes through a relay.
	DeadAfter time.Duration
	// NATKeepalive is the keepalive on an idle path from behind NAT,
	// which keeps the NAT's mapping. WireGuard's persistent keepalive,
	// sent only when nothing else went out or came in for that long: 25 s
	// is WireGuard's own recommendation, under the 30 s that the
	// shortest-lived UDP mappings (Linux conntrack's unreplied ones) last.
	NATKeepalive time.Duration
	// ReconnectInterval is how often serf re-dials failed members.
	ReconnectInterval time.Duration
	// ReapTimeout is how long a failed member is kept before it is reaped
	// (and its WireGuard peer removed). Suspect/failed members keep their
	// peer until then.
	ReapTimeout time.Duration
	// TombstoneTimeout is how long a left member is kept.
	TombstoneTimeout time.Duration
	// Gossip selects memberlist timings: "lan" (default), "local" (fast,
	// loopback tests) or "wan".
	Gossip string
}

// DefaultConfig returns the configuration of `weft master` / `weft agent`.
func DefaultConfig() Config {
	return Config{
		Role:              "agent",
		GossipBind:        net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultGossipPort)),
		WireGuard:         true,
		Interface:         DefaultInterface,
		ListenPort:        DefaultListenPort,
		OverlayCIDR:       DefaultOverlayCIDR,
		BlockBits:         DefaultBlockBits,
		ReconcileInterval: 10 * time.Second,
		RejoinInterval:    5 * time.Second,
		ProbeInterval:     time.Second,
		DeadAfter:         2500 * time.Millisecond,
		NATKeepalive:      25 * time.Second,
		ReconnectInterval: 5 * time.Second,
		ReapTimeout:       15 * time.Minute,
		TombstoneTimeout:  15 * time.Minute,
		Gossip:            "lan",
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Role == "" {
		c.Role = d.Role
	}
	if c.GossipBind == "" {
		c.GossipBind = d.GossipBind
	}
	if c.Interface == "" {
		c.Interface = d.Interface
	}
	if c.ListenPort == 0 {
		c.ListenPort = d.ListenPort
	}
	if c.OverlayCIDR == "" {
		c.OverlayCIDR = d.OverlayCIDR
	}
	if c.BlockBits == 0 {
		c.BlockBits = d.BlockBits
	}
	durs := []struct {
		v *time.Duration
		d time.Duration
	}{
		{&c.ReconcileInterval, d.ReconcileInterval},
		{&c.RejoinInterval, d.RejoinInterval},
		{&c.ProbeInterval, d.ProbeInterval},
		{&c.DeadAfter, d.DeadAfter},
		{&c.NATKeepalive, d.NATKeepalive},
		{&c.ReconnectInterval, d.ReconnectInterval},
		{&c.ReapTimeout, d.ReapTimeout},
		{&c.TombstoneTimeout, d.TombstoneTimeout},
	}
	for _, x := range durs {
		if *x.v == 0 {
			*x.v = x.d
		}
	}
	if c.Gossip == "" {
		c.Gossip = d.Gossip
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("component", "mesh")
	return c
}

// validate checks what can be checked without touching the system.
func (c Config) validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("mesh: node name is empty")
	}
	switch c.Role {
	case "master", "agent", "master+agent":
	default:
		return fmt.Errorf("mesh: role %q: want master, agent or master+agent", c.Role)
	}
	if _, err := gossipKey(c.Token); err != nil {
		return fmt.Errorf("mesh: --token: %w", err)
	}
	for k := range c.Tags {
		if reservedTags[k] {
			return fmt.Errorf("mesh: extra tag %q is reserved for the mesh", k)
		}
	}
	if !c.WireGuard {
		return nil
	}
	overlay, err := netip.ParsePrefix(c.OverlayCIDR)
	if err != nil || !overlay.Addr().Is4() {
		return fmt.Errorf("mesh: overlay CIDR %q: want an IPv4 prefix such as %s", c.OverlayCIDR, DefaultOverlayCIDR)
	}
	if c.BlockBits < overlay.Bits() || c.BlockBits > 30 {
		return fmt.Errorf("mesh: block size /%d does not fit overlay %s (want /%d../30)", c.BlockBits, overlay, overlay.Bits())
	}
	if c.StaticBlock != "" {
		b, err := netip.ParsePrefix(c.StaticBlock)
		if err != nil || b.Bits() != c.BlockBits || !overlay.Contains(b.Addr()) || b.Masked() != b {
			return fmt.Errorf("mesh: --block %q: want a /%d network inside %s", c.StaticBlock, c.BlockBits, overlay)
		}
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return fmt.Errorf("mesh: --mtu %d out of range", c.MTU)
	}
	if len(c.Interface) > 15 {
		return fmt.Errorf("mesh: interface name %q is longer than 15 bytes", c.Interface)
	}
	return nil
}
