package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/sched/api"
)

// StateSource is where the proxy gets the cluster state: the master's
// blocking query. *api.Client satisfies it.
type StateSource interface {
	Watch(ctx context.Context, after uint64, wait time.Duration) (*api.State, error)
}

var _ StateSource = (*api.Client)(nil)

// Config configures a Proxy.
type Config struct {
	// Group lists the HAPROXY_GROUP values this proxy serves; "*" serves
	// every app, including apps without a group.
	Group []string
	// StrictMode serves only ports with HAPROXY_{n}_ENABLED=true.
	StrictMode bool
	// HTTPAddr is the vhost frontend (":80"; weft up: "127.0.0.1:10080").
	// Empty disables it.
	HTTPAddr string
	// HTTPSAddr is the TLS vhost frontend (":443"), routed by SNI, with
	// Certs and the certificates of apps' HAPROXY_{n}_SSL_CERT. It opens
	// at New with Certs, else when an app first has a certificate. Empty
	// disables it.
	HTTPSAddr string
	// Certs are PEM files each holding a certificate chain and its key.
	Certs []string
	// AppIDAddr routes by the X-Marathon-App-Id header (":9091"). Empty
	// disables it.
	AppIDAddr string
	// AdminAddr serves the marathon-lb admin endpoints and /metrics
	// (":9090"). Empty disables it.
	AdminAddr string
	// AdminClients, when set, says which client addresses the admin
	// endpoints answer; others get 403 (weft: loopback and the overlay
	// network, so a host that routes to the overlay address over the
	// underlay cannot read or signal the lb).
	AdminClients func(netip.Addr) bool
	// BindHost is where service ports listen; "" means every address
	// (weft up: "127.0.0.1").
	BindHost string
	// Site is this node's site: same-site backends are preferred.
	Site string
	// Source is the master's state (required).
	Source StateSource
	// DrainTimeout bounds how long connections to a removed backend may
	// keep running.
	DrainTimeout time.Duration
	// ResyncEvery is the longest a blocking query waits: a full resync
	// happens at least this often.
	ResyncEvery time.Duration
	// EjectFor is how long a backend that refused a connection is left out.
	EjectFor time.Duration
	// ConnectTimeout bounds a dial to a backend.
	ConnectTimeout time.Duration
	// ServerTimeout bounds the wait for a backend's response head (HAProxy's
	// timeout server). Deadlines are refreshed lazily, so the effective
	// bound lies between half of this and this. Bodies and TCP streams
	// have no timeout.
	ServerTimeout time.Duration
	// ClientIdleTimeout closes idle keep-alive client connections (lazily,
	// as ServerTimeout).
	ClientIdleTimeout time.Duration
	// MaxConns bounds the client connections open at once over every
	// frontend (HAProxy's maxconn): at the bound the lb stops accepting
	// and new connections wait in the kernel's backlog. Each one may hold
	// a backend connection too, so keep it well below the process's file
	// limit: the master and agent APIs of the same process share it.
	// 0 is no bound.
	MaxConns int
	// Registry receives the proxy's metrics; nil serves /metrics from a
	// private registry.
	Registry *prometheus.Registry
	// Report, when set, is called with an app's problems whenever they
	// change (nil problems: the app's problems are gone). The lead wires it
	// to a master event so the user sees them where they look.
	Report func(appID string, problems []string)
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// DefaultConfig returns marathon-lb's defaults: group external, vhosts on
// :80, app-id routing on :9091, admin on :9090, service ports on every
// address.
func DefaultConfig() Config {
	return Config{
		Group:             []string{"external"},
		HTTPAddr:          ":80",
		HTTPSAddr:         ":443",
		AppIDAddr:         ":9091",
		AdminAddr:         ":9090",
		DrainTimeout:      30 * time.Second,
		ResyncEvery:       30 * time.Second,
		EjectFor:          10 * time.Second,
		ConnectTimeout:    3 * time.Second,
		ServerTimeout:     60 * time.Second,
		ClientIdleTimeout: 60 * time.Second,
		MaxConns:          DefaultMaxConns,
	}
}

func slotsFor(n int) chan struct{} {
	if n <= 0 {
		return nil
	}
	return make(chan struct{}, n)
}

// DefaultMaxConns is Config.MaxConns's default (`--lb-max-conns`).
const DefaultMaxConns = 4096

// Proxy is the lb: it watches the state, swaps routing tables and serves.
type Proxy struct {
	cfg    Config
	slots  chan struct{} // one per open client connection; nil: no bound
	log    *slog.Logger
	now    func() time.Time
	reg    *prometheus.Registry
	tlsCfg *tls.Config

	rt atomic.Pointer[runtime]

	mu        sync.Mutex
	backends  map[string]*backend
	svcLns    map[int]net.Listener
	statics   map[string]net.Listener // kind → listener
	clients   map[net.Conn]struct{}
	reported  map[string]string // app → joined problems last reported
	closed    bool
	swaps     atomic.Uint64
	lastError atomic.Pointer[string]

	ready     chan struct{}
	resync    chan struct{}
	reports   chan report
	readyOnce sync.Once
	wg        sync.WaitGroup

	fstats map[string]*frontStats // static frontends

	buildMu sync.Mutex
	built   *tableBuild // the last table Apply built, for the next to patch

	feat features // TLS, h2c and per-port listener state (https.go, listeners.go)
}

// runtime is the live table: routes with resolved backends.
type runtime struct {
	table  *Table
	byPort map[int]*route
	vhosts map[string][]*route
	appIDs map[string]*route
	routes []*route
	built  time.Time
	// draining are the backends of a blue/green deploy's old colour (see
	// deploy.go): never picked, still counted as in use and in the stats.
	draining map[*route][]*backend
}

type frontStats struct {
	name     string
	conns    atomic.Uint64
	requests atomic.Uint64
	errors   atomic.Uint64
	active   atomic.Int64
}

// Frontend kinds.
const (
	kindHTTP  = "http"
	kindHTTPS = "https"
	kindAppID = "appid"
	kindAdmin = "admin"
)

// New checks the config and opens the static listeners (HTTP, HTTPS,
// app-id, admin), so that a port already taken fails here.
func New(cfg Config) (*Proxy, error) {
	d := DefaultConfig()
	if cfg.Source == nil {
		return nil, errors.New("lb: no state source: pass the master API client as Config.Source")
	}
	if len(cfg.Group) == 0 {
		return nil, errors.New("lb: no group: pass --lb-group external (or '*' for every app)")
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = d.DrainTimeout
	}
	if cfg.ResyncEvery <= 0 {
		cfg.ResyncEvery = d.ResyncEvery
	}
	if cfg.EjectFor <= 0 {
		cfg.EjectFor = d.EjectFor
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = d.ConnectTimeout
	}
	if cfg.ServerTimeout <= 0 {
		cfg.ServerTimeout = d.ServerTimeout
	}
	if cfg.ClientIdleTimeout <= 0 {
		cfg.ClientIdleTimeout = d.ClientIdleTimeout
	}
	p := &Proxy{
		slots:    slotsFor(cfg.MaxConns),
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		reg:      cfg.Registry,
		backends: map[string]*backend{},
		svcLns:   map[int]net.Listener{},
		statics:  map[string]net.Listener{},
		clients:  map[net.Conn]struct{}{},
		reported: map[string]string{},
		ready:    make(chan struct{}),
		resync:   make(chan struct{}, 1),
		reports:  make(chan report, 1024),
		fstats:   map[string]*frontStats{},
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p.log = p.log.With("component", "lb")
	if p.now == nil {
		p.now = time.Now
	}
	if p.reg == nil {
		p.reg = prometheus.NewRegistry()
	}
	if err := p.reg.Register(&collector{p}); err != nil {
		return nil, fmt.Errorf("lb: registering metrics: %w", err)
	}
	p.rt.Store(p.buildRuntime(&Table{ByPort: map[int]*Service{}, VHosts: map[string][]*Service{}, AppIDs: map[string]*Service{}}))
	if cfg.HTTPSAddr != "" {
		tc, err := loadCerts(cfg.Certs)
		if err != nil {
			return nil, err
		}
		p.tlsCfg = tc
	}
	open := func(kind, addr string) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.closeStatics()
			return fmt.Errorf("lb: listening for the %s frontend on %s: %w (pick another address with the matching --lb-*-addr flag)", kind, addr, err)
		}
		p.statics[kind] = ln
		p.fstats[kind] = &frontStats{name: kind}
		return nil
	}
	if err := open(kindHTTP, cfg.HTTPAddr); err != nil {
		return nil, err
	}
	if len(cfg.Certs) > 0 && p.tlsCfg != nil {
		if err := open(kindHTTPS, cfg.HTTPSAddr); err != nil {
			return nil, err
		}
	} else if p.tlsCfg != nil {
		// Opened when an app first brings a certificate (https.go).
		p.fstats[kindHTTPS] = &frontStats{name: kindHTTPS}
	}
	if err := open(kindAppID, cfg.AppIDAddr); err != nil {
		return nil, err
	}
	if err := open(kindAdmin, cfg.AdminAddr); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proxy) closeStatics() {
	for _, ln := range p.statics {
		ln.Close()
	}
}

// Addr returns the bound address of a frontend: "http", "https", "appid"
// or "admin"; "" when it is not served.
func (p *Proxy) Addr(kind string) string {
	if ln := p.statics[kind]; ln != nil {
		return ln.Addr().String()
	}
	if kind == kindHTTPS {
		return p.lazyHTTPSAddr()
	}
	return ""
}

// Ready is closed once the first routing table is live.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Resync makes the proxy list the whole state again now (marathon-lb's
// SIGHUP, /_mlb_signal/hup).
func (p *Proxy) Resync() {
	select {
	case p.resync <- struct{}{}:
	default:
	}
}

// Table returns the live routing table.
func (p *Proxy) Table() *Table { return p.rt.Load().table }

// Run serves until ctx is done, following the master's state.
func (p *Proxy) Run(ctx context.Context) error {
	for kind, ln := range p.statics {
		switch kind {
		case kindAdmin:
			srv := &http.Server{Handler: p.adminGate(p.AdminHandler()), ReadHeaderTimeout: 10 * time.Second}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); srv.Serve(ln) }()
			context.AfterFunc(ctx, func() { srv.Close() })
		case kindHTTPS:
			srv := p.httpsServer()
			p.wg.Add(1)
			go func() { defer p.wg.Done(); srv.Serve(tls.NewListener(ln, p.tlsCfg)) }()
			context.AfterFunc(ctx, func() { srv.Close() })
		default:
			fe := &frontend{kind: kind, port: portOf(ln.Addr()), stats: p.fstats[kind]}
			fe.init()
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.acceptLoop(ln, fe) }()
		}
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.janitor(ctx) }()
	if p.cfg.Report != nil {
		// Not waited for: Run must not hang on a stuck callback.
		go p.reporter(ctx)
	}
	err := p.watch(ctx)
	p.shutdown()
	p.wg.Wait()
	return err
}

func portOf(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	return 0
}

func (p *Proxy) watch(ctx context.Context) error {
	var after uint64
	backoff := time.Second
	for {
		// A resync request (/_mlb_signal/hup) cancels the blocking query
		// and lists the whole state again.
		wctx, cancel := context.WithCancel(ctx)
		var hup atomic.Bool
		go func() {
			select {
			case <-p.resync:
				hup.Store(true)
				cancel()
			case <-wctx.Done():
			}
		}()
		st, err := p.cfg.Source.Watch(wctx, after, p.cfg.ResyncEvery)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if hup.Load() {
			after = 0
			if err != nil {
				continue
			}
		}
		if err == nil && (st == nil || st.Index == 0 && after > 0) {
			// An empty answer (a master shutting down, say) is not a state:
			// applying it would close every service port.
			err = errors.New("the master returned an empty state")
		}
		if err != nil {
			msg := err.Error()
			p.lastError.Store(&msg)
			p.log.Warn("watching the master failed; serving the last good table", "err", err, "retry", backoff)
			t := time.NewTimer(backoff + time.Duration(rand.Int64N(int64(backoff/2)+1)))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		p.lastError.Store(nil)
		backoff = time.Second
		if st.Index < after {
			after = 0 // the master restarted or changed leader
		} else {
			after = st.Index
		}
		p.Apply(st)
	}
}

// Apply builds a table from st and swaps it in. It is what the watch calls;
// tests and embedders may call it directly. Applying the same state twice
// changes nothing. The table is BuildTable's, patched from the last one
// when st says what changed since (see incremental.go).
func (p *Proxy) Apply(st *api.State) {
	p.buildMu.Lock()
	b := updateTable(p.built, st, TableConfig{Groups: p.cfg.Group, Site: p.cfg.Site, StrictMode: p.cfg.StrictMode})
	p.built = b
	table, problems := b.table, b.problems
	p.buildMu.Unlock()
	table, certProblems := p.loadAppCerts(table)
	problems = append(problems, certProblems...)
	problems = append(problems, p.swap(table)...)
	p.report(problems)
	p.readyOnce.Do(func() { close(p.ready) })
}

func (p *Proxy) report(problems []Problem) {
	byApp := map[string][]string{}
	for _, pr := range problems {
		byApp[pr.AppID] = append(byApp[pr.AppID], pr.String())
	}
	p.mu.Lock()
	var changed []string
	for app, ps := range byApp {
		j := strings.Join(ps, "\n")
		if p.reported[app] != j {
			p.reported[app] = j
			changed = append(changed, app)
		}
	}
	for app := range p.reported {
		if _, ok := byApp[app]; !ok {
			delete(p.reported, app)
			changed = append(changed, app)
		}
	}
	p.mu.Unlock()
	sort.Strings(changed)
	for _, app := range changed {
		ps := byApp[app]
		for _, m := range ps {
			p.log.Warn("lb config problem", "app", app, "problem", m)
		}
		if p.cfg.Report != nil {
			select {
			case p.reports <- report{app, ps}:
			default:
				p.log.Warn("lb problem reports are backing up; dropping one", "app", app)
			}
		}
	}
}

type report struct {
	app      string
	problems []string
}

// reporter calls Config.Report off the watch loop, in order, so that a
// slow callback (a POST to an unreachable master) never delays routing.
func (p *Proxy) reporter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.reports:
			p.cfg.Report(r.app, r.problems)
		}
	}
}

// swap makes table live: backends new to it are created, removed ones
// start draining, service-port listeners open and close.
func (p *Proxy) swap(table *Table) []Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	var problems []Problem
	rt := p.buildRuntimeLocked(table)
	p.rt.Store(rt)
	p.swaps.Add(1)

	// Backends no longer routed to drain; those back are re-admitted.
	inUse := map[string]bool{}
	for _, r := range rt.routes {
		for _, b := range r.primary {
			inUse[b.addr] = true
		}
		for _, b := range r.fallback {
			inUse[b.addr] = true
		}
		for _, b := range rt.draining[r] {
			inUse[b.addr] = true
		}
	}
	for addr, b := range p.backends {
		if inUse[addr] {
			b.readmit()
			continue
		}
		b.markRemoved(p.cfg.DrainTimeout)
		b.mu.Lock()
		gone := len(b.live) == 0
		b.mu.Unlock()
		if gone {
			delete(p.backends, addr)
		}
	}

	// Listeners: open new service ports, close removed ones.
	problems = append(problems, p.syncServiceListenersLocked(table)...)
	p.log.Debug("routing table swapped", "index", table.Index, "services", len(table.Services))
	return problems
}

func (p *Proxy) buildRuntime(table *Table) *runtime {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buildRuntimeLocked(table)
}

func (p *Proxy) buildRuntimeLocked(table *Table) *runtime {
	old := p.rt.Load()
	rt := &runtime{table: table, byPort: map[int]*route{}, vhosts: map[string][]*route{}, appIDs: map[string]*route{}, built: p.now()}
	byName := map[*Service]*route{}
	for _, s := range table.Services {
		if old != nil {
			// A patched table keeps an unchanged app's services: their
			// routes (backends, counters, verified credentials) stay as
			// they were. Their backends are in use, so none was dropped.
			if o := old.byPort[s.ServicePort]; o != nil && o.svc == s {
				if d := old.draining[o]; d != nil {
					if rt.draining == nil {
						rt.draining = map[*route][]*backend{}
					}
					rt.draining[o] = d
				}
				rt.byPort[s.ServicePort] = o
				rt.routes = append(rt.routes, o)
				byName[s] = o
				continue
			}
		}
		r := &route{svc: s, byCookie: map[string]*backend{}}
		// Keep counters across swaps for the same service.
		if old != nil {
			if o := old.byPort[s.ServicePort]; o != nil && o.svc.Name == s.Name {
				r.conns, r.requests, r.errors, r.active = o.conns, o.requests, o.errors, o.active
				r.rr.Store(o.rr.Load())
			}
		}
		if r.conns == nil {
			r.conns, r.requests, r.errors, r.active = new(atomic.Uint64), new(atomic.Uint64), new(atomic.Uint64), new(atomic.Int64)
		}
		for _, be := range s.Backends {
			b := p.backends[be.Addr]
			if b == nil {
				b = newBackend(be.Addr, be.ServerName, be.ServerID)
				p.backends[be.Addr] = b
			}
			if be.Draining {
				if rt.draining == nil {
					rt.draining = map[*route][]*backend{}
				}
				rt.draining[r] = append(rt.draining[r], b)
				continue
			}
			if be.Fallback {
				r.fallback = append(r.fallback, b)
			} else {
				r.primary = append(r.primary, b)
			}
			r.byCookie[be.ServerID] = b
		}
		rt.byPort[s.ServicePort] = r
		rt.routes = append(rt.routes, r)
		byName[s] = r
	}
	for vh, l := range table.VHosts {
		for _, s := range l {
			rt.vhosts[vh] = append(rt.vhosts[vh], byName[s])
		}
	}
	for id, s := range table.AppIDs {
		rt.appIDs[id] = byName[s]
	}
	return rt
}

func (p *Proxy) trackClient(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.clients[c] = struct{}{}
	return true
}

func (p *Proxy) untrackClient(c net.Conn) {
	p.mu.Lock()
	delete(p.clients, c)
	p.mu.Unlock()
}

func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	for _, ln := range p.svcLns {
		ln.Close()
	}
	p.closeStatics()
	p.closeLazyHTTPS()
	clients := make([]net.Conn, 0, len(p.clients))
	for c := range p.clients {
		clients = append(clients, c)
	}
	var bs []*backend
	for _, b := range p.backends {
		bs = append(bs, b)
	}
	p.mu.Unlock()
	for _, b := range bs {
		b.markRemoved(0)
	}
	// Backends first: closing a client connection waits for a request it
	// is serving inside its session (sock.go), which a closed backend
	// connection ends at once.
	for _, c := range clients {
		c.Close()
	}
}

// acceptLoop accepts on one listener until it is closed.
func (p *Proxy) acceptLoop(ln net.Listener, fe *frontend) {
	p.acceptEach(ln, fe, func(tc *net.TCPConn) { p.serveConn(tc, fe) })
}

// acceptEach accepts on ln until it is closed, backing off on transient
// errors (timeouts, out of file descriptors), and serves each TCP
// connection on its own goroutine.
func (p *Proxy) acceptEach(ln net.Listener, fe *frontend, serve func(*net.TCPConn)) {
	var delay time.Duration
	for {
		if p.slots != nil {
			p.slots <- struct{}{} // waits while MaxConns connections are open
		}
		c, err := ln.Accept()
		if err != nil {
			p.releaseSlot()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "too many open files") {
				delay = max(5*time.Millisecond, min(delay*2, time.Second))
				time.Sleep(delay)
				continue
			}
			p.log.Error("accept failed", "frontend", fe.kind, "port", fe.port, "err", err)
			return
		}
		delay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			p.releaseSlot()
			continue
		}
		go func() {
			defer p.releaseSlot()
			serve(tc)
		}()
	}
}

func (p *Proxy) releaseSlot() {
	if p.slots != nil {
		<-p.slots
	}
}

// serveConn hands a client connection to the TCP or HTTP path.
func (p *Proxy) serveConn(c *net.TCPConn, fe *frontend) {
	if !p.trackClient(c) {
		c.Close()
		return
	}
	defer p.untrackClient(c)
	if fe.stats != nil {
		fe.stats.conns.Add(1)
		fe.stats.active.Add(1)
		defer fe.stats.active.Add(-1)
	}
	if fe.kind == "service" {
		r := p.rt.Load().byPort[fe.port]
		if r == nil {
			c.Close()
			return
		}
		if r.svc.Mode == ModeTCP {
			p.serveTCP(c, r)
			return
		}
	}
	p.serveHTTP(c, fe)
}

// janitor closes keep-alive connections to backends that sat idle too long.
func (p *Proxy) janitor(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := p.now().Add(-30 * time.Second)
		p.mu.Lock()
		bs := make([]*backend, 0, len(p.backends))
		for _, b := range p.backends {
			bs = append(bs, b)
		}
		p.mu.Unlock()
		for _, b := range bs {
			b.closeIdleOlder(cutoff)
		}
	}
}

// adminGate answers 403 to admin clients AdminClients refuses.
func (p *Proxy) adminGate(h http.Handler) http.Handler {
	if p.cfg.AdminClients == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !p.cfg.AdminClients(ap.Addr().Unmap()) {
			http.Error(w, "the lb admin endpoints answer only loopback and the overlay network", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
