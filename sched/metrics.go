package sched

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/sched/api"
)

// masterMetrics are the master's Prometheus metrics, served on /metrics.
type masterMetrics struct {
	reg                 *prometheus.Registry
	offers              *prometheus.CounterVec
	declined            *prometheus.CounterVec
	placements          *prometheus.CounterVec
	applies             *prometheus.CounterVec
	applySeconds        *prometheus.HistogramVec
	requests            *prometheus.CounterVec
	requestSeconds      *prometheus.HistogramVec
	eventClients        prometheus.Gauge
	eventClientsDropped prometheus.Counter
	fwPanics            *prometheus.CounterVec
}

func newMasterMetrics(reg *prometheus.Registry, m *Master) (*masterMetrics, error) {
	mm := &masterMetrics{
		reg: reg,
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_offers_total", Help: "Resource offers made to frameworks.",
		}, []string{"framework"}),
		declined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_offers_declined_total", Help: "Offers frameworks declined.",
		}, []string{"framework"}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_placements_total", Help: "Tasks placed on agents by the allocator.",
		}, []string{"framework"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_raft_applies_total", Help: "Raft applies made by the master (allocator, status updates, agent loss), by result.",
		}, []string{"caller", "result"}),
		applySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_raft_apply_seconds", Help: "Latency of the master's raft applies.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"caller"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_api_requests_total", Help: "API requests by route and status code.",
		}, []string{"route", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_api_request_seconds", Help: "API request latency by route (long polls and streams included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		eventClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_event_stream_clients", Help: "Clients attached to /v2/events.",
		}),
		eventClientsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_event_stream_clients_dropped_total", Help: "/v2/events clients dropped for falling behind.",
		}),
		fwPanics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_framework_panics_total", Help: "Panics recovered from a framework, by framework and method.",
		}, []string{"framework", "method"}),
	}
	for _, c := range []prometheus.Collector{mm.offers, mm.declined, mm.placements, mm.applies, mm.applySeconds,
		mm.requests, mm.requestSeconds, mm.eventClients, mm.eventClientsDropped, mm.fwPanics, stateCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mm, nil
}

func (mm *masterMetrics) handler() http.Handler {
	return promhttp.HandlerFor(mm.reg, promhttp.HandlerOpts{})
}

func (mm *masterMetrics) observeApply(caller string, d time.Duration, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	}
	mm.applies.WithLabelValues(caller, res).Inc()
	mm.applySeconds.WithLabelValues(caller).Observe(d.Seconds())
}

// stateCollector reports gauges read from the store at scrape time.
type stateCollector struct{ m *Master }

var (
	descTasks   = prometheus.NewDesc("weft_tasks", "Tasks by state.", []string{"state"}, nil)
	descApps    = prometheus.NewDesc("weft_apps", "Apps defined.", nil, nil)
	descJobs    = prometheus.NewDesc("weft_jobs", "Jobs defined.", nil, nil)
	descDeploys = prometheus.NewDesc("weft_deployments", "Deployments in progress.", nil, nil)
	descIndex   = prometheus.NewDesc("weft_store_index", "The store's raft index.", nil, nil)
	descLeader  = prometheus.NewDesc("weft_leader", "1 when this master leads.", nil, nil)
	descNodes   = prometheus.NewDesc("weft_nodes", "Members by status.", []string{"status"}, nil)
	descRaft    = prometheus.NewDesc("weft_raft_index", "Raft log positions: last_log, commit, applied, last_snapshot.", []string{"kind"}, nil)
	descPending = prometheus.NewDesc("weft_raft_fsm_pending", "Raft entries committed but not yet applied.", nil, nil)
	descPeers   = prometheus.NewDesc("weft_raft_peers", "Other raft voters this server knows.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTasks, descApps, descJobs, descDeploys, descIndex, descLeader, descNodes, descRaft, descPending, descPeers} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.store
	if s == nil {
		return
	}
	byState := map[string]int{}
	for _, st := range []string{api.TaskStaging, api.TaskStarting, api.TaskRunning, api.TaskKilling, api.TaskUnreachable} {
		byState[st] = 0
	}
	var index uint64
	var apps, jobs, deps int
	s.Read(func(idx uint64, t map[string]map[string]*Entry) {
		index = idx
		for _, e := range t[TableTasks] {
			byState[e.Value.(*TaskRecord).Task.State]++
		}
		apps, jobs, deps = len(t[TableApps]), len(t[TableJobs]), len(t[TableDeployments])
	})
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(n), st)
	}
	ch <- prometheus.MustNewConstMetric(descApps, prometheus.GaugeValue, float64(apps))
	ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(jobs))
	ch <- prometheus.MustNewConstMetric(descDeploys, prometheus.GaugeValue, float64(deps))
	ch <- prometheus.MustNewConstMetric(descIndex, prometheus.GaugeValue, float64(index)) // a position, like weft_raft_index: a gauge
	lead := 0.0
	if s.IsLeader() {
		lead = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, lead)
	stats := s.Raft().Stats()
	for kind, key := range map[string]string{"last_log": "last_log_index", "commit": "commit_index", "applied": "applied_index", "last_snapshot": "last_snapshot_index"} {
		if v, err := strconv.ParseFloat(stats[key], 64); err == nil {
			ch <- prometheus.MustNewConstMetric(descRaft, prometheus.GaugeValue, v, kind)
		}
	}
	if v, err := strconv.ParseFloat(stats["fsm_pending"], 64); err == nil {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, v)
	}
	if v, err := strconv.ParseFloat(stats["num_peers"], 64); err == nil {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, v)
	}
	nodes := map[string]int{NodeAlive: 0, NodeSuspect: 0, NodeFailed: 0, NodeLeft: 0}
	for _, n := range c.m.cfg.Members.Nodes() {
		nodes[n.Status]++
	}
	for st, n := range nodes {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(n), st)
	}
}
