package lb

import (
	"fmt"
	"html"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves marathon-lb's admin endpoints:
//
//	/_haproxy_health_check  200 while the proxy runs
//	/_haproxy_getconfig     the routing table as text
//	/_haproxy_getvhostmap   "vhost[path] backend" lines
//	/_haproxy_getappmap     "appid backend" lines
//	/haproxy?stats          per frontend and backend counters (;csv for CSV)
//	/_mlb_signal/hup, /_mlb_signal/usr1  list the state again now
//	/metrics                Prometheus metrics
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/_haproxy_health_check", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("/_haproxy_getconfig", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		p.rt.Load().table.WriteConfig(w)
		if e := p.lastError.Load(); e != nil {
			fmt.Fprintf(w, "\n# the master is unreachable, serving the last good table: %s\n", *e)
		}
	})
	mux.HandleFunc("/_haproxy_getvhostmap", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		p.rt.Load().table.WriteVHostMap(w)
	})
	mux.HandleFunc("/_haproxy_getappmap", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		p.rt.Load().table.WriteAppMap(w)
	})
	mux.HandleFunc("/_haproxy_getpids", func(w http.ResponseWriter, r *http.Request) {
		// marathon-lb's zdd polls this to see old HAProxy workers drain;
		// weft has one process and swaps tables in place.
		fmt.Fprintln(w, "1")
	})
	signal := func(w http.ResponseWriter, r *http.Request) {
		p.Resync()
		fmt.Fprintln(w, "Sent SIGHUP signal to marathon-lb")
	}
	mux.HandleFunc("/_mlb_signal/hup", signal)  // re-list the state and reload
	mux.HandleFunc("/_mlb_signal/usr1", signal) // marathon-lb: reload without re-listing; weft re-lists too
	mux.Handle("/metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{}))
	stats := func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.RawQuery, ";csv") || r.URL.Query().Has("csv") {
			w.Header().Set("Content-Type", "text/csv")
			p.writeStats(w, true)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		p.writeStats(w, false)
	}
	mux.HandleFunc("/haproxy", stats)
	mux.HandleFunc("/stats", stats)
	return mux
}

type statRow struct {
	frontend, backend, state string
	active                   int64
	conns, reqs, errs, fails uint64
}

func (p *Proxy) statRows() []statRow {
	var rows []statRow
	kinds := make([]string, 0, len(p.fstats))
	for k := range p.fstats {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		s := p.fstats[k]
		rows = append(rows, statRow{frontend: k, backend: "FRONTEND", state: "OPEN", active: s.active.Load(), conns: s.conns.Load(), reqs: s.requests.Load(), errs: s.errors.Load()})
	}
	rt := p.rt.Load()
	now := p.now().UnixNano()
	for _, r := range rt.routes {
		rows = append(rows, statRow{frontend: r.svc.Name, backend: "BACKEND", state: fmt.Sprintf("%s :%d", r.svc.Mode, r.svc.ServicePort),
			active: r.active.Load(), conns: r.conns.Load(), reqs: r.requests.Load(), errs: r.errors.Load()})
		for _, tier := range [][]*backend{r.primary, r.fallback} {
			for _, b := range tier {
				state := "UP"
				if b.ejected(now) {
					state = "EJECTED"
				}
				if in(b, r.fallback) {
					state += " (other site)"
				}
				rows = append(rows, statRow{frontend: r.svc.Name, backend: b.addr, state: state, active: b.active.Load(),
					conns: b.conns.Load(), reqs: b.requests.Load(), errs: b.errors.Load(), fails: b.failures.Load()})
			}
		}
		// The old colour of a blue/green deploy: MAINT, as HAProxy shows a
		// disabled server (zdd.py waits for scur 0 there).
		for _, b := range rt.draining[r] {
			rows = append(rows, statRow{frontend: r.svc.Name, backend: b.addr, state: "MAINT", active: b.active.Load(),
				conns: b.conns.Load(), reqs: b.requests.Load(), errs: b.errors.Load(), fails: b.failures.Load()})
		}
	}
	return rows
}

func (p *Proxy) writeStats(w http.ResponseWriter, csv bool) {
	rows := p.statRows()
	if csv {
		fmt.Fprintln(w, "# pxname,svname,status,qcur,scur,stot,req_tot,eresp,econ")
		for _, r := range rows {
			fmt.Fprintf(w, "%s,%s,%s,0,%d,%d,%d,%d,%d\n", r.frontend, r.backend, r.state, r.active, r.conns, r.reqs, r.errs, r.fails)
		}
		return
	}
	fmt.Fprint(w, "<!DOCTYPE html><html><head><title>weft lb statistics</title></head><body><h1>weft lb statistics</h1>")
	fmt.Fprintf(w, "<p>routing table at state index %d, %d swaps</p>", p.rt.Load().table.Index, p.swaps.Load())
	fmt.Fprint(w, "<table border=1 cellpadding=3><tr><th>proxy</th><th>server</th><th>state</th><th>current</th><th>connections</th><th>requests</th><th>errors</th><th>connect failures</th></tr>")
	for _, r := range rows {
		fmt.Fprintf(w, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>",
			html.EscapeString(r.frontend), html.EscapeString(r.backend), html.EscapeString(r.state), r.active, r.conns, r.reqs, r.errs, r.fails)
	}
	fmt.Fprint(w, "</table></body></html>\n")
}

// collector exposes the proxy's counters to Prometheus without touching
// the hot path: it reads the atomics when scraped.
type collector struct{ p *Proxy }

var (
	descFrontConns = prometheus.NewDesc("weft_lb_frontend_connections_total", "Connections accepted by a shared frontend.", []string{"frontend"}, nil)
	descFrontReqs  = prometheus.NewDesc("weft_lb_frontend_requests_total", "HTTP requests received by a shared frontend.", []string{"frontend"}, nil)
	descSvcConns   = prometheus.NewDesc("weft_lb_service_connections_total", "TCP connections to a service port.", []string{"service"}, nil)
	descSvcReqs    = prometheus.NewDesc("weft_lb_service_requests_total", "HTTP requests routed to a service.", []string{"service"}, nil)
	descSvcErrs    = prometheus.NewDesc("weft_lb_service_errors_total", "Requests or connections of a service that failed.", []string{"service"}, nil)
	descBeActive   = prometheus.NewDesc("weft_lb_backend_active", "TCP connections and HTTP requests in flight to a backend.", []string{"service", "backend"}, nil)
	descBeReqs     = prometheus.NewDesc("weft_lb_backend_requests_total", "HTTP requests sent to a backend.", []string{"service", "backend"}, nil)
	descBeFails    = prometheus.NewDesc("weft_lb_backend_connect_failures_total", "Failed connects to a backend (each ejects it for a while).", []string{"service", "backend"}, nil)
	descBeEjected  = prometheus.NewDesc("weft_lb_backend_ejected", "1 while a backend is ejected after a failed connect.", []string{"service", "backend"}, nil)
	descSwaps      = prometheus.NewDesc("weft_lb_table_swaps_total", "Routing tables made live.", nil, nil)
	descIndex      = prometheus.NewDesc("weft_lb_table_index", "State index of the live routing table.", nil, nil)
	descProblems   = prometheus.NewDesc("weft_lb_table_problems", "Problems in the live routing table (bad labels, port conflicts).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFrontConns, descFrontReqs, descSvcConns, descSvcReqs, descSvcErrs, descBeActive, descBeReqs, descBeFails, descBeEjected, descSwaps, descIndex, descProblems} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	for k, s := range p.fstats {
		ch <- prometheus.MustNewConstMetric(descFrontConns, prometheus.CounterValue, float64(s.conns.Load()), k)
		ch <- prometheus.MustNewConstMetric(descFrontReqs, prometheus.CounterValue, float64(s.requests.Load()), k)
	}
	rt := p.rt.Load()
	now := p.now().UnixNano()
	for _, r := range rt.routes {
		n := r.svc.Name
		ch <- prometheus.MustNewConstMetric(descSvcConns, prometheus.CounterValue, float64(r.conns.Load()), n)
		ch <- prometheus.MustNewConstMetric(descSvcReqs, prometheus.CounterValue, float64(r.requests.Load()), n)
		ch <- prometheus.MustNewConstMetric(descSvcErrs, prometheus.CounterValue, float64(r.errors.Load()), n)
		for _, tier := range [][]*backend{r.primary, r.fallback} {
			for _, b := range tier {
				ej := 0.0
				if b.ejected(now) {
					ej = 1
				}
				ch <- prometheus.MustNewConstMetric(descBeActive, prometheus.GaugeValue, float64(b.active.Load()), n, b.addr)
				ch <- prometheus.MustNewConstMetric(descBeReqs, prometheus.CounterValue, float64(b.requests.Load()), n, b.addr)
				ch <- prometheus.MustNewConstMetric(descBeFails, prometheus.CounterValue, float64(b.failures.Load()), n, b.addr)
				ch <- prometheus.MustNewConstMetric(descBeEjected, prometheus.GaugeValue, ej, n, b.addr)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descSwaps, prometheus.CounterValue, float64(p.swaps.Load()))
	ch <- prometheus.MustNewConstMetric(descIndex, prometheus.GaugeValue, float64(rt.table.Index))
	ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(len(rt.table.Problems)))
}
