package lb

import (
	"fmt"
	"html"
	"net/http"
	"sort"
	"strconv"
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
	pxname, svname string // HAProxy's proxy and server names, as marathon-lb writes them
	state          string // weft's state, for the HTML page
	status         string // HAProxy's: OPEN (frontend), UP, DOWN, MAINT
	kind           int    // HAProxy's type: 0 frontend, 1 backend, 2 server
	addr, mode     string
	backup         bool
	active         int64
	conns, reqs    uint64
	errs, fails    uint64
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
		rows = append(rows, statRow{pxname: k, svname: "FRONTEND", state: "OPEN", status: "OPEN", kind: 0, active: s.active.Load(),
			conns: s.conns.Load(), reqs: s.requests.Load(), errs: s.errors.Load()})
	}
	rt := p.rt.Load()
	now := p.now().UnixNano()
	for _, r := range rt.routes {
		up := false
		var servers []statRow
		for _, tier := range [][]*backend{r.primary, r.fallback} {
			for _, b := range tier {
				state, status := "UP", "UP"
				if b.ejected(now) {
					state, status = "EJECTED", "DOWN"
				}
				up = up || status == "UP"
				fallback := in(b, r.fallback)
				if fallback {
					state += " (other site)"
				}
				servers = append(servers, statRow{pxname: r.svc.Name, svname: b.statName(), state: state, status: status, kind: 2,
					addr: b.addr, mode: r.svc.Mode, backup: fallback, active: b.active.Load(),
					conns: b.conns.Load(), reqs: b.requests.Load(), errs: b.errors.Load(), fails: b.failures.Load()})
			}
		}
		// The old colour of a blue/green deploy: MAINT, as HAProxy shows a
		// disabled server (zdd.py waits for scur 0 there).
		for _, b := range rt.draining[r] {
			servers = append(servers, statRow{pxname: r.svc.Name, svname: b.statName(), state: "MAINT", status: "MAINT", kind: 2,
				addr: b.addr, mode: r.svc.Mode, active: b.active.Load(),
				conns: b.conns.Load(), reqs: b.requests.Load(), errs: b.errors.Load(), fails: b.failures.Load()})
		}
		// HAProxy lists a backend's servers first, then the backend.
		rows = append(rows, servers...)
		status := "DOWN"
		if up {
			status = "UP"
		}
		rows = append(rows, statRow{pxname: r.svc.Name, svname: "BACKEND", state: fmt.Sprintf("%s :%d", r.svc.Mode, r.svc.ServicePort),
			status: status, kind: 1, mode: r.svc.Mode, active: r.active.Load(), conns: r.conns.Load(), reqs: r.requests.Load(), errs: r.errors.Load()})
	}
	return rows
}

// statName is the backend's HAProxy server name (its address when it has
// none, as in tests that build backends by hand).
func (b *backend) statName() string {
	if b.name != "" {
		return b.name
	}
	return b.addr
}

// statColumns are the columns of HAProxy's CSV statistics (management
// guide, "CSV format"), in order; every line, the heading included, ends
// with a comma, as HAProxy writes it and as zdd.py's parser expects.
var statColumns = []string{"pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout",
	"dreq", "dresp", "ereq", "econ", "eresp", "wretr", "wredis", "status", "weight", "act", "bck", "chkfail",
	"chkdown", "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle", "lbtot", "tracked", "type",
	"rate", "rate_lim", "rate_max", "check_status", "check_code", "check_duration", "hrsp_1xx", "hrsp_2xx",
	"hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "hanafail", "req_rate", "req_rate_max", "req_tot",
	"cli_abrt", "srv_abrt", "comp_in", "comp_out", "comp_byp", "comp_rsp", "lastsess", "last_chk", "last_agt",
	"qtime", "ctime", "rtime", "ttime", "agent_status", "agent_code", "agent_duration", "check_desc",
	"agent_desc", "check_rise", "check_fall", "check_health", "agent_rise", "agent_fall", "agent_health",
	"addr", "cookie", "mode", "algo", "conn_rate", "conn_rate_max", "conn_tot", "intercepted", "dcon", "dses"}

// csvLine is r as one line of HAProxy's CSV: the columns weft has a value
// for are filled, the others left empty as HAProxy leaves what does not
// apply.
func (r statRow) csvLine(iid, sid int) string {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	vals := map[string]string{
		"pxname": r.pxname, "svname": r.svname, "scur": strconv.FormatInt(r.active, 10), "stot": u(r.conns),
		"status": r.status, "pid": "1", "iid": strconv.Itoa(iid), "sid": strconv.Itoa(sid), "type": strconv.Itoa(r.kind),
		"req_tot": u(r.reqs),
	}
	switch r.kind {
	case 0:
		vals["ereq"] = u(r.errs)
	case 1, 2:
		vals["qcur"], vals["qmax"], vals["econ"], vals["eresp"] = "0", "0", u(r.fails), u(r.errs)
		vals["lbtot"], vals["mode"] = u(r.conns), r.mode
	}
	if r.kind == 2 {
		vals["weight"], vals["act"], vals["bck"] = "1", "1", "0"
		if r.backup {
			vals["act"], vals["bck"] = "0", "1"
		}
		vals["addr"] = r.addr
	}
	var b strings.Builder
	for _, c := range statColumns {
		b.WriteString(csvField(vals[c]))
		b.WriteByte(',')
	}
	b.WriteByte('\n')
	return b.String()
}

// csvField keeps a value from breaking the line: HAProxy names never hold
// commas or newlines, but weft's names come from labels.
func csvField(v string) string {
	return strings.NewReplacer(",", "_", "\n", "_", "\r", "_").Replace(v)
}

func (p *Proxy) writeStats(w http.ResponseWriter, csv bool) {
	rows := p.statRows()
	if csv {
		var b strings.Builder
		b.WriteString("# " + strings.Join(statColumns, ",") + ",\n")
		iid, sid, last := 0, 0, ""
		for _, r := range rows {
			if r.pxname != last {
				iid, sid, last = iid+1, 0, r.pxname
			}
			if r.kind == 2 {
				sid++
			}
			b.WriteString(r.csvLine(iid, sid))
		}
		_, _ = w.Write([]byte(b.String()))
		return
	}
	fmt.Fprint(w, "<!DOCTYPE html><html><head><title>weft lb statistics</title></head><body><h1>weft lb statistics</h1>")
	fmt.Fprintf(w, "<p>routing table at state index %d, %d swaps</p>", p.rt.Load().table.Index, p.swaps.Load())
	fmt.Fprint(w, "<table border=1 cellpadding=3><tr><th>proxy</th><th>server</th><th>address</th><th>state</th><th>current</th><th>connections</th><th>requests</th><th>errors</th><th>connect failures</th></tr>")
	for _, r := range rows {
		fmt.Fprintf(w, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>",
			html.EscapeString(r.pxname), html.EscapeString(r.svname), html.EscapeString(r.addr), html.EscapeString(r.state), r.active, r.conns, r.reqs, r.errs, r.fails)
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
