package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/sched/api"
)

// StateSource is the master's blocking state query: it returns when the
// state index rises above after, or after about wait, with the whole state.
// *api.Client satisfies it.
type StateSource interface {
	Watch(ctx context.Context, after uint64, wait time.Duration) (*api.State, error)
}

var _ StateSource = (*api.Client)(nil)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Domain is the zone served (Mesos-DNS "domain"). Default "pcm".
	Domain string
	// Listen are host:port addresses; each is served over UDP and TCP.
	// Port 0 picks a free port (the same for UDP and TCP); see Addrs.
	// Prefer specific addresses: on a wildcard address (0.0.0.0) UDP replies
	// leave from the routing table's source address, which a client that
	// asked another local address of a multi-homed host rejects.
	Listen []string
	// HTTPListen, when set, serves the Mesos-DNS HTTP API (/v1/...) there.
	HTTPListen string
	// TTL of every answer in seconds (Mesos-DNS "ttl"). Default 5.
	TTL uint32
	// Upstreams are host[:port] resolvers for names outside the zone. Empty
	// means the nameservers of ResolvConf. Upstreams that are this server's
	// own listen addresses are dropped, so it never forwards to itself.
	Upstreams []string
	// ResolvConf is read when Upstreams is empty. Default /etc/resolv.conf.
	ResolvConf string
	// Forward enables forwarding; when false, names outside the zone get
	// REFUSED (Mesos-DNS "externalon").
	Forward bool
	// Clients, when set, says which client addresses are answered at all;
	// queries from others are dropped unanswered (weft: loopback and the
	// overlay network, so that a host that routes to the overlay address
	// over the underlay does not find an open resolver).
	Clients func(netip.Addr) bool
	// ForwardTimeout bounds each upstream exchange; at most 2 s. Default 2 s.
	ForwardTimeout time.Duration
	// MaxForwards bounds forwarded queries in flight; beyond it queries get
	// SERVFAIL. Default 1024.
	MaxForwards int
	// Site is this node's site: answers put tasks of the querying node's
	// site first, and a client that is not a known node counts as here.
	Site string
	// Source is where the state comes from (an *api.Client for the master).
	// Nil means only SetState feeds the table.
	Source StateSource
	// ServeBeforeSync answers in-zone queries from an empty table (SOA and
	// NS only, so NXDOMAIN) before the first sync. When false they get
	// SERVFAIL until then, which resolvers do not cache and retry elsewhere.
	ServeBeforeSync bool
	// ResyncEvery bounds the blocking query's wait, so the whole state is
	// re-read at least this often. At most 30 s. Default 30 s.
	ResyncEvery time.Duration
	// Records holds the SOA fields and label rules; Domain and TTL above
	// override its own.
	Records RecordConfig
	// MesosDNS are the Mesos-DNS config.json settings weft keeps without
	// acting on them, shown back in /v1/config (ApplyMesosDNSConfig).
	MesosDNS MesosDNSKept
	// MesosDNSWarnings are ApplyMesosDNSConfig's warnings, for the caller
	// to log.
	MesosDNSWarnings []string
	// UDPWorkers is the number of threads blocked reading each UDP socket.
	// Default 1: a second reader on the same socket shares its wakeups and
	// nearly doubled the CPU per query on a 2-core machine, at 20k
	// queries/s and at saturation alike, for no more throughput.
	UDPWorkers int
	// Registry receives the Prometheus metrics; nil keeps them private.
	Registry *prometheus.Registry
	// Logger gets the server's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// DefaultConfig is DESIGN.md's `weft up` default: 127.0.0.1:8053, domain
// pcm, TTL 5 s, forwarding on.
func DefaultConfig() Config {
	return Config{
		Domain:         "pcm",
		Listen:         []string{"127.0.0.1:8053"},
		TTL:            5,
		Forward:        true,
		ForwardTimeout: 2 * time.Second,
		MaxForwards:    1024,
		ResyncEvery:    30 * time.Second,
		ResolvConf:     "/etc/resolv.conf",
		Records:        DefaultRecordConfig(),
	}
}

// Server is a Mesos-DNS-compatible DNS server fed by the master's state.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	m        *metrics
	table    atomic.Pointer[Table]
	buildMu  sync.Mutex // one SetState at a time
	info     *buildInfo // what the table's build leaves for the next update
	ready    chan struct{}
	readyOne sync.Once
	isReady  atomic.Bool
	zoneWire []byte

	udp     []*udpSock
	tcp     []*net.TCPListener
	httpLn  net.Listener
	addrs   []string
	fwd     *forwarder
	tcpSem  chan struct{}
	lastIdx atomic.Uint64
	synced  atomic.Int64 // unix nanos of the last successful sync
}

// Status is what the server serves from.
type Status struct {
	Ready    bool      // a state has been loaded
	Index    uint64    // the master's state index of the table served
	LastSync time.Time // the last successful fetch (zero before the first)
	Records  int       // records in the table
}

// Status reports the table being served, e.g. for health checks.
func (s *Server) Status() Status {
	st := Status{Ready: s.isReady.Load(), Index: s.lastIdx.Load(), Records: s.table.Load().count}
	if n := s.synced.Load(); n != 0 {
		st.LastSync = time.Unix(0, n)
	}
	return st
}

// New validates cfg and binds every listen address (UDP and TCP), so Addrs
// is known before Run.
func New(cfg Config) (*Server, error) {
	d := DefaultConfig()
	if cfg.Domain == "" {
		cfg.Domain = d.Domain
	}
	cfg.Domain = strings.Trim(strings.ToLower(cfg.Domain), ".")
	if _, ok := mdns.IsDomainName(cfg.Domain); !ok || strings.Contains(cfg.Domain, "..") {
		return nil, fmt.Errorf("dns: domain %q is not a valid DNS name; use something like pcm or cluster.example", cfg.Domain)
	}
	if cfg.TTL == 0 {
		cfg.TTL = d.TTL
	}
	if cfg.ForwardTimeout <= 0 || cfg.ForwardTimeout > 2*time.Second {
		cfg.ForwardTimeout = d.ForwardTimeout
	}
	if cfg.MaxForwards <= 0 {
		cfg.MaxForwards = d.MaxForwards
	}
	if cfg.ResyncEvery <= 0 || cfg.ResyncEvery > 30*time.Second {
		cfg.ResyncEvery = d.ResyncEvery
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = d.ResolvConf
	}
	if cfg.UDPWorkers <= 0 {
		cfg.UDPWorkers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Records.Domain = cfg.Domain
	cfg.Records.TTL = cfg.TTL
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "dns"),
		now:    cfg.Now,
		m:      newMetrics(cfg.Registry),
		ready:  make(chan struct{}),
		tcpSem: make(chan struct{}, 1024),
	}
	s.zoneWire = nameWire(cfg.Domain + ".")
	if len(cfg.Listen) == 0 {
		return nil, errors.New("dns: no listen address; give at least one host:port, e.g. 127.0.0.1:8053")
	}
	for _, l := range cfg.Listen {
		if err := s.bind(l); err != nil {
			s.closeAll()
			s.closeUDP()
			return nil, err
		}
	}
	if cfg.HTTPListen != "" {
		ln, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			s.closeAll()
			s.closeUDP()
			return nil, fmt.Errorf("dns: listening for the HTTP API on %s: %w", cfg.HTTPListen, err)
		}
		s.httpLn = ln
	}
	ups := cfg.Upstreams
	if len(ups) == 0 && cfg.Forward {
		if cc, err := mdns.ClientConfigFromFile(cfg.ResolvConf); err == nil {
			for _, srv := range cc.Servers {
				ups = append(ups, net.JoinHostPort(srv, cc.Port))
			}
		} else {
			s.log.Warn("no upstream resolvers; names outside the zone will fail", "resolv_conf", cfg.ResolvConf, "err", err)
		}
	}
	s.fwd = newForwarder(s.filterUpstreams(ups), cfg.ForwardTimeout, cfg.MaxForwards)
	t, _ := s.build(nil)
	s.table.Store(t)
	return s, nil
}

func (s *Server) bind(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dns: listen address %q: %w (want host:port)", addr, err)
	}
	portNum, err := strconv.Atoi(port)
	if err != nil || portNum < 0 || portNum > 65535 {
		return fmt.Errorf("dns: listen address %q: port %q is not a number from 0 to 65535", addr, port)
	}
	for attempt := 0; attempt < 20; attempt++ {
		uc, err := listenUDP(host, portNum)
		if err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				return fmt.Errorf("dns: listening on %s/udp: %w (no interface has %s yet: start the overlay first, or listen on another address)", addr, err, host)
			}
			if errors.Is(err, syscall.EACCES) {
				return fmt.Errorf("dns: listening on %s/udp: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE; or pick a port like 8053)", addr, err)
			}
			return fmt.Errorf("dns: listening on %s/udp: %w", addr, err)
		}
		actualPort := int(uc.local.Port())
		t, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(actualPort)))
		if err != nil {
			uc.close()
			if portNum == 0 {
				continue // the TCP side of that port is taken; pick another
			}
			return fmt.Errorf("dns: listening on %s/tcp: %w", addr, err)
		}
		s.udp = append(s.udp, uc)
		s.tcp = append(s.tcp, t.(*net.TCPListener))
		s.addrs = append(s.addrs, net.JoinHostPort(host, strconv.Itoa(actualPort)))
		return nil
	}
	return fmt.Errorf("dns: no free port for both UDP and TCP on %s", host)
}

// closeAll closes every socket; UDP sockets are only shut down (their
// workers wake and return) and are closed by closeUDP once the workers
// are gone, so a descriptor is never reused under a worker.
func (s *Server) closeAll() {
	for _, u := range s.udp {
		u.shutdown()
	}
	for _, t := range s.tcp {
		t.Close()
	}
	if s.httpLn != nil {
		s.httpLn.Close()
	}
}

// Addrs are the bound host:port addresses, in Listen order (UDP and TCP share them).
func (s *Server) Addrs() []string { return append([]string(nil), s.addrs...) }

// HTTPAddr is the bound address of the HTTP API, or "".
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Ready is closed after the first successful sync (or SetState).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Table returns the table being served.
func (s *Server) Table() *Table { return s.table.Load() }

// SetState rebuilds the table from st and serves it: what the sync loop does
// with each state it gets. It is safe to call at any time.
func (s *Server) SetState(st *api.State) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	start := time.Now()
	var t *Table
	if st != nil {
		rc := s.recordConfig()
		if pt, info, ok := patch(s.table.Load(), s.info, st, rc.withDefaults()); ok {
			t, s.info = pt, info
		}
	}
	if t == nil {
		t, s.info = s.build(st)
	}
	s.m.build.Observe(time.Since(start).Seconds())
	if st != nil {
		s.lastIdx.Store(st.Index)
	}
	s.table.Store(t)
	s.m.records.Set(float64(t.count))
	now := s.now()
	s.synced.Store(now.UnixNano())
	s.m.lastSync.Set(float64(now.Unix()))
	s.readyOne.Do(func() {
		s.isReady.Store(true)
		close(s.ready)
	})
}

// recordConfig is the record config of the next table.
func (s *Server) recordConfig() RecordConfig {
	rc := s.cfg.Records
	rc.Serial = uint32(s.now().Unix())
	rc.NSAddrs = nil
	for _, a := range s.addrs {
		if ip := hostIP(a); ip.IsValid() && !ip.IsUnspecified() {
			rc.NSAddrs = append(rc.NSAddrs, ip)
		}
	}
	return rc
}

// build makes the table of st from scratch.
func (s *Server) build(st *api.State) (*Table, *buildInfo) {
	t, info := buildRecords(st, s.recordConfig())
	if st == nil {
		info = nil
	}
	if st != nil {
		nodes := map[netip.Addr]string{}
		blocks := map[netip.Prefix]string{}
		for _, n := range st.Nodes {
			if ip := hostIP(n.OverlayIP); ip.IsValid() {
				nodes[ip] = n.Site
			}
			if ip := hostIP(n.Address); ip.IsValid() {
				nodes[ip] = n.Site
			}
			if p, err := netip.ParsePrefix(n.OverlayBlock); err == nil {
				blocks[p.Masked()] = n.Site
			}
		}
		t.setNodeSites(nodes, blocks)
	}
	t.sites[s.cfg.Site] = t.siteID(s.cfg.Site)
	return t, info
}

func (t *Table) siteID(s string) uint16 {
	if s == "" {
		return 0
	}
	if v, ok := t.sites[s]; ok {
		return v
	}
	v := uint16(len(t.sites) + 1)
	t.sites[s] = v
	return v
}

// Run serves until ctx ends, keeping the table in sync with Source.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, u := range s.udp {
		for i := 0; i < s.cfg.UDPWorkers; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); s.serveUDPBatch(ctx, u) }()
		}
	}
	for _, t := range s.tcp {
		wg.Add(1)
		go func() { defer wg.Done(); s.serveTCP(ctx, t) }()
	}
	var hs *http.Server
	if s.httpLn != nil {
		hs = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http api stopped", "err", err)
			}
		}()
	}
	if s.cfg.Source != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.syncLoop(ctx) }()
	}
	s.log.Info("serving", "domain", s.cfg.Domain, "addrs", s.addrs, "http", s.HTTPAddr(), "upstreams", s.fwd.upstreams)
	<-ctx.Done()
	s.closeAll()
	if hs != nil {
		_ = hs.Close()
	}
	wg.Wait()
	s.closeUDP()
	return nil
}

func (s *Server) closeUDP() {
	for _, u := range s.udp {
		u.close()
	}
}

// syncLoop keeps the table in step with the master: a blocking query that
// returns as soon as the state index rises (push), a full re-read at least
// every ResyncEvery, and, while the master is unreachable, the last good
// table kept and retries with capped exponential backoff.
func (s *Server) syncLoop(ctx context.Context) {
	var idx uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		st, err := s.cfg.Source.Watch(ctx, idx, s.cfg.ResyncEvery)
		if err == nil && (st == nil || st.Index == 0 && idx > 0) {
			// An empty answer (a master shutting down, say) is not a state:
			// serving it would turn every name into NXDOMAIN.
			err = errors.New("master returned an empty state")
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.m.syncs.WithLabelValues("error").Inc()
			s.log.Warn("state fetch failed; serving the last good table", "err", err, "retry_in", backoff)
			sleep(ctx, backoff/2+time.Duration(rand.Int64N(int64(backoff/2)+1)))
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.m.syncs.WithLabelValues("ok").Inc()
		// Rebuild on every answer: the index rises on writes, and the master
		// also answers at the same index when membership (nodes, their
		// addresses and sites) changed; an answer after the full wait is the
		// periodic resync.
		s.SetState(st)
		if st.Index == idx && time.Since(start) < 10*time.Millisecond {
			// A source that does not block: do not spin.
			sleep(ctx, 100*time.Millisecond)
		}
		idx = st.Index
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// action is what to do with a query after handle.
type action int

const (
	actRespond action = iota
	actForward
	actDrop
)

// handle answers one DNS message p from client. The response is left in
// w.out. It never panics on any input.
func (s *Server) handle(w *worker, p []byte, client netip.Addr, tcp bool) action {
	w.out = w.out[:0]
	if s.cfg.Clients != nil && !s.cfg.Clients(client) {
		return actDrop
	}
	if !parseQuery(p, s.zoneWire, &w.q, w.key[:]) {
		return s.slow(w, p, client, tcp)
	}
	return s.fast(w, p, client, tcp)
}

func (s *Server) ra() uint16 {
	if s.cfg.Forward && len(s.fwd.upstreams) > 0 {
		return flagRA
	}
	return 0
}

func (s *Server) fast(w *worker, p []byte, client netip.Addr, tcp bool) action {
	q := &w.q
	ra := s.ra()
	switch {
	case q.edns && q.ednsVers > 0:
		w.answerRcode(p, q, mdns.RcodeBadVers, ra)
		return s.count(q.qtype, w)
	case q.qclass != mdns.ClassINET && q.qclass != mdns.ClassANY:
		w.answerRcode(p, q, mdns.RcodeRefused, ra)
		return s.count(q.qtype, w)
	case q.qtype == mdns.TypeAXFR || q.qtype == mdns.TypeIXFR:
		// Zone transfers are not offered over DNS; /v1/axfr has the table.
		w.answerRcode(p, q, mdns.RcodeRefused, ra)
		return s.count(q.qtype, w)
	}
	t := s.table.Load()
	limit := limitFor(q, tcp)
	e := t.names.getBytes(q.key)
	if q.zoneOff > 0 {
		if !s.isReady.Load() && !s.cfg.ServeBeforeSync {
			w.answerRcode(p, q, mdns.RcodeServerFailure, ra)
			return s.count(q.qtype, w)
		}
		if e == nil {
			w.answerNegative(p, q, t, mdns.RcodeNameError, ra)
			return s.count(q.qtype, w)
		}
		a := e.get(q.qtype)
		if a == nil {
			w.answerNegative(p, q, t, mdns.RcodeSuccess, ra)
			return s.count(q.qtype, w)
		}
		w.answerTable(p, q, t, a, t.siteOf(client, t.sites[s.cfg.Site]), limit, ra)
		return s.count(q.qtype, w)
	}
	if e != nil {
		if a := e.get(q.qtype); a != nil {
			w.answerTable(p, q, t, a, t.siteOf(client, t.sites[s.cfg.Site]), limit, ra)
			return s.count(q.qtype, w)
		}
	}
	if ra == 0 {
		w.answerRcode(p, q, mdns.RcodeRefused, ra)
		s.m.forwards.WithLabelValues("refused").Inc()
		return s.count(q.qtype, w)
	}
	return actForward
}

func (s *Server) count(qtype uint16, w *worker) action {
	s.m.query(qtype, int(w.out[3]&0xF))
	return actRespond
}

// slow handles what the fast parser declines, with miekg/dns: malformed
// messages get FORMERR (or nothing, when not even a header), other opcodes
// NOTIMP; a valid query with unusual sections is reduced to its question
// (and OPT) and answered by the fast path.
func (s *Server) slow(w *worker, p []byte, client netip.Addr, tcp bool) action {
	if len(p) < hdrLen || p[2]&0x80 != 0 {
		return actDrop // not a query; never answer a response
	}
	m := new(mdns.Msg)
	// miekg/dns forgives a header that counts more records than the
	// message holds (it stops at the end); weft does not: such a query is
	// malformed, and an OPT record found in it is not to be trusted for
	// the answer's size.
	if err := m.Unpack(p); err != nil || len(m.Question) != 1 && m.Opcode == mdns.OpcodeQuery || !countsMatch(p, m) {
		w.out = append(w.out[:0], p[0], p[1], 0x80|p[2]&0x78, byte(mdns.RcodeFormatError), 0, 0, 0, 0, 0, 0, 0, 0)
		s.m.query(0, mdns.RcodeFormatError)
		return actRespond
	}
	if m.Opcode != mdns.OpcodeQuery {
		r := new(mdns.Msg)
		r.SetRcode(m, mdns.RcodeNotImplemented)
		r.Question = nil
		return s.packSlow(w, r, 0)
	}
	c := new(mdns.Msg)
	c.Id = m.Id
	c.RecursionDesired = m.RecursionDesired
	c.CheckingDisabled = m.CheckingDisabled
	c.Question = m.Question
	if o := m.IsEdns0(); o != nil {
		c.SetEdns0(o.UDPSize(), o.Do())
		c.IsEdns0().SetVersion(o.Version())
	}
	cp, err := c.Pack()
	if err != nil || !parseQuery(cp, s.zoneWire, &w.q, w.key[:]) {
		r := new(mdns.Msg)
		r.SetRcode(m, mdns.RcodeFormatError)
		return s.packSlow(w, r, m.Question[0].Qtype)
	}
	a := s.fast(w, cp, client, tcp)
	if a == actForward {
		// Forward the reduced query; keep it in w.out for the caller.
		w.out = append(w.out[:0], cp...)
	}
	return a
}

// countsMatch: the header's four record counts are the records unpacked.
func countsMatch(p []byte, m *mdns.Msg) bool {
	return int(binary.BigEndian.Uint16(p[4:])) == len(m.Question) &&
		int(binary.BigEndian.Uint16(p[6:])) == len(m.Answer) &&
		int(binary.BigEndian.Uint16(p[8:])) == len(m.Ns) &&
		int(binary.BigEndian.Uint16(p[10:])) == len(m.Extra)
}

func (s *Server) packSlow(w *worker, r *mdns.Msg, qtype uint16) action {
	b, err := r.PackBuffer(w.out[:0])
	if err != nil {
		return actDrop
	}
	w.out = b
	s.m.query(qtype, r.Rcode)
	return actRespond
}

func servfailFor(pkt []byte) []byte {
	m := new(mdns.Msg)
	if m.Unpack(pkt) != nil {
		return nil
	}
	r := new(mdns.Msg)
	r.SetRcode(m, mdns.RcodeServerFailure)
	b, _ := r.Pack()
	return b
}

func (s *Server) forward(ctx context.Context, pkt []byte, network string) []byte {
	resp, err := s.fwd.exchange(ctx, pkt, network)
	if err != nil {
		s.m.forwards.WithLabelValues("error").Inc()
		s.log.Debug("forward failed", "err", err)
		var q query
		var key [maxKeyLen + 8]byte
		if parseQuery(pkt, s.zoneWire, &q, key[:]) {
			s.m.query(q.qtype, mdns.RcodeServerFailure)
		}
		return nil
	}
	s.m.forwards.WithLabelValues("ok").Inc()
	if len(resp) >= hdrLen {
		var q query
		var key [maxKeyLen + 8]byte
		if parseQuery(pkt, s.zoneWire, &q, key[:]) {
			s.m.query(q.qtype, int(resp[3]&0xF))
		}
	}
	return resp
}

func (s *Server) serveTCP(ctx context.Context, l *net.TCPListener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.tcpSem <- struct{}{}:
		default:
			c.Close() // too many connections
			continue
		}
		go func() {
			defer func() { <-s.tcpSem }()
			s.serveConn(ctx, c)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	w := newWorker()
	from := netip.Addr{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		from = ta.AddrPort().Addr().Unmap()
	}
	buf := make([]byte, 65535)
	var lb [2]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		var resp []byte
		switch s.handle(w, buf[:n], from, true) {
		case actRespond:
			resp = w.out
		case actForward:
			pkt := append([]byte(nil), buf[:n]...)
			if len(w.out) > 0 && w.out[2]&0x80 == 0 {
				pkt = append(pkt[:0], w.out...)
			}
			resp = s.forward(ctx, pkt, "tcp")
			if resp == nil {
				resp = servfailFor(pkt)
			}
		default:
			return
		}
		if resp == nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		out := make([]byte, 2, 2+len(resp))
		binary.BigEndian.PutUint16(out, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}
