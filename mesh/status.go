package mesh

import (
	"encoding/json"
	"net/http"
)

// Status is what `weft mesh status` prints; it is JSON-encodable.
type Status struct {
	Node       string `json:"node"`
	Site       string `json:"site"`
	Role       string `json:"role"`
	GossipAddr string `json:"gossipAddr"`
	Encrypted  bool   `json:"encrypted"`
	Members    int    `json:"members"`
	Alive      int    `json:"alive"`
	WireGuard  bool   `json:"wireguard"`
	DataPlane  string `json:"dataPlane,omitempty"` // kernel | userspace
	Interface  string `json:"interface,omitempty"`
	PublicKey  string `json:"publicKey,omitempty"`
	Block      string `json:"block,omitempty"`
	OverlayIP  string `json:"overlayIP,omitempty"`
	ListenPort int    `json:"listenPort,omitempty"`
	MTU        int    `json:"mtu,omitempty"`
	NAT        bool   `json:"nat"`
	// NATKind: "none", "easy" (one public port toward every peer: hole
	// punching works) or "hard" (a port per peer: relayed to other NATs).
	NATKind   string       `json:"natKind,omitempty"`
	Endpoints []string     `json:"endpoints,omitempty"`
	Peers     []PeerStatus `json:"peers"`
}

// PeerStatus is one other member as this node sees it.
type PeerStatus struct {
	Name      string `json:"name"`
	Site      string `json:"site"`
	Role      string `json:"role"`
	Status    string `json:"status"` // serf's words
	Block     string `json:"block,omitempty"`
	OverlayIP string `json:"overlayIP,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	// Path is "direct", "relay" (via Via), "down" or "none" (no overlay).
	Path string `json:"path"`
	Via  string `json:"via,omitempty"`
	// HandshakeAge is seconds since the latest handshake; -1 = never.
	HandshakeAge float64 `json:"handshakeAgeSeconds"`
	RxBytes      int64   `json:"rxBytes"`
	TxBytes      int64   `json:"txBytes"`
	// RTTMillis is the serf-coordinate estimate; -1 = unknown.
	RTTMillis float64 `json:"rttMillis"`
	MTU       int     `json:"mtu,omitempty"`
	DataPlane string  `json:"dataPlane,omitempty"`
	// NAT is the kind of NAT the peer is behind, as it publishes it:
	// "none", "easy" or "hard" (empty without an overlay).
	NAT string `json:"nat,omitempty"`
}

// Status reports this node and its peers.
func (m *Mesh) Status() Status {
	self := m.Self()
	st := Status{
		Node:       m.cfg.NodeName,
		Site:       m.cfg.Site,
		Role:       m.cfg.Role,
		GossipAddr: m.GossipAddr(),
		Encrypted:  m.key != nil,
		WireGuard:  m.cfg.WireGuard,
		Block:      self.Block,
		OverlayIP:  self.OverlayIP,
		Peers:      []PeerStatus{},
	}
	for _, mem := range m.Members() {
		st.Members++
		if mem.Status == "alive" {
			st.Alive++
		}
		if mem.Name == m.cfg.NodeName {
			continue
		}
		ps := PeerStatus{
			Name: mem.Name, Site: mem.Site, Role: mem.Role, Status: mem.Status,
			Block: mem.Block, OverlayIP: mem.OverlayIP, Path: "none",
			HandshakeAge: -1, RTTMillis: m.rttMillis(mem.Name),
		}
		st.Peers = append(st.Peers, ps)
	}
	m.fillOverlayStatus(&st)
	return st
}

// rttMillis estimates the RTT to a member from serf coordinates.
func (m *Mesh) rttMillis(name string) float64 {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		return -1
	}
	mine, err := s.GetCoordinate()
	if err != nil {
		return -1
	}
	other, ok := s.GetCachedCoordinate(name)
	if !ok || mine == nil || other == nil {
		return -1
	}
	return float64(mine.DistanceTo(other).Microseconds()) / 1000
}

// StatusHandler serves Status as JSON (GET /v1/mesh/status).
func (m *Mesh) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m.Status())
	})
}
