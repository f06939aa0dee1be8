package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/prometheus/client_golang/prometheus"
)

// eventually retries cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("WEFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("t", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// gossipNode starts a gossip-only Mesh on 127.0.0.1 and a free port.
func gossipNode(t *testing.T, name, token string, join []string, mut func(*Config)) *Mesh {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = name
	cfg.Site = "s-" + name
	cfg.GossipBind = "127.0.0.1:0"
	cfg.Gossip = "local"
	cfg.WireGuard = false
	cfg.Token = token
	cfg.Join = join
	cfg.RejoinInterval = 200 * time.Millisecond
	cfg.Logger = testLogger(t)
	if mut != nil {
		mut(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-m.Started():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return m
}

func aliveNames(m *Mesh) map[string]bool {
	out := map[string]bool{}
	for _, mem := range m.Members() {
		if mem.Status == "alive" {
			out[mem.Name] = true
		}
	}
	return out
}

func TestGossipMembershipAndTags(t *testing.T) {
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a := gossipNode(t, "a", tok, nil, func(c *Config) {
		c.Role = "master"
		c.Tags = map[string]string{"res": "c=2"}
		c.Registerer = reg
	})
	sub, cancel := a.Subscribe()
	defer cancel()
	b := gossipNode(t, "b", tok, []string{a.GossipAddr()}, nil)
	c := gossipNode(t, "c", tok, []string{b.GossipAddr()}, nil)
	for _, m := range []*Mesh{a, b, c} {
		eventually(t, 5*time.Second, "all three alive", func() error {
			if n := len(aliveNames(m)); n != 3 {
				return fmt.Errorf("%d alive", n)
			}
			return nil
		})
	}
	select {
	case <-sub:
	case <-time.After(time.Second):
		t.Fatal("no notification after joins")
	}
	if err := b.SetTags(map[string]string{"res": "c=4;m=100"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "c sees b's new tags", func() error {
		for _, mem := range c.Members() {
			if mem.Name == "b" {
				if mem.Tags["res"] != "c=4;m=100" || mem.Site != "s-b" || mem.Role != "agent" {
					return fmt.Errorf("b = %+v", mem)
				}
				return nil
			}
		}
		return fmt.Errorf("b missing")
	})
	self := a.Self()
	if self.Role != "master" || self.Tags["res"] != "c=2" || self.Site != "s-a" || self.OverlayIP != "" {
		t.Errorf("Self() = %+v", self)
	}
	if err := a.SetTags(map[string]string{tagBlock: "x"}); err == nil {
		t.Error("SetTags accepted a reserved key")
	}
	big := map[string]string{"x": string(make([]byte, 600))}
	if err := a.SetTags(big); err == nil {
		t.Error("SetTags accepted 600 bytes of tags")
	}

	// Status over HTTP.
	rec := httptest.NewRecorder()
	a.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/mesh/status", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "a" || st.Alive != 3 || len(st.Peers) != 2 || !st.Encrypted {
		t.Errorf("status = %+v", st)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "weft_mesh_members" {
			for _, m := range mf.GetMetric() {
				if m.GetGauge().GetValue() == 3 && m.GetLabel()[0].GetValue() == "alive" {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("weft_mesh_members{status=alive} 3 not gathered")
	}
}

func TestGossipWrongTokenRefused(t *testing.T) {
	tok1, _ := GenerateToken()
	tok2, _ := GenerateToken()
	a := gossipNode(t, "a", tok1, nil, nil)
	bad := gossipNode(t, "bad", tok2, []string{a.GossipAddr()}, nil)
	none := gossipNode(t, "none", "", []string{a.GossipAddr()}, nil)
	good := gossipNode(t, "good", tok1, []string{a.GossipAddr()}, nil)
	eventually(t, 5*time.Second, "good joins", func() error {
		if !aliveNames(a)["good"] {
			return fmt.Errorf("members %v", aliveNames(a))
		}
		return nil
	})
	// Give the refused ones a few rejoin rounds.
	time.Sleep(time.Second)
	for _, m := range []*Mesh{a, good} {
		if names := aliveNames(m); names["bad"] || names["none"] || len(names) != 2 {
			t.Errorf("%s sees %v", m.cfg.NodeName, names)
		}
	}
	for _, m := range []*Mesh{bad, none} {
		if len(m.Members()) != 1 {
			t.Errorf("%s sees %d members", m.cfg.NodeName, len(m.Members()))
		}
		m.mu.Lock()
		err := m.lastJoinErr
		m.mu.Unlock()
		if err == nil {
			t.Errorf("%s: no join error recorded", m.cfg.NodeName)
		}
	}
}

func TestGossipRejoinAfterRestart(t *testing.T) {
	tok, _ := GenerateToken()
	dir := t.TempDir()
	a := gossipNode(t, "a", tok, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := DefaultConfig()
	cfg.NodeName, cfg.GossipBind, cfg.Gossip, cfg.WireGuard, cfg.Token = "b", "127.0.0.1:0", "local", false, tok
	cfg.DataDir = dir
	cfg.Join = []string{a.GossipAddr()}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	eventually(t, 5*time.Second, "b joins", func() error {
		if !aliveNames(a)["b"] {
			return fmt.Errorf("no b")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b left", func() error {
		for _, mem := range a.Members() {
			if mem.Name == "b" && mem.Status != "left" {
				return fmt.Errorf("b is %s", mem.Status)
			}
		}
		return nil
	})
	// Restart with no seeds: the snapshot alone brings it back.
	cfg.Join = nil
	b2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go b2.Run(ctx2)
	eventually(t, 10*time.Second, "b rejoins from its snapshot", func() error {
		if !aliveNames(a)["b"] {
			return fmt.Errorf("a sees %v", aliveNames(a))
		}
		return nil
	})
}

func TestTokenAndConfigErrors(t *testing.T) {
	if _, err := gossipKey("nope"); err == nil {
		t.Error("bad token accepted")
	}
	tok, _ := GenerateToken()
	k1, _ := gossipKey(tok)
	k2, _ := gossipKey(tok)
	if len(k1) != 32 || string(k1) != string(k2) {
		t.Error("key derivation not deterministic 32 bytes")
	}
	for name, mut := range map[string]func(*Config){
		"no name":       func(c *Config) { c.NodeName = "" },
		"bad role":      func(c *Config) { c.Role = "boss" },
		"bad token":     func(c *Config) { c.Token = "x" },
		"reserved tag":  func(c *Config) { c.Tags = map[string]string{"k": "v"} },
		"bad cidr":      func(c *Config) { c.OverlayCIDR = "10.47.0.0" },
		"block too big": func(c *Config) { c.BlockBits = 8 },
		"static block":  func(c *Config) { c.StaticBlock = "10.48.0.0/24" },
		"long ifname":   func(c *Config) { c.Interface = "weft0123456789ab" },
	} {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		mut(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestUntilProbePhase(t *testing.T) {
	at := time.Unix(1000, 0)
	for _, c := range []struct {
		now  time.Duration // after at
		want time.Duration
	}{
		{10 * time.Millisecond, 490 * time.Millisecond},
		{500 * time.Millisecond, time.Second},
		{600 * time.Millisecond, 900 * time.Millisecond},
		{3*time.Second + 200*time.Millisecond, 300 * time.Millisecond},
	} {
		got := untilProbePhase(at, at.Add(c.now), time.Second)
		if got != c.want {
			t.Errorf("%v after the gossip start: %v to the next tick, want %v", c.now, got, c.want)
		}
		if tick := (c.now + got) % time.Second; tick != 500*time.Millisecond {
			t.Errorf("%v after the gossip start: ticks at %v into memberlist's period, want 500ms", c.now, tick)
		}
	}
}

func TestAbsentSeeds(t *testing.T) {
	member := func(addr string, port uint16, status serf.MemberStatus, eps string) serf.Member {
		return serf.Member{Addr: net.ParseIP(addr), Port: port, Status: status, Tags: map[string]string{tagEndpoints: eps}}
	}
	members := []serf.Member{
		member("10.47.1.1", 7946, serf.StatusAlive, "203.0.113.9:51820,172.30.1.1:51820"), // seen at its NAT and on its LAN
		member("10.47.2.1", 7946, serf.StatusFailed, "172.30.2.1:51820"),                  // failed: its seed address is dialled
		member("127.0.0.1", 8001, serf.StatusAlive, ""),                                   // gossip on the underlay (no overlay)
		member("10.47.3.1", 7946, serf.StatusLeft, "172.30.3.1:51820"),
	}
	for _, c := range []struct {
		name        string
		seeds, want []string
	}{
		{"all alive", []string{"172.30.1.1:7946", "203.0.113.9:7946"}, nil},
		{"failed and left members are dialled", []string{"172.30.1.1:7946", "172.30.2.1:7946", "172.30.3.1:7946"}, []string{"172.30.2.1:7946", "172.30.3.1:7946"}},
		{"unknown", []string{"198.51.100.1:7946"}, []string{"198.51.100.1:7946"}},
		{"gossip address, port and all", []string{"127.0.0.1:8001", "127.0.0.1:8002"}, []string{"127.0.0.1:8002"}},
		{"names are dialled", []string{"seed.example:7946"}, []string{"seed.example:7946"}},
	} {
		if got := absentSeeds(c.seeds, members); !slices.Equal(got, c.want) {
			t.Errorf("%s: absentSeeds(%v) = %v, want %v", c.name, c.seeds, got, c.want)
		}
	}
}

// A node that starts (or restarts, with no serf snapshot) does not replay
// the user events the cluster buffered before it joined (reports of where
// peers saw it, perhaps on another network), and gets the ones after.
func TestFirstJoinIgnoresOldUserEvents(t *testing.T) {
	token, _ := GenerateToken()
	a := gossipNode(t, "a", token, nil, nil)
	if err := a.currentSerf().UserEvent("before", []byte("c 192.0.2.1:51820 a"), false); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeName, cfg.GossipBind, cfg.Gossip, cfg.WireGuard, cfg.Token = "c", "127.0.0.1:0", "local", false, token
	cfg.Join = []string{a.GossipAddr()}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	evCh := make(chan serf.Event, 64)
	s, err := c.createSerf(evCh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	c.mu.Lock()
	c.serf = s
	c.mu.Unlock()
	c.joinSeeds()
	if err := c.lastJoinErr; err != nil {
		t.Fatalf("join: %v", err)
	}
	if err := a.currentSerf().UserEvent("after", []byte("c 192.0.2.2:51820 a"), false); err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.After(5 * time.Second)
	for !slices.Contains(got, "after") {
		select {
		case ev := <-evCh:
			if u, ok := ev.(serf.UserEvent); ok {
				got = append(got, u.Name)
			}
		case <-deadline:
			t.Fatalf("user events at the new node: %v, want the one after its join", got)
		}
	}
	if slices.Contains(got, "before") {
		t.Errorf("user events at the new node: %v; the one from before its join was replayed", got)
	}
}
