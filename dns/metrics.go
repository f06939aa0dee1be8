package dns

import (
	"strconv"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

var metricTypes = []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeSOA, mdns.TypeNS, mdns.TypeANY}

type metrics struct {
	queries  *prometheus.CounterVec
	fast     [][16]prometheus.Counter // [type index][rcode]
	forwards *prometheus.CounterVec
	latency  prometheus.Histogram
	syncs    *prometheus.CounterVec
	records  prometheus.Gauge
	lastSync prometheus.Gauge
	build    prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "dns", Name: "queries_total",
			Help: "DNS queries answered, by query type and response code.",
		}, []string{"type", "rcode"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "dns", Name: "forwards_total",
			Help: "Queries forwarded upstream, by result (ok, error, refused).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "weft", Subsystem: "dns", Name: "query_duration_seconds",
			Help:    "Time from reading a query to writing its answer (forwarded queries included).",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 0.5, 2},
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "dns", Name: "syncs_total",
			Help: "State fetches from the master, by result (ok, error).",
		}, []string{"result"}),
		records: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "weft", Subsystem: "dns", Name: "records",
			Help: "Records in the table being served.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "weft", Subsystem: "dns", Name: "last_sync_timestamp_seconds",
			Help: "Unix time of the last successful state fetch.",
		}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "weft", Subsystem: "dns", Name: "table_build_seconds",
			Help:    "Time to rebuild the record table from a state.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 4, 8),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.forwards, m.latency, m.syncs, m.records, m.lastSync, m.build)
	}
	m.fast = make([][16]prometheus.Counter, len(metricTypes)+1)
	for i := range m.fast {
		tn := "other"
		if i < len(metricTypes) {
			tn = mdns.TypeToString[metricTypes[i]]
		}
		for rc := 0; rc < 16; rc++ {
			rn, ok := mdns.RcodeToString[rc]
			if !ok {
				rn = strconv.Itoa(rc)
			}
			m.fast[i][rc] = m.queries.WithLabelValues(tn, rn)
		}
	}
	return m
}

func (m *metrics) query(qtype uint16, rcode int) {
	i := len(metricTypes)
	for k, t := range metricTypes {
		if t == qtype {
			i = k
			break
		}
	}
	m.fast[i][rcode&0xF].Inc()
}
