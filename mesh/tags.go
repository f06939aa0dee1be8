package mesh

import (
	"net/netip"
	"strconv"
	"strings"
)

// The mesh's own serf tags. serf allows 512 bytes of tags per member in all,
// shared with the extra tags of other roles, so keys are one or two bytes.
const (
	tagRole      = "r"  // master | agent | master+agent
	tagSite      = "s"  // site name
	tagPublicKey = "k"  // WireGuard public key, base64 (44 bytes)
	tagBlock     = "b"  // claimed block, "10.47.3.0/24"
	tagBlockTime = "bt" // Lamport time of the block claim
	tagEndpoints = "e"  // candidate endpoints, "ip:port,ip:port"; reflexive first
	tagNAT       = "n"  // when peers observe this node at an address it does not own: how many of its endpoints lead "e" as reflexive ("1", "2")
	tagNATKind   = "nk" // "h" when peers observe this node at different ports (a hard, endpoint-dependent NAT)
)

// natUnknown in tagNAT: behind NAT, but where peers see the node is not
// known yet (it has just moved).
const natUnknown = "u"

var reservedTags = map[string]bool{
	tagRole: true, tagSite: true, tagPublicKey: true, tagBlock: true,
	tagBlockTime: true, tagEndpoints: true, tagNAT: true, tagNATKind: true,
}

// maxEndpoints caps the candidate endpoints one node advertises.
const maxEndpoints = 4

// encodeEndpoints writes endpoints compactly, keeping at most maxEndpoints.
func encodeEndpoints(eps []netip.AddrPort) string {
	var parts []string
	seen := map[netip.AddrPort]bool{}
	for _, ep := range eps {
		if !ep.IsValid() || seen[ep] {
			continue
		}
		seen[ep] = true
		parts = append(parts, ep.String())
		if len(parts) == maxEndpoints {
			break
		}
	}
	return strings.Join(parts, ",")
}

// decodeEndpoints parses encodeEndpoints' output, skipping bad entries.
func decodeEndpoints(s string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range strings.Split(s, ",") {
		if ep, err := netip.ParseAddrPort(p); err == nil {
			out = append(out, ep)
		}
	}
	return out
}

// peerInfo is what the topology needs of a member, decoded from its tags.
type peerInfo struct {
	Name      string
	Status    string // serf's words
	Site      string
	Addr      netip.Addr // gossip address
	PublicKey string
	Block     netip.Prefix
	BlockTime uint64
	Endpoints []netip.AddrPort
	NAT       bool
	Reflexive int  // how many leading Endpoints peers observed (behind NAT)
	HardNAT   bool // peers observe it at different ports: no hole punch to it
}

// NATKind names a member's NAT as status shows it.
func (p peerInfo) NATKind() string {
	switch {
	case !p.NAT:
		return "none"
	case p.HardNAT:
		return NATHard
	default:
		return NATEasy
	}
}

// reflexive splits the endpoints of a node behind NAT into the ones peers
// observe it at and the rest (its LAN addresses).
func (p peerInfo) reflexive() (refl, rest []netip.AddrPort) {
	if !p.NAT {
		return nil, p.Endpoints
	}
	n := min(p.Reflexive, len(p.Endpoints))
	return p.Endpoints[:n], p.Endpoints[n:]
}

// decodePeer reads a member's mesh facts from its tags.
func decodePeer(name, status string, addr netip.Addr, tags map[string]string) peerInfo {
	p := peerInfo{
		Name:      name,
		Status:    status,
		Site:      tags[tagSite],
		Addr:      addr,
		PublicKey: tags[tagPublicKey],
		Endpoints: decodeEndpoints(tags[tagEndpoints]),
		NAT:       tags[tagNAT] != "" && tags[tagNAT] != "0",
		HardNAT:   tags[tagNATKind] == "h",
	}
	if p.NAT && tags[tagNAT] != natUnknown {
		p.Reflexive, _ = strconv.Atoi(tags[tagNAT])
		p.Reflexive = max(p.Reflexive, 1)
	}
	if b, err := netip.ParsePrefix(tags[tagBlock]); err == nil {
		p.Block = b
	}
	p.BlockTime, _ = strconv.ParseUint(tags[tagBlockTime], 10, 64)
	return p
}

// overlayIP is the node address of a block: its first host address (.1).
func overlayIP(block netip.Prefix) netip.Addr {
	if !block.IsValid() {
		return netip.Addr{}
	}
	return block.Masked().Addr().Next()
}
