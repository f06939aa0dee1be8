package lb

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Modes and balance algorithms a service may use.
const (
	ModeTCP  = "tcp"
	ModeHTTP = "http"

	BalanceRoundRobin = "roundrobin"
	BalanceLeastConn  = "leastconn"
	BalanceSource     = "source"
)

// StickyCookie is the cookie marathon-lb's HAPROXY_{n}_STICKY inserts.
const StickyCookie = "mesosphere_server_id"

// HSTSMaxAge is the max-age marathon-lb's HAPROXY_{n}_USE_HSTS sets.
const HSTSMaxAge = 15768000

// TableConfig says which apps this proxy serves and where it runs.
type TableConfig struct {
	// Groups are the lb's --group values. An app port is served when one of
	// its groups (HAPROXY_{n}_GROUP, else HAPROXY_GROUP) is listed; "*"
	// serves every app, including those without a group.
	Groups []string
	// Site is this node's site: healthy backends on it are preferred, and
	// other sites are used only when it has none.
	Site string
	// StrictMode serves a port only when HAPROXY_{n}_ENABLED is true, as
	// marathon-lb's --strict-mode does.
	StrictMode bool
}

// Table is the routing table: every served service port with its backends,
// and the vhost and app-id maps of the shared HTTP frontends.
type Table struct {
	Index    uint64
	Services []*Service            // sorted by service port
	ByPort   map[int]*Service      // service port → service
	VHosts   map[string][]*Service // lower-cased vhost → services, most specific path first
	AppIDs   map[string]*Service   // app id → the app's first HTTP service (for :9091)
	Problems []Problem
}

// Service is one app service port: marathon-lb's backend plus its
// service-port frontend.
type Service struct {
	Name            string // marathon-lb's backend name: app id without "/", "/"→"_", then _<servicePort>
	AppID           string
	PortIndex       int // {n}
	ServicePort     int
	Mode            string // tcp or http
	Balance         string
	VHosts          []string
	Paths           []string // path prefixes (HAPROXY_{n}_PATH, space separated); need a vhost
	Weight          int      // HAPROXY_{n}_BACKEND_WEIGHT: vhost ACL ordering
	Sticky          bool
	RedirectToHTTPS bool
	HSTS            bool
	Auth            *Auth
	Allow           []netip.Prefix // source allow-list; empty allows everyone
	Groups          []string
	// BindAddr is HAPROXY_{n}_BIND_ADDR: the address the service port
	// listens on; "" is the proxy's BindHost.
	BindAddr string
	// SSLCert is HAPROXY_{n}_SSL_CERT: a PEM file (chain and key). The
	// service port then speaks TLS, and the :443 frontend serves the
	// vhosts with it by SNI.
	SSLCert string
	// ProxyPath is HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH: a path prefix
	// removed before forwarding ("/api/x" → "/x"), the Host header set to
	// the vhost.
	ProxyPath string
	// Redir is HAPROXY_{n}_HTTP_BACKEND_REDIR: where a request for "/" on
	// one of the vhosts is redirected (301).
	Redir    string
	Backends []Backend // preferred tier first (see Backend.Fallback)
}

// Auth is HAPROXY_{n}_AUTH: realm:user:encpass.
type Auth struct {
	Realm string
	User  string
	Pass  string // crypt(3) hash (bcrypt, sha-crypt) or a plain password
}

// Backend is one task port a service routes to.
type Backend struct {
	Addr       string // ip:port
	TaskID     string
	Host       string
	Site       string
	ServerName string // marathon-lb's HAProxy server name: host_ip_port, or ip_port when the host is the IP
	ServerID   string // sticky cookie value: hex(sha1(server name))[:10]
	// Fallback marks backends on other sites: used only when no preferred
	// backend is available.
	Fallback bool
	// Draining marks the old colour's tasks of a blue/green deploy (see
	// deploy.go): no new traffic, existing connections go on.
	Draining bool
}

// Problem is something the table could not honour, tied to the app (and
// port and label) it came from.
type Problem struct {
	AppID     string
	PortIndex int // -1 when the problem concerns the whole app
	Label     string
	Message   string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString("app ")
	b.WriteString(p.AppID)
	if p.PortIndex >= 0 {
		fmt.Fprintf(&b, " port %d", p.PortIndex)
	}
	if p.Label != "" {
		fmt.Fprintf(&b, " label %s", p.Label)
	}
	b.WriteString(": ")
	b.WriteString(p.Message)
	return b.String()
}

// Labels weft honours, per port ({n} is the port index).
var honoured = map[string]bool{
	"GROUP": true, "ENABLED": true, "VHOST": true, "PATH": true, "BACKEND_WEIGHT": true,
	"PORT": true, "MODE": true, "BALANCE": true, "STICKY": true, "REDIRECT_TO_HTTPS": true,
	"USE_HSTS": true, "AUTH": true, "BACKEND_NETWORK_ALLOWED_ACL": true,
	"BACKEND_HEALTHCHECK_PORT_INDEX": true, "BIND_ADDR": true, "SSL_CERT": true,
	"HTTP_BACKEND_PROXYPASS_PATH": true, "HTTP_BACKEND_REDIR": true,
}

// isTemplateLabel reports whether a per-port label suffix injects raw
// HAProxy configuration (or needs HAProxy features weft does not have).
// Such labels are recognised and ignored with one warning per app.
func isTemplateLabel(suffix string) bool {
	switch suffix {
	case "BIND_OPTIONS", "HTTP_BACKEND_REVPROXY_PATH", "USERLIST_HEAD",
		"FRONTEND_HEAD", "BACKEND_HEAD", "FRONTEND_BACKEND_GLUE":
		return true
	}
	for _, p := range []string{"BACKEND_", "FRONTEND_", "HTTP_FRONTEND_", "HTTPS_FRONTEND_",
		"HTTPS_GROUPED_", "HTTP_BACKEND_", "TCP_BACKEND_", "USERLIST_",
		// HAPROXY_{n}_MAP_HTTP_FRONTEND_ACL, _ACL_ONLY, _ACL_WITH_PATH,
		// MAP_HTTPS_FRONTEND_ACL, MAP_HTTP_FRONTEND_APPID_ACL: map-file
		// ACL templates.
		"MAP_"} {
		if strings.HasPrefix(suffix, p) {
			return true
		}
	}
	return false
}

// appTemplateLabels are app-level labels that are recognised and ignored.
var appTemplateLabels = map[string]bool{
	"HAPROXY_HEAD": true, "HAPROXY_HTTP_FRONTEND_HEAD": true, "HAPROXY_HTTPS_FRONTEND_HEAD": true,
	"HAPROXY_HTTP_FRONTEND_APPID_HEAD": true, "HAPROXY_MAP_HTTP_FRONTEND_ACL": true,
}

// BuildTable computes the routing table from the master's state. It is a
// pure function: the same state and config give the same table.
func BuildTable(st *api.State, cfg TableConfig) (*Table, []Problem) {
	b := buildFull(st, cfg)
	return b.table, b.problems
}

// buildFull is BuildTable, with what the next update needs to patch the table
// (see patchTable).
func buildFull(st *api.State, cfg TableConfig) *tableBuild {
	t := &Table{ByPort: map[int]*Service{}, VHosts: map[string][]*Service{}, AppIDs: map[string]*Service{}}
	b := &tableBuild{st: st, cfg: cfg, table: t}
	if st == nil {
		return b
	}
	t.Index = st.Index
	nodes := map[string]*api.Node{}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		nodes["id:"+n.ID] = n
		nodes["name:"+n.Name] = n
	}
	tasks := map[string][]*api.Task{}
	for i := range st.Tasks {
		tk := st.Tasks[i]
		tasks[tk.AppID] = append(tasks[tk.AppID], tk)
	}
	for _, l := range tasks {
		sort.Slice(l, func(i, j int) bool { return l[i].ID < l[j].ID })
	}

	apps := make([]*api.App, len(st.Apps))
	for i := range st.Apps {
		apps[i] = st.Apps[i]
		if deploymentGroup(apps[i]) {
			b.merged = true
		}
	}
	b.patchable = !b.merged
	if b.patchable {
		b.apps = make(map[string]*builtApp, len(apps))
		b.withProblems = map[string]bool{}
		b.appTasks = make(map[string][]string, len(tasks))
		for id, l := range tasks {
			ids := make([]string, len(l))
			for i, tk := range l {
				ids[i] = tk.ID
			}
			b.appTasks[id] = ids
		}
	}
	// Apps of one blue/green deployment group are served as one.
	apps, tasks, draining, problems := mergeDeploymentGroups(apps, tasks)
	// Older apps first, so that they keep a contested service port.
	sort.SliceStable(apps, func(i, j int) bool {
		ai, aj := appAge(apps[i]), appAge(apps[j])
		if ai != aj {
			return ai < aj
		}
		return apps[i].ID < apps[j].ID
	})
	for _, app := range apps {
		svcs, ps := appServices(app, tasks[app.ID], nodes, cfg, draining)
		problems = append(problems, ps...)
		if b.patchable {
			b.apps[app.ID] = &builtApp{age: appAge(app), svcs: svcs, problems: ps}
			if len(ps) > 0 {
				b.withProblems[app.ID] = true
			}
		}
		for _, s := range svcs {
			if prev, ok := t.ByPort[s.ServicePort]; ok {
				b.patchable = false // which app keeps the port depends on them all
				problems = append(problems, Problem{AppID: app.ID, PortIndex: s.PortIndex, Label: portLabel(s.PortIndex, "PORT"),
					Message: fmt.Sprintf("service port %d is already used by app %s (older); this port is not served: choose another service port", s.ServicePort, prev.AppID)})
				continue
			}
			t.ByPort[s.ServicePort] = s
			t.Services = append(t.Services, s)
		}
	}
	sort.Slice(t.Services, func(i, j int) bool { return t.Services[i].ServicePort < t.Services[j].ServicePort })
	t.index()
	t.Problems = problems
	b.problems = problems
	if !b.patchable {
		b.apps, b.appTasks, b.withProblems = nil, nil, nil
	}
	return b
}

// index builds the vhost and app-id maps from Services.
func (t *Table) index() {
	t.VHosts, t.AppIDs = map[string][]*Service{}, map[string]*Service{}
	for _, s := range t.Services {
		if s.Mode != ModeHTTP {
			continue
		}
		for _, vh := range s.VHosts {
			t.VHosts[vh] = append(t.VHosts[vh], s)
		}
		if _, ok := t.AppIDs[s.AppID]; !ok {
			t.AppIDs[s.AppID] = s
		}
	}
	for _, l := range t.VHosts {
		sort.SliceStable(l, func(i, j int) bool {
			if l[i].Weight != l[j].Weight {
				return l[i].Weight > l[j].Weight
			}
			return longestPath(l[i]) > longestPath(l[j])
		})
	}
}

// without returns a copy of the table without the services in drop, and
// with the problems added.
func (t *Table) without(drop map[*Service]bool, problems []Problem) *Table {
	n := &Table{Index: t.Index, ByPort: map[int]*Service{}}
	for _, s := range t.Services {
		if !drop[s] {
			n.Services = append(n.Services, s)
			n.ByPort[s.ServicePort] = s
		}
	}
	n.index()
	n.Problems = append(append([]Problem(nil), t.Problems...), problems...)
	return n
}

func longestPath(s *Service) int {
	m := 0
	for _, p := range s.Paths {
		if len(p) > m {
			m = len(p)
		}
	}
	return m
}

// appAge orders apps: the one created or last changed first is older.
func appAge(a *api.App) string {
	if a.VersionInfo != nil && a.VersionInfo.LastConfigChangeAt != "" {
		return a.VersionInfo.LastConfigChangeAt
	}
	if a.Version != "" {
		return a.Version
	}
	return "~" // no version: newest
}

func portLabel(n int, suffix string) string { return fmt.Sprintf("HAPROXY_%d_%s", n, suffix) }

// servicePorts returns the app's service ports as marathon-lb reads them.
func servicePorts(app *api.App) []int {
	var pms []api.PortMapping
	if app.Container != nil {
		pms = app.Container.PortMappings
		if len(pms) == 0 && app.Container.Docker != nil {
			pms = app.Container.Docker.PortMappings
		}
	}
	if len(pms) > 0 {
		out := make([]int, len(pms))
		for i, pm := range pms {
			out[i] = pm.ServicePort
		}
		return out
	}
	if len(app.PortDefinitions) > 0 {
		out := make([]int, len(app.PortDefinitions))
		for i, pd := range app.PortDefinitions {
			out[i] = pd.Port
		}
		return out
	}
	return app.Ports
}

// containerNetworked reports whether the app's tasks are reached on their
// own IP (container/USER networks, IP-per-task) rather than the host's.
func containerNetworked(app *api.App) bool {
	if app.IPAddress != nil {
		return true
	}
	for _, n := range app.Networks {
		if n.Mode == "container" {
			return true
		}
	}
	if app.Container != nil && app.Container.Docker != nil && strings.EqualFold(app.Container.Docker.Network, "USER") {
		return true
	}
	return false
}

// containerPorts are the ports a container-networked task listens on.
func containerPorts(app *api.App) []int {
	if app.IPAddress != nil && app.IPAddress.Discovery != nil && len(app.IPAddress.Discovery.Ports) > 0 {
		out := make([]int, len(app.IPAddress.Discovery.Ports))
		for i, p := range app.IPAddress.Discovery.Ports {
			out[i] = p.Number
		}
		return out
	}
	if app.Container != nil {
		pms := app.Container.PortMappings
		if len(pms) == 0 && app.Container.Docker != nil {
			pms = app.Container.Docker.PortMappings
		}
		out := make([]int, len(pms))
		for i, pm := range pms {
			out[i] = pm.ContainerPort
		}
		return out
	}
	return nil
}

// healthCheckFor returns the first health check of port index n.
func healthCheckFor(app *api.App, n int) *api.HealthCheck {
	for i := range app.HealthChecks {
		hc := &app.HealthChecks[i]
		idx := 0
		if hc.PortIndex != nil {
			idx = *hc.PortIndex
		} else if hc.Port != nil {
			continue
		}
		if idx == n {
			return hc
		}
	}
	return nil
}

func isHTTPCheck(hc *api.HealthCheck) bool {
	if hc == nil {
		return false
	}
	switch strings.ToUpper(hc.Protocol) {
	case "HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS":
		return true
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func groupsMatch(want, have []string) bool {
	for _, w := range want {
		if w == "*" {
			return true
		}
		for _, h := range have {
			if w == h {
				return true
			}
		}
	}
	return false
}

func validVHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func parseBool(s string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return err == nil && b
}

// appServices turns one app into its services.
func appServices(app *api.App, tasks []*api.Task, nodes map[string]*api.Node, cfg TableConfig, draining map[string]bool) ([]*Service, []Problem) {
	var problems []Problem
	ports := servicePorts(app)
	labels := app.Labels

	// Template-override labels: one warning per app.
	var ignored []string
	for k := range labels {
		if !strings.HasPrefix(k, "HAPROXY_") {
			continue
		}
		if appTemplateLabels[k] {
			ignored = append(ignored, k)
			continue
		}
		rest := strings.TrimPrefix(k, "HAPROXY_")
		i := strings.IndexByte(rest, '_')
		if i <= 0 {
			continue
		}
		if _, err := strconv.Atoi(rest[:i]); err != nil {
			continue
		}
		if suffix := rest[i+1:]; !honoured[suffix] && isTemplateLabel(suffix) {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		sort.Strings(ignored)
		problems = append(problems, Problem{AppID: app.ID, PortIndex: -1,
			Message: "labels that inject raw HAProxy configuration are ignored by weft's lb: " + strings.Join(ignored, ", ")})
	}

	appGroups := splitList(labels["HAPROXY_GROUP"])
	cnet := containerNetworked(app)
	cports := containerPorts(app)
	backendsFor := func(n int) []Backend { return taskBackends(app, tasks, nodes, cfg.Site, n, cnet, cports, draining) }

	var out []*Service
	for n, sp := range ports {
		lab := func(suffix string) (string, bool) {
			v, ok := labels[portLabel(n, suffix)]
			return v, ok
		}
		bad := func(suffix, msg string) {
			problems = append(problems, Problem{AppID: app.ID, PortIndex: n, Label: portLabel(n, suffix), Message: msg + "; this port is not served"})
		}
		groups := appGroups
		if v, ok := lab("GROUP"); ok {
			groups = splitList(v)
		}
		if !groupsMatch(cfg.Groups, groups) {
			continue
		}
		if cfg.StrictMode {
			if v, _ := lab("ENABLED"); !parseBool(v) {
				continue
			}
		}
		if v, ok := lab("PORT"); ok {
			p, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || p < 1 || p > 65535 {
				bad("PORT", fmt.Sprintf("%q is not a port number (1-65535)", v))
				continue
			}
			sp = p
		}
		if sp == 0 {
			problems = append(problems, Problem{AppID: app.ID, PortIndex: n, Message: "no service port allocated yet; this port is not served"})
			continue
		}
		s := &Service{
			Name:        strings.ReplaceAll(strings.TrimPrefix(app.ID, "/"), "/", "_") + "_" + strconv.Itoa(sp),
			AppID:       app.ID,
			PortIndex:   n,
			ServicePort: sp,
			Balance:     BalanceRoundRobin,
			Groups:      groups,
		}
		ok := true
		if v, has := lab("VHOST"); has {
			for _, h := range splitList(strings.ToLower(v)) {
				if !validVHost(h) {
					bad("VHOST", fmt.Sprintf("%q is not a valid host name", h))
					ok = false
					break
				}
				s.VHosts = append(s.VHosts, h)
			}
		}
		if !ok {
			continue
		}
		hc := healthCheckFor(app, n)
		if v, has := lab("BACKEND_HEALTHCHECK_PORT_INDEX"); has {
			i, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || i < 0 {
				bad("BACKEND_HEALTHCHECK_PORT_INDEX", fmt.Sprintf("%q is not a port index", v))
				continue
			}
			hc = healthCheckFor(app, i)
		}
		s.Mode = ModeTCP
		if len(s.VHosts) > 0 {
			s.Mode = ModeHTTP
		}
		if v, has := lab("MODE"); has {
			switch m := strings.ToLower(strings.TrimSpace(v)); m {
			case ModeTCP, ModeHTTP:
				s.Mode = m
			default:
				bad("MODE", fmt.Sprintf("unknown mode %q (use tcp or http)", v))
				continue
			}
		}
		if isHTTPCheck(hc) {
			s.Mode = ModeHTTP
		}
		if s.Mode == ModeTCP && len(s.VHosts) > 0 {
			problems = append(problems, Problem{AppID: app.ID, PortIndex: n, Label: portLabel(n, "VHOST"),
				Message: "a vhost needs http mode but HAPROXY_" + strconv.Itoa(n) + "_MODE is tcp; the vhost is not served, the service port is"})
			s.VHosts = nil
		}
		if v, has := lab("PATH"); has {
			for _, p := range strings.Fields(v) {
				if !strings.HasPrefix(p, "/") {
					bad("PATH", fmt.Sprintf("path %q must start with /", p))
					ok = false
					break
				}
				s.Paths = append(s.Paths, p)
			}
			if !ok {
				continue
			}
			if len(s.VHosts) == 0 {
				problems = append(problems, Problem{AppID: app.ID, PortIndex: n, Label: portLabel(n, "PATH"),
					Message: "a path needs a vhost (HAPROXY_" + strconv.Itoa(n) + "_VHOST); the path is ignored"})
				s.Paths = nil
			} else {
				s.Weight = 1
			}
		}
		if v, has := lab("BACKEND_WEIGHT"); has {
			w, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				bad("BACKEND_WEIGHT", fmt.Sprintf("%q is not a number", v))
				continue
			}
			s.Weight = w
		}
		if v, has := lab("BALANCE"); has {
			switch b := strings.ToLower(strings.TrimSpace(v)); b {
			case BalanceRoundRobin, BalanceLeastConn, BalanceSource:
				s.Balance = b
			default:
				bad("BALANCE", fmt.Sprintf("unknown balance %q (use roundrobin, leastconn or source)", v))
				continue
			}
		}
		if v, has := lab("STICKY"); has {
			s.Sticky = parseBool(v)
		}
		if v, has := lab("REDIRECT_TO_HTTPS"); has {
			s.RedirectToHTTPS = parseBool(v)
		}
		if v, has := lab("USE_HSTS"); has {
			s.HSTS = parseBool(v)
		}
		if v, has := lab("AUTH"); has {
			parts := strings.SplitN(v, ":", 3)
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				bad("AUTH", "expected realm:user:encpass")
				continue
			}
			s.Auth = &Auth{Realm: parts[0], User: parts[1], Pass: parts[2]}
		}
		if v, has := lab("BACKEND_NETWORK_ALLOWED_ACL"); has {
			for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' }) {
				pfx, err := netip.ParsePrefix(f)
				if err != nil {
					a, err2 := netip.ParseAddr(f)
					if err2 != nil {
						bad("BACKEND_NETWORK_ALLOWED_ACL", fmt.Sprintf("%q is not a CIDR or an address", f))
						ok = false
						break
					}
					pfx = netip.PrefixFrom(a, a.BitLen())
				}
				s.Allow = append(s.Allow, pfx.Masked())
			}
			if !ok {
				continue
			}
		}
		if v, has := lab("BIND_ADDR"); has {
			a := strings.TrimSpace(v)
			if a == "*" {
				a = ""
			}
			if a != "" {
				ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"))
				if err != nil {
					bad("BIND_ADDR", fmt.Sprintf("%q is not an IP address (or *)", v))
					continue
				}
				a = ip.String()
			}
			s.BindAddr = a
		}
		if v, has := lab("SSL_CERT"); has {
			if s.SSLCert = strings.TrimSpace(v); s.SSLCert == "" {
				bad("SSL_CERT", "empty certificate path")
				continue
			}
		}
		if v, has := lab("HTTP_BACKEND_PROXYPASS_PATH"); has {
			pp := strings.TrimSpace(v)
			if !strings.HasPrefix(pp, "/") || strings.ContainsAny(pp, " \t?#") {
				bad("HTTP_BACKEND_PROXYPASS_PATH", fmt.Sprintf("path %q must start with / and hold no spaces, ? or #", v))
				continue
			}
			s.ProxyPath = pp
		}
		if v, has := lab("HTTP_BACKEND_REDIR"); has {
			rd := strings.TrimSpace(v)
			if rd == "" || strings.ContainsAny(rd, " \t\r\n") {
				bad("HTTP_BACKEND_REDIR", fmt.Sprintf("%q is not a path or URL to redirect to", v))
				continue
			}
			if len(s.VHosts) == 0 {
				problems = append(problems, Problem{AppID: app.ID, PortIndex: n, Label: portLabel(n, "HTTP_BACKEND_REDIR"),
					Message: "a root redirect needs a vhost (HAPROXY_" + strconv.Itoa(n) + "_VHOST); it is ignored"})
			} else {
				s.Redir = rd
			}
		}
		if s.Mode == ModeTCP && (s.Sticky || s.RedirectToHTTPS || s.HSTS || s.Auth != nil || s.ProxyPath != "" || s.Redir != "") {
			problems = append(problems, Problem{AppID: app.ID, PortIndex: n,
				Message: "sticky, redirect, HSTS, auth and path rewriting need http mode; they are ignored on this tcp port"})
			s.Sticky, s.RedirectToHTTPS, s.HSTS, s.Auth, s.ProxyPath, s.Redir = false, false, false, nil, "", ""
		}
		s.Backends = backendsFor(n)
		out = append(out, s)
	}
	return out, problems
}

// taskBackends returns the backends of port index n: RUNNING tasks that are
// alive (when the app has health checks) and ready, same-site ones first.
func taskBackends(app *api.App, tasks []*api.Task, nodes map[string]*api.Node, site string, n int, cnet bool, cports []int, draining map[string]bool) []Backend {
	var local, remote []Backend
	hasChecks := len(app.HealthChecks) > 0
	for _, tk := range tasks {
		if tk.State != api.TaskRunning {
			continue
		}
		if hasChecks {
			if healthy, known := tk.Healthy(); !known || !healthy {
				continue
			}
		}
		if tk.Ready != nil && !*tk.Ready {
			continue
		}
		node := nodes["id:"+tk.SlaveID]
		if node == nil {
			node = nodes["name:"+tk.Host]
		}
		var ip string
		var port int
		if cnet {
			if len(tk.IPAddresses) == 0 || n >= len(cports) {
				continue
			}
			ip, port = tk.IPAddresses[0].IPAddress, cports[n]
		} else {
			if n >= len(tk.Ports) {
				continue
			}
			port = tk.Ports[n]
			switch {
			case node != nil && node.OverlayIP != "":
				ip = node.OverlayIP
			case node != nil && node.Address != "":
				ip = hostOnly(node.Address)
			default:
				ip = tk.Host
			}
		}
		if ip == "" || port <= 0 {
			continue
		}
		tsite := tk.Site
		if tsite == "" && node != nil {
			tsite = node.Site
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		name := serverName(tk.Host, ip, port)
		b := Backend{Addr: addr, TaskID: tk.ID, Host: tk.Host, Site: tsite, ServerName: name, ServerID: serverID(name), Draining: draining[tk.ID]}
		if site == "" || tsite == site {
			local = append(local, b)
		} else {
			b.Fallback = true
			remote = append(remote, b)
		}
	}
	return append(local, remote...)
}

func hostOnly(a string) string {
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}

// serverName is the HAProxy server name marathon-lb gives a backend, and
// that zdd.py looks for in the stats: host_ip_port (ip_port when the host
// is the IP) with every character outside [a-zA-Z0-9-] replaced by "_".
func serverName(host, ip string, port int) string {
	name := ip + "_" + strconv.Itoa(port)
	if host != "" && host != ip {
		name = host + "_" + name
	}
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// serverID is the sticky cookie value of a backend, computed as
// marathon-lb does so that cookies it issued stay valid: the first 10 hex
// digits of the SHA-1 of its server name.
func serverID(name string) string {
	sum := sha1.Sum([]byte(name))
	return hex.EncodeToString(sum[:])[:10]
}
