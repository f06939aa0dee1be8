// Package mesh joins the nodes of a weft cluster into one membership and,
// optionally, one WireGuard overlay.
//
// Gossip (hashicorp/serf) always runs: it carries every node's role, site,
// overlay block, WireGuard public key and candidate endpoints as compact serf
// tags, and it is how the master learns its agents. The WireGuard data plane
// (kernel module through netlink and wgctrl when present, embedded
// wireguard-go on TUN otherwise) is optional (--no-mesh turns it off).
//
// Desired WireGuard state is computed by pure code (topology.go) from the
// member list and applied idempotently; a reconcile timer is the safety net.
//
// mesh must never import another weft package: sched, agent, dns and lb
// import mesh for membership and overlay facts, never the other way round.
package mesh
