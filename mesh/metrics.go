package mesh

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descMembers   = prometheus.NewDesc("weft_mesh_members", "Members gossip knows, by serf status.", []string{"status"}, nil)
	descPeerUp    = prometheus.NewDesc("weft_mesh_peer_up", "1 when the peer is reachable over the overlay (direct or relayed).", []string{"peer", "site", "path", "via"}, nil)
	descHandshake = prometheus.NewDesc("weft_mesh_peer_handshake_age_seconds", "Seconds since the latest WireGuard handshake with the peer.", []string{"peer"}, nil)
	descRx        = prometheus.NewDesc("weft_mesh_peer_rx_bytes_total", "Bytes received from the peer.", []string{"peer"}, nil)
	descTx        = prometheus.NewDesc("weft_mesh_peer_tx_bytes_total", "Bytes sent to the peer.", []string{"peer"}, nil)
	descRTT       = prometheus.NewDesc("weft_mesh_peer_rtt_seconds", "RTT to the peer estimated by serf coordinates.", []string{"peer"}, nil)
	descInfo      = prometheus.NewDesc("weft_mesh_info", "This node's overlay: data plane (kernel|userspace), MTU, block.", []string{"node", "site", "data_plane", "block", "mtu"}, nil)
)

// collector exposes Status as Prometheus metrics, computed at scrape time.
type collector struct{ m *Mesh }

// Collector returns a Prometheus collector of the mesh's status; the lead
// registers it (or set Config.Registerer).
func (m *Mesh) Collector() prometheus.Collector { return collector{m} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descPeerUp, descHandshake, descRx, descTx, descRTT, descInfo} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Status()
	counts := map[string]int{}
	for _, mem := range c.m.Members() {
		counts[mem.Status]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), s)
	}
	if st.WireGuard {
		ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, st.Node, st.Site, st.DataPlane, st.Block, strconv.Itoa(st.MTU))
	}
	for _, p := range st.Peers {
		if p.RTTMillis >= 0 {
			ch <- prometheus.MustNewConstMetric(descRTT, prometheus.GaugeValue, p.RTTMillis/1000, p.Name)
		}
		if p.Path == "none" {
			continue
		}
		upv := 0.0
		if p.Path == "direct" || p.Path == "relay" {
			upv = 1
		}
		ch <- prometheus.MustNewConstMetric(descPeerUp, prometheus.GaugeValue, upv, p.Name, p.Site, p.Path, p.Via)
		if p.HandshakeAge >= 0 {
			ch <- prometheus.MustNewConstMetric(descHandshake, prometheus.GaugeValue, p.HandshakeAge, p.Name)
		}
		ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(p.RxBytes), p.Name)
		ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(p.TxBytes), p.Name)
	}
}
