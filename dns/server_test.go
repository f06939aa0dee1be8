package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

// fakeSource is an in-process master: Watch blocks until the state index
// rises above after, like GET /v1/state?index=N.
type fakeSource struct {
	mu      sync.Mutex
	st      *api.State
	err     error
	changed chan struct{}
	calls   int
	gen     uint64 // bumped by set: a waiting Watch returns even at the same index
}

func newFakeSource(st *api.State) *fakeSource {
	return &fakeSource{st: st, changed: make(chan struct{})}
}

func (f *fakeSource) Watch(ctx context.Context, after uint64, wait time.Duration) (*api.State, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	f.mu.Lock()
	g0 := f.gen
	f.mu.Unlock()
	for {
		f.mu.Lock()
		f.calls++
		gen := f.gen
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return nil, err
		}
		st, ch := f.st, f.changed
		f.mu.Unlock()
		if st != nil && (st.Index > after || gen != g0) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		case <-deadline.C:
			if st == nil {
				return nil, errors.New("no state")
			}
			return st, nil
		}
	}
}

func (f *fakeSource) set(st *api.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.gen++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeSource) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	close(f.changed)
	f.changed = make(chan struct{})
}

// startServer runs a server on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Forward = false
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
	})
	return s
}

func ask(t *testing.T, s *Server, net, name string, qtype uint16, edns uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &mdns.Client{Net: net, Timeout: 2 * time.Second, UDPSize: edns}
	r, _, err := c.Exchange(m, s.Addrs()[0])
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, mdns.TypeToString[qtype], net, err)
	}
	return r
}

func answers(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			out = append(out, v.A.String())
		case *mdns.SRV:
			out = append(out, v.Target+":"+strconv.Itoa(int(v.Port)))
		case *mdns.PTR:
			out = append(out, v.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	sort.Strings(out)
	return out
}

func eq(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestServeAnswers(t *testing.T) {
	st := goldenStates()
	s := startServer(t, nil)
	s.SetState(st["01-host-app"])
	for _, proto := range []string{"udp", "tcp"} {
		r := ask(t, s, proto, "biserver.marathon.pcm.", mdns.TypeA, 0)
		if r.Rcode != mdns.RcodeSuccess || !r.Authoritative {
			t.Fatalf("%s: rcode %s aa=%v", proto, mdns.RcodeToString[r.Rcode], r.Authoritative)
		}
		if got := answers(r); !eq(got, []string{"10.47.1.1", "10.47.3.1"}) {
			t.Errorf("%s: A answers %v", proto, got)
		}
		if r.Answer[0].Header().Ttl != 5 {
			t.Errorf("TTL %d, want 5", r.Answer[0].Header().Ttl)
		}
	}
	r := ask(t, s, "udp", "_biserver._tcp.marathon.pcm.", mdns.TypeSRV, 0)
	want := []string{
		"biserver-" + TaskHash("biserver.a1") + "-s1.marathon.pcm.:31005",
		"biserver-" + TaskHash("biserver.b2") + "-s3.marathon.pcm.:31009",
	}
	if got := answers(r); !eq(got, want) {
		t.Errorf("SRV answers %v, want %v", got, want)
	}
	if len(r.Extra) != 2 {
		t.Errorf("SRV additional section has %d records, want the 2 targets' A records", len(r.Extra))
	}
	// Case-insensitive, and the question comes back as asked.
	r = ask(t, s, "udp", "BiServer.MARATHON.Pcm.", mdns.TypeA, 0)
	if len(r.Answer) != 2 || r.Question[0].Name != "BiServer.MARATHON.Pcm." {
		t.Errorf("mixed case: %d answers, question %q", len(r.Answer), r.Question[0].Name)
	}
	// PTR for an overlay address.
	r = ask(t, s, "udp", "1.3.47.10.in-addr.arpa.", mdns.TypePTR, 0)
	if got := answers(r); !eq(got, []string{"cloud1.node.pcm."}) {
		t.Errorf("PTR %v", got)
	}
	// SOA and NS at the apex.
	r = ask(t, s, "udp", "pcm.", mdns.TypeSOA, 0)
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.SOA).Ns != "ns1.pcm." {
		t.Errorf("SOA %v", r.Answer)
	}
	r = ask(t, s, "udp", "pcm.", mdns.TypeNS, 0)
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.NS).Ns != "ns1.pcm." {
		t.Errorf("NS %v", r.Answer)
	}
}

func TestNegativeAnswers(t *testing.T) {
	s := startServer(t, nil)
	s.SetState(goldenStates()["01-host-app"])
	cases := []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"nope.marathon.pcm.", mdns.TypeA, mdns.RcodeNameError},
		{"_nope._tcp.marathon.pcm.", mdns.TypeSRV, mdns.RcodeNameError},
		{"biserver.marathon.pcm.", mdns.TypeAAAA, mdns.RcodeSuccess}, // NODATA
		{"biserver.marathon.pcm.", mdns.TypeTXT, mdns.RcodeSuccess},  // NODATA
		{"marathon.slave.pcm.", mdns.TypeA, mdns.RcodeSuccess},       // empty non-terminal
		{"_tcp.marathon.pcm.", mdns.TypeSRV, mdns.RcodeSuccess},      // empty non-terminal
	}
	for _, c := range cases {
		r := ask(t, s, "udp", c.name, c.qtype, 0)
		if r.Rcode != c.rcode || len(r.Answer) != 0 {
			t.Errorf("%s %s: rcode %s with %d answers, want %s", c.name, mdns.TypeToString[c.qtype],
				mdns.RcodeToString[r.Rcode], len(r.Answer), mdns.RcodeToString[c.rcode])
		}
		if len(r.Ns) != 1 {
			t.Errorf("%s: authority %v, want the SOA", c.name, r.Ns)
			continue
		}
		soa, ok := r.Ns[0].(*mdns.SOA)
		if !ok || soa.Hdr.Name != "pcm." || soa.Minttl != 5 {
			t.Errorf("%s: authority %v", c.name, r.Ns[0])
		}
		if !r.Authoritative {
			t.Errorf("%s: AA not set", c.name)
		}
	}
}

func bigState(n int) *api.State {
	st := &api.State{Index: 1, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(hostApp("/big", api.PortDefinition{Port: 10000}))}}
	for i := 0; i < n; i++ {
		tk := task("big."+strconv.Itoa(i), "/big", agentA, 31000+i)
		tk.IPAddresses = []api.IPAddress{{IPAddress: fmt.Sprintf("10.47.1.%d", i+2)}}
		st.Apps[0].Networks = []api.Network{{Mode: "container"}}
		st.Tasks = append(st.Tasks, &tk)
	}
	return st
}

func TestTruncation(t *testing.T) {
	s := startServer(t, nil)
	s.SetState(bigState(60))
	// Plain UDP: 512 bytes, TC set, no OPT.
	m := new(mdns.Msg)
	m.SetQuestion("big.marathon.pcm.", mdns.TypeA)
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 60 {
		t.Errorf("no EDNS0: tc=%v with %d answers, want TC and a partial answer", r.Truncated, len(r.Answer))
	}
	r.Compress = true
	if packed, _ := r.Pack(); len(packed) > 512 {
		t.Errorf("no EDNS0: %d bytes over UDP", len(packed))
	}
	// EDNS0 4096: everything, OPT echoed.
	r = ask(t, s, "udp", "big.marathon.pcm.", mdns.TypeA, 4096)
	if r.Truncated || len(r.Answer) != 60 || r.IsEdns0() == nil {
		t.Errorf("EDNS0 4096: tc=%v answers=%d opt=%v", r.Truncated, len(r.Answer), r.IsEdns0() != nil)
	}
	// EDNS0 with a small buffer still truncates, with OPT.
	r = ask(t, s, "udp", "_big._tcp.marathon.slave.pcm.", mdns.TypeSRV, 1232)
	if !r.Truncated || r.IsEdns0() == nil {
		t.Errorf("EDNS0 1232 SRV of 60: tc=%v opt=%v answers=%d", r.Truncated, r.IsEdns0() != nil, len(r.Answer))
	}
	// TCP fallback gets the whole answer.
	r = ask(t, s, "tcp", "_big._tcp.marathon.slave.pcm.", mdns.TypeSRV, 0)
	if r.Truncated || len(r.Answer) != 60 || len(r.Extra) != 60 {
		t.Errorf("TCP: tc=%v answers=%d extra=%d", r.Truncated, len(r.Answer), len(r.Extra))
	}
}

// upstream is a fake resolver on 127.0.0.1 answering every A query with
// 192.0.2.1.
func upstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 1)})
		_ = w.WriteMsg(m)
	})
	us := &mdns.Server{PacketConn: pc, Handler: h}
	ts := &mdns.Server{Listener: ln, Handler: h}
	go func() { _ = us.ActivateAndServe() }()
	go func() { _ = ts.ActivateAndServe() }()
	t.Cleanup(func() { _ = us.Shutdown(); _ = ts.Shutdown() })
	return addr
}

func TestForwarding(t *testing.T) {
	up := upstream(t)
	s := startServer(t, func(c *Config) {
		c.Forward = true
		c.Upstreams = []string{"127.0.0.1:1", up} // a dead one and a live one, raced
	})
	s.SetState(goldenStates()["01-host-app"])
	for _, proto := range []string{"udp", "tcp"} {
		r := ask(t, s, proto, "example.com.", mdns.TypeA, 0)
		if r.Rcode != mdns.RcodeSuccess || !eq(answers(r), []string{"192.0.2.1"}) {
			t.Errorf("%s: forwarded answer %s %v", proto, mdns.RcodeToString[r.Rcode], answers(r))
		}
		if !r.RecursionAvailable {
			t.Errorf("%s: RA not set with forwarding on", proto)
		}
	}
	// In-zone names are never forwarded.
	if r := ask(t, s, "udp", "nope.marathon.pcm.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError {
		t.Errorf("in-zone unknown name: %s", mdns.RcodeToString[r.Rcode])
	}
}

func TestRefusedWithoutForwarding(t *testing.T) {
	s := startServer(t, nil)
	s.SetState(goldenStates()["01-host-app"])
	r := ask(t, s, "udp", "example.com.", mdns.TypeA, 0)
	if r.Rcode != mdns.RcodeRefused {
		t.Errorf("rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
}

func TestClientsFilter(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Clients = func(a netip.Addr) bool { return !a.IsLoopback() }
	})
	s.SetState(goldenStates()["01-host-app"])
	m := new(mdns.Msg)
	m.SetQuestion("example.com.", mdns.TypeA)
	c := &mdns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	if r, _, err := c.Exchange(m, s.Addrs()[0]); err == nil {
		t.Fatalf("a client outside Clients was answered: %v", r)
	}
}

func TestNoForwardingLoop(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Listen = []string{"127.0.0.1:0", "0.0.0.0:0"} })
	own := s.Addrs()[0]
	_, wport, _ := net.SplitHostPort(s.Addrs()[1])
	got := s.filterUpstreams([]string{own, "127.0.0.1:" + wport, "127.0.0.2:" + wport, "192.0.2.53", "8.8.8.8:53"})
	if !eq(got, []string{"192.0.2.53:53", "8.8.8.8:53"}) {
		t.Errorf("upstreams after dropping itself: %v", got)
	}
	// Configured with only itself, it has no upstream: REFUSED, not a loop.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := pc.LocalAddr().String()
	pc.Close()
	s2 := startServer(t, func(c *Config) { c.Forward = true; c.Listen = []string{self}; c.Upstreams = []string{self} })
	if len(s2.fwd.upstreams) != 0 {
		t.Fatalf("own address kept as upstream: %v", s2.fwd.upstreams)
	}
	s2.SetState(&api.State{})
	if r := ask(t, s2, "udp", "example.com.", mdns.TypeA, 0); r.Rcode != mdns.RcodeRefused {
		t.Errorf("rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, within)
	return 0
}

func TestPushAndMasterDown(t *testing.T) {
	st := goldenStates()["01-host-app"]
	src := newFakeSource(st)
	s := startServer(t, func(c *Config) { c.Source = src })
	select {
	case <-s.Ready():
	case <-time.After(2 * time.Second):
		t.Fatal("not ready after the first sync")
	}
	if got := answers(ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0)); len(got) != 2 {
		t.Fatalf("before change: %v", got)
	}
	// A task goes away: the answer changes within a second (push).
	var worst time.Duration
	for i := 0; i < 5; i++ {
		next := *st
		next.Index = st.Index + uint64(i) + 1
		next.Tasks = st.Tasks[:1+(i+1)%2]
		want := len(next.Tasks)
		src.set(&next)
		d := waitFor(t, time.Second, "answer after a task change", func() bool {
			return len(ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0).Answer) == want
		})
		worst = max(worst, d)
	}
	t.Logf("staleness (task change → changed answer), worst of 5: %v", worst)
	// The master goes down: the last table keeps being served.
	src.fail(errors.New("connection refused"))
	time.Sleep(300 * time.Millisecond) // several failed fetches
	r := ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("master down: %s with %d answers, want the last good table", mdns.RcodeToString[r.Rcode], len(r.Answer))
	}
	src.mu.Lock()
	calls := src.calls
	src.mu.Unlock()
	if calls > 100 {
		t.Errorf("%d fetches: no backoff while the master is down", calls)
	}
}

func TestNothingServedBeforeSync(t *testing.T) {
	src := newFakeSource(nil)
	s := startServer(t, func(c *Config) { c.Source = src; c.ResyncEvery = 50 * time.Millisecond })
	if r := ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("before sync: %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	s2 := startServer(t, func(c *Config) { c.Source = newFakeSource(nil); c.ServeBeforeSync = true })
	if r := ask(t, s2, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError {
		t.Errorf("ServeBeforeSync: %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
	src.set(goldenStates()["01-host-app"])
	<-s.Ready()
	if r := ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0); len(r.Answer) != 2 {
		t.Errorf("after sync: %d answers", len(r.Answer))
	}
}

func TestSiteOrder(t *testing.T) {
	st := goldenStates()["07-sites"] // cache: two tasks at site a, one at b
	for _, c := range []struct {
		site  string
		first []string
	}{{"b", []string{"10.47.3.1"}}, {"a", []string{"10.47.1.1", "10.47.2.1"}}} {
		s := startServer(t, func(cfg *Config) { cfg.Site = c.site })
		s.SetState(st)
		orders := map[string]bool{}
		for i := 0; i < 60; i++ {
			r := ask(t, s, "udp", "cache.marathon.pcm.", mdns.TypeA, 0)
			var got []string
			for _, rr := range r.Answer {
				got = append(got, rr.(*mdns.A).A.String())
			}
			if len(got) != 3 {
				t.Fatalf("%d answers", len(got))
			}
			head := append([]string(nil), got[:len(c.first)]...)
			sort.Strings(head)
			if !eq(head, c.first) {
				t.Fatalf("site %s: answer %v does not start with %v", c.site, got, c.first)
			}
			orders[fmt.Sprint(got)] = true
		}
		if c.site == "a" && len(orders) < 2 {
			t.Errorf("site a: always the same order %v; want the group shuffled", orders)
		}
	}
}

func TestMalformedQueries(t *testing.T) {
	s := startServer(t, nil)
	s.SetState(goldenStates()["01-host-app"])
	conn, err := net.Dial("udp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A header claiming no question: FORMERR.
	_, _ = conn.Write([]byte{0xAB, 0xCD, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil || n < 12 || buf[0] != 0xAB || buf[3]&0xF != mdns.RcodeFormatError {
		t.Errorf("no-question query: %v % x", err, buf[:n])
	}
	// A compression loop in the question, garbage, a truncated header: no
	// crash, and the server still answers.
	for _, p := range [][]byte{
		{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1},
		{1, 2, 3},
		make([]byte, 4000),
	} {
		_, _ = conn.Write(p)
	}
	if r := ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0); len(r.Answer) != 2 {
		t.Errorf("after bad input: %d answers", len(r.Answer))
	}
	// Other opcodes: NOTIMP. EDNS version 1: BADVERS.
	m := new(mdns.Msg)
	m.SetQuestion("biserver.marathon.pcm.", mdns.TypeA)
	m.Opcode = mdns.OpcodeStatus
	c := &mdns.Client{Timeout: 2 * time.Second}
	if r, _, err := c.Exchange(m, s.Addrs()[0]); err != nil || r.Rcode != mdns.RcodeNotImplemented {
		t.Errorf("STATUS opcode: %v %v", err, r)
	}
	m = new(mdns.Msg)
	m.SetQuestion("biserver.marathon.pcm.", mdns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	if r, _, err := c.Exchange(m, s.Addrs()[0]); err != nil || r.Rcode != mdns.RcodeBadVers {
		t.Errorf("EDNS version 1: %v %v", err, r)
	}
}

func TestTTLConfigurable(t *testing.T) {
	s := startServer(t, func(c *Config) { c.TTL = 30 })
	s.SetState(goldenStates()["01-host-app"])
	r := ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0)
	if len(r.Answer) == 0 || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("answers %v, want TTL 30", r.Answer)
	}
	r = ask(t, s, "udp", "nope.marathon.pcm.", mdns.TypeA, 0)
	if len(r.Ns) != 1 || r.Ns[0].(*mdns.SOA).Minttl != 30 {
		t.Errorf("negative answer SOA %v, want minimum 30", r.Ns)
	}
}

// The Go resolver (what getaddrinfo-free Go programs use) resolves cluster
// names through the server: A+AAAA in parallel, SRV, and NXDOMAIN.
func TestGoResolver(t *testing.T) {
	s := startServer(t, nil)
	s.SetState(goldenStates()["01-host-app"])
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addrs()[0])
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "biserver.marathon.pcm")
	sort.Strings(addrs)
	if err != nil || !eq(addrs, []string{"10.47.1.1", "10.47.3.1"}) {
		t.Errorf("LookupHost: %v %v", addrs, err)
	}
	_, srvs, err := r.LookupSRV(ctx, "biserver", "tcp", "marathon.pcm")
	if err != nil || len(srvs) != 2 {
		t.Errorf("LookupSRV: %v %v", srvs, err)
	}
	_, err = r.LookupHost(ctx, "nope.marathon.pcm")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("unknown name: %v, want not found", err)
	}
}

// The master answers at the same index when only membership changed (a
// node's address, a node joining): the table follows.
func TestMembershipChangeSameIndex(t *testing.T) {
	st := goldenStates()["01-host-app"]
	src := newFakeSource(st)
	s := startServer(t, func(c *Config) { c.Source = src })
	<-s.Ready()
	next := *st
	next.Nodes = append(append([]api.Node(nil), st.Nodes...), node("new-S4", "edge9", api.RoleAgent, "b", "192.168.9.9", "10.47.9.1"))
	src.set(&next) // same index: the waiting Watch returns it, as the master does
	waitFor(t, 2*time.Second, "new node resolvable", func() bool {
		return len(ask(t, s, "udp", "edge9.node.pcm.", mdns.TypeA, 0).Answer) == 1
	})
}

func TestListenErrorsSayWhatToDo(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"192.0.2.254:0"} // TEST-NET-1: on no interface here
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "start the overlay first") {
		t.Errorf("error %v", err)
	}
	cfg.Listen = []string{"no-port"}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("error %v", err)
	}
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Domain = "bad..domain"
	if _, err := New(cfg); err == nil {
		t.Error("no error for an invalid domain")
	}
}

func TestTCPPipelining(t *testing.T) {
	s := startServer(t, nil)
	s.SetState(goldenStates()["01-host-app"])
	c, err := net.Dial("tcp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &mdns.Conn{Conn: c}
	names := []string{"biserver.marathon.pcm.", "nope.marathon.pcm.", "leader.pcm."}
	for i, n := range names {
		m := new(mdns.Msg)
		m.SetQuestion(n, mdns.TypeA)
		m.Id = uint16(100 + i)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	wantRcode := []int{mdns.RcodeSuccess, mdns.RcodeNameError, mdns.RcodeSuccess}
	for i := range names {
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != uint16(100+i) || r.Rcode != wantRcode[i] {
			t.Errorf("answer %d: id %d rcode %s", i, r.Id, mdns.RcodeToString[r.Rcode])
		}
	}
}

func TestForwardingAllUpstreamsDown(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Forward = true; c.Upstreams = []string{"127.0.0.1:1", "127.0.0.1:2"} })
	s.SetState(&api.State{})
	start := time.Now()
	r := ask(t, s, "udp", "example.com.", mdns.TypeA, 0)
	if r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("took %v; each upstream is bounded by 2 s and they are raced", d)
	}
}

func TestForwardingTimeout(t *testing.T) {
	hole, err := net.ListenPacket("udp", "127.0.0.1:0") // reads, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	s := startServer(t, func(c *Config) {
		c.Forward = true
		c.Upstreams = []string{hole.LocalAddr().String()}
		c.ForwardTimeout = 300 * time.Millisecond
	})
	s.SetState(&api.State{})
	start := time.Now()
	r := ask(t, s, "udp", "example.com.", mdns.TypeA, 0)
	d := time.Since(start)
	if r.Rcode != mdns.RcodeServerFailure || d < 250*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("rcode %s after %v, want SERVFAIL after the 300 ms upstream timeout", mdns.RcodeToString[r.Rcode], d)
	}
}

func TestStatus(t *testing.T) {
	s := startServer(t, nil)
	if st := s.Status(); st.Ready || !st.LastSync.IsZero() {
		t.Errorf("before any state: %+v", st)
	}
	s.SetState(goldenStates()["01-host-app"])
	if st := s.Status(); !st.Ready || st.Index != 10 || st.Records == 0 || st.LastSync.IsZero() {
		t.Errorf("after a state: %+v", st)
	}
}

// The UDP workers block in recvmmsg outside Go's poller: stopping must
// wake every one of them at once (not at the socket's 1 s receive
// timeout) and free the port; a host-less address serves both families.
func TestUDPWorkersStopAndBothFamilies(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = []string{":0"}
	cfg.Forward = false
	cfg.UDPWorkers = 3
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.SetState(benchState(3))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	_, port, _ := net.SplitHostPort(s.Addrs()[0])
	targets := []string{net.JoinHostPort("127.0.0.1", port)}
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		c.Close()
		targets = append(targets, net.JoinHostPort("::1", port))
	} else {
		t.Logf("no IPv6 loopback here (%v): IPv4 only", err)
	}
	for _, addr := range targets {
		m := new(mdns.Msg)
		m.SetQuestion("leader.pcm.", mdns.TypeA)
		c := &mdns.Client{Timeout: 2 * time.Second}
		r, _, err := c.Exchange(m, addr)
		if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("leader.pcm. A from %s: %v %v", addr, r, err)
		}
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Run took %v to stop: the blocked readers were not woken", el)
	}
	c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("the UDP port is still taken after Run returned: %v", err)
	}
	c.Close()
}
