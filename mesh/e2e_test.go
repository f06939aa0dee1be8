package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/mesh/meshtest"
)

// node is one `weft mesh node` process on a testbed host.
type node struct {
	t       *testing.T
	h       *meshtest.Host
	p       *meshtest.Process
	dataDir string
	args    []string
}

func startNode(t *testing.T, weft string, h *meshtest.Host, token string, join string, extra ...string) *node {
	t.Helper()
	return startNodeIn(t, filepath.Join(t.TempDir(), h.Name), weft, h, token, join, extra...)
}

// startNodeIn starts a node on a data directory that may hold state already.
func startNodeIn(t *testing.T, dataDir, weft string, h *meshtest.Host, token string, join string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, h: h, dataDir: dataDir}
	n.args = []string{weft, "mesh", "node",
		"--node-name", h.Name, "--site", h.Site.Name, "--data-dir", n.dataDir,
		"--gossip-addr", h.IP().String() + ":7946", "--agent-addr", "127.0.0.1:5051",
		"--token", token, "--log-level", "debug"}
	if join != "" {
		n.args = append(n.args, "--join", join)
	}
	n.args = append(n.args, extra...)
	n.p = h.Start(n.args...)
	return n
}

func (n *node) restart() {
	n.p = n.h.Start(n.args...)
}

func (n *node) status(ctx context.Context) (mesh.Status, error) {
	var st mesh.Status
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:5051/v1/mesh/status", nil)
	resp, err := n.h.HTTPClient().Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("%s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (n *node) peer(ctx context.Context, name string) (mesh.PeerStatus, error) {
	st, err := n.status(ctx)
	if err != nil {
		return mesh.PeerStatus{}, err
	}
	for _, p := range st.Peers {
		if p.Name == name {
			return p, nil
		}
	}
	return mesh.PeerStatus{}, fmt.Errorf("%s does not know %s", n.h.Name, name)
}

// overlayIPs waits until every node reports its own overlay address.
func overlayIPs(ctx context.Context, t *testing.T, nodes []*node) map[string]string {
	t.Helper()
	ips := map[string]string{}
	for _, n := range nodes {
		err := meshtest.Eventually(ctx, 20*time.Second, func() error {
			st, err := n.status(ctx)
			if err != nil {
				return err
			}
			if st.OverlayIP == "" {
				return fmt.Errorf("%s has no overlay address yet", n.h.Name)
			}
			ips[n.h.Name] = st.OverlayIP
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v\n%s", n.h.Name, err, n.p.Output())
		}
	}
	return ips
}

// allPairs pings every node's overlay address from every other node until
// all answer; it returns the pairs still failing at the deadline.
func allPairs(ctx context.Context, nodes []*node, ips map[string]string, within time.Duration) []string {
	failing, _ := allPairsTimed(ctx, nodes, ips, within)
	return failing
}

// allPairsTimed also returns the slowest pairs and when they first answered.
func allPairsTimed(ctx context.Context, nodes []*node, ips map[string]string, within time.Duration) ([]string, string) {
	var mu sync.Mutex
	var failing []string
	type pt struct {
		pair string
		d    time.Duration
	}
	var times []pt
	start := time.Now()
	var wg sync.WaitGroup
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := meshtest.Eventually(ctx, within, func() error { return a.h.Ping(ctx, ips[b.h.Name]) })
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failing = append(failing, fmt.Sprintf("%s->%s(%s)", a.h.Name, b.h.Name, ips[b.h.Name]))
					return
				}
				times = append(times, pt{a.h.Name + "->" + b.h.Name, time.Since(start)})
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(times, func(x, y pt) int { return int(y.d - x.d) })
	var slow []string
	for _, x := range times[:min(5, len(times))] {
		slow = append(slow, fmt.Sprintf("%s %.1fs", x.pair, x.d.Seconds()))
	}
	return failing, strings.Join(slow, ", ")
}

func dumpStatus(ctx context.Context, t *testing.T, nodes []*node) {
	for _, n := range nodes {
		st, err := n.status(ctx)
		if err != nil {
			t.Logf("%s: %v", n.h.Name, err)
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s nat=%v eps=%v alive=%d\n", st.Node, st.OverlayIP, st.NAT, st.Endpoints, st.Alive)
		for _, p := range st.Peers {
			fmt.Fprintf(&b, "   %s %s %s via=%s ep=%s hs=%.1f rx=%d tx=%d\n", p.Name, p.Status, p.Path, p.Via, p.Endpoint, p.HandshakeAge, p.RxBytes, p.TxBytes)
		}
		t.Log(b.String())
	}
}

func grep(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > 80 {
		out = out[len(out)-80:]
	}
	return strings.Join(out, "\n")
}

func aliveCount(ctx context.Context, n *node) int {
	st, err := n.status(ctx)
	if err != nil {
		return -1
	}
	return st.Alive
}

// TestE2EMesh runs the real weft binary on a testbed of three public sites
// and two NAT sites and checks, in order: full mesh formation, the NATed
// pair, a refused wrong token, a link cut (relay, then direct again), a
// partition healed, and a restart that keeps its key and block.
func TestE2EMesh(t *testing.T) {
	if why := meshtest.Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	weft := testbin.Weft(t)
	tb := meshtest.New(t)
	tb.AddSite("aws")
	tb.AddSite("london", meshtest.Delay(15*time.Millisecond))
	tb.AddSite("paris", meshtest.Delay(40*time.Millisecond))
	ctx := context.Background()
	token, err := mesh.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { t.Log(tb.DelayNote()) }()
	hosts := []*meshtest.Host{
		tb.AddHost("aws", "a1"), tb.AddHost("aws", "a2"),
		tb.AddHost("london", "l1"), tb.AddHost("london", "l2"),
		tb.AddHost("paris", "p1"),
		tb.AddNATHost("home", "laptop"),
		tb.AddNATHost("office", "o1"),
	}
	seed := hosts[0].IP().String()
	var nodes []*node
	byName := map[string]*node{}
	for i, h := range hosts {
		join := seed
		if i == 0 {
			join = ""
		}
		n := startNode(t, weft, h, token, join, "--reap-timeout", "12s")
		nodes = append(nodes, n)
		byName[h.Name] = n
	}
	lastStart := time.Now()
	ips := overlayIPs(ctx, t, nodes)

	t.Run("formation", func(t *testing.T) {
		failing, slow := allPairsTimed(ctx, nodes, ips, 30*time.Second)
		t.Logf("slowest pairs: %s", slow)
		if len(failing) > 0 {
			dumpStatus(ctx, t, nodes)
			t.Fatalf("unreachable over the overlay: %v", failing)
		}
		t.Logf("all %d pairs reachable over the overlay %.1fs after the last node started", len(nodes)*(len(nodes)-1), time.Since(lastStart).Seconds())
		for _, n := range nodes {
			if c := aliveCount(ctx, n); c != len(nodes) {
				t.Errorf("%s sees %d alive members, want %d", n.h.Name, c, len(nodes))
			}
		}
		st, _ := byName["a1"].status(ctx)
		if st.DataPlane != "userspace" && st.DataPlane != "kernel" || st.MTU != 1420 {
			t.Errorf("a1 status: data plane %q, MTU %d", st.DataPlane, st.MTU)
		}
	})

	t.Run("nat-pair", func(t *testing.T) {
		laptop, o1 := byName["laptop"], byName["o1"]
		if err := meshtest.Eventually(ctx, 20*time.Second, func() error { return laptop.h.Ping(ctx, ips["o1"]) }); err != nil {
			t.Fatalf("laptop -> o1: %v", err)
		}
		// Each sits behind its own MASQUERADE NAT, which maps the
		// WireGuard port the same way toward every peer ("easy"): the
		// coordinated hole punch (punch.go) must give them a direct path,
		// both ways.
		var p, q mesh.PeerStatus
		err := meshtest.Eventually(ctx, 15*time.Second, func() error {
			var err error
			if p, err = laptop.peer(ctx, "o1"); err != nil {
				return err
			}
			if q, err = o1.peer(ctx, "laptop"); err != nil {
				return err
			}
			if p.Path != "direct" || q.Path != "direct" {
				return fmt.Errorf("laptop -> o1 %s %s, o1 -> laptop %s %s", p.Path, p.Via, q.Path, q.Via)
			}
			return laptop.h.Ping(ctx, ips["o1"])
		})
		t.Logf("laptop -> o1 path: %s %s endpoint %s; o1 -> laptop: %s %s endpoint %s", p.Path, p.Via, p.Endpoint, q.Path, q.Via, q.Endpoint)
		if err != nil {
			t.Logf("laptop's log:\n%s", grep(laptop.p.Output(), "o1", "punch", "reflexive"))
			t.Errorf("the NATed pair has no direct path: %v", err)
		}
		if pub := tb.Host("o1").Site.Public.String(); !strings.HasPrefix(p.Endpoint, pub+":") {
			t.Errorf("laptop reaches o1 at %s, not at its NAT's public address %s", p.Endpoint, pub)
		}
		st, _ := o1.status(ctx)
		if !st.NAT || st.NATKind != mesh.NATEasy {
			t.Errorf("o1 does not know it is behind an easy NAT: %s %+v", st.NATKind, st.Endpoints)
		}
	})

	t.Run("wrong-token", func(t *testing.T) {
		bad := tb.AddHost("aws", "bad")
		other, _ := mesh.GenerateToken()
		bn := startNode(t, weft, bad, other, seed)
		err := meshtest.Eventually(ctx, 15*time.Second, func() error {
			if !strings.Contains(bn.p.Output(), "check the token") {
				return fmt.Errorf("no token error in the log yet")
			}
			if !strings.Contains(byName["a1"].p.Output(), "wrong or missing --token") {
				return fmt.Errorf("the seed did not log the refusal")
			}
			return nil
		})
		if err != nil {
			t.Errorf("%v\n%s", err, bn.p.Output())
		}
		for _, n := range nodes {
			st, _ := n.status(ctx)
			for _, p := range st.Peers {
				if p.Name == "bad" {
					t.Errorf("%s lists the node with the wrong token", n.h.Name)
				}
			}
		}
		bn.p.Stop()
	})

	t.Run("link-cut-relay-direct", func(t *testing.T) {
		l1, p1 := byName["l1"], byName["p1"]
		if err := meshtest.Eventually(ctx, 10*time.Second, func() error {
			p, err := l1.peer(ctx, "p1")
			if err != nil || p.Path != "direct" {
				return fmt.Errorf("l1 -> p1: %+v %v", p, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		tb.CutLink("london", "paris")
		cut := time.Now()
		// Wait for the pings to fail first, then for them to come back.
		if err := meshtest.Eventually(ctx, 10*time.Second, func() error {
			if err := l1.h.Ping(ctx, ips["p1"]); err != nil {
				return err
			}
			p, err := l1.peer(ctx, "p1")
			if err != nil || p.Path != "relay" {
				return fmt.Errorf("l1 -> p1 path %+v %v", p, err)
			}
			return nil
		}); err != nil {
			t.Logf("l1's log:\n%s", grep(l1.p.Output(), "path", "p1", "relay", "level=ERROR", "level=WARN"))
			t.Fatalf("no relay after the cut: %v", err)
		}
		p, _ := l1.peer(ctx, "p1")
		t.Logf("traffic resumed via relay %s %.1fs after the cut", p.Via, time.Since(cut).Seconds())
		// The bound is 7 s: the 5 s figure bench/mesh measures (and
		// reports against its target) plus 2 s of headroom for a loaded CI
		// machine. This test checks the bound, not the 5 s figure.
		if d, bound := time.Since(cut), 5*time.Second+2*time.Second; d > bound {
			t.Errorf("relay took %v, bound %v (bench/mesh's 5 s target + 2 s headroom for CI load)", d.Round(100*time.Millisecond), bound)
		}
		tb.HealLink("london", "paris")
		healed := time.Now()
		if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
			for _, pair := range [][2]*node{{l1, p1}, {p1, l1}} {
				ps, err := pair[0].peer(ctx, pair[1].h.Name)
				if err != nil || ps.Path != "direct" {
					return fmt.Errorf("%s -> %s: %+v %v", pair[0].h.Name, pair[1].h.Name, ps, err)
				}
			}
			return l1.h.Ping(ctx, ips["p1"])
		}); err != nil {
			t.Fatalf("not direct again: %v", err)
		}
		t.Logf("direct again %.1fs after the link came back", time.Since(healed).Seconds())
		if d := time.Since(healed); d > 15*time.Second {
			t.Errorf("return to direct took %v, bound 15 s", d.Round(100*time.Millisecond))
		}
	})

	t.Run("partition-heal", func(t *testing.T) {
		hold := 20 * time.Second
		if os.Getenv("WEFT_MESH_LONG") != "" {
			hold = 2 * time.Minute
		}
		tb.Partition([]string{"aws", "home"}, []string{"london", "paris", "office"})
		// Both halves notice.
		if err := meshtest.Eventually(ctx, hold+30*time.Second, func() error {
			if c := aliveCount(ctx, byName["a1"]); c != 3 {
				return fmt.Errorf("a1 sees %d alive", c)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(hold) // the partition itself is the scenario
		tb.Heal()
		healed := time.Now()
		if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
			for _, n := range nodes {
				if c := aliveCount(ctx, n); c != len(nodes) {
					return fmt.Errorf("%s sees %d alive", n.h.Name, c)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("membership not whole after heal: %v", err)
		}
		if failing := allPairs(ctx, nodes, ips, 30*time.Second-time.Since(healed)); len(failing) > 0 {
			t.Fatalf("unreachable after heal: %v", failing)
		}
		t.Logf("partition of %v healed: full membership and all-pairs reachability in %.1fs", hold, time.Since(healed).Seconds())
	})

	t.Run("overlapping-overlay-refused", func(t *testing.T) {
		h := tb.AddHost("paris", "ovl")
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := h.Exec(cctx, weft, "mesh", "node", "--node-name", "ovl", "--data-dir", t.TempDir(),
			"--gossip-addr", h.IP().String()+":7946", "--token", token, "--overlay-cidr", "172.30.0.0/16")
		if err == nil || !strings.Contains(string(out), "overlaps the local route 172.30.3.0/24 dev eth0") {
			t.Errorf("want a refusal naming the route, got %v:\n%s", err, out)
		}
	})

	t.Run("killed-node-reaped", func(t *testing.T) {
		victim := byName["a2"]
		a1 := byName["a1"]
		victim.p.Kill()
		block := ""
		if st, err := a1.status(ctx); err == nil {
			for _, p := range st.Peers {
				if p.Name == "a2" {
					block = p.Block
				}
			}
		}
		// Failed, not yet reaped: the peer and its route stay.
		if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
			p, err := a1.peer(ctx, "a2")
			if err != nil || p.Status != "failed" {
				return fmt.Errorf("a2 on a1: %+v %v", p, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if out, _ := a1.h.Exec(ctx, "ip", "route", "show", block); !strings.Contains(string(out), "weft0") {
			t.Errorf("route to failed a2's block %s removed before reaping: %q", block, out)
		}
		// Reaped: no peer, no route, on every node.
		if err := meshtest.Eventually(ctx, 40*time.Second, func() error {
			for _, n := range nodes {
				if n == victim {
					continue
				}
				if _, err := n.peer(ctx, "a2"); err == nil {
					return fmt.Errorf("%s still lists a2", n.h.Name)
				}
				out, _ := n.h.Exec(ctx, "ip", "route", "show", block)
				if strings.TrimSpace(string(out)) != "" {
					return fmt.Errorf("%s still routes %s: %s", n.h.Name, block, out)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("restart-keeps-key-and-block", func(t *testing.T) {
		l2 := byName["l2"]
		before, err := l2.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.p.Stop(); err != nil {
			t.Logf("stop: %v", err)
		}
		// The device and its routes go away with the process.
		if out, _ := l2.h.Exec(ctx, "ip", "link", "show", "weft0"); !strings.Contains(string(out), "does not exist") {
			t.Errorf("weft0 still there after stop: %s", out)
		}
		l2.restart()
		var after mesh.Status
		if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
			after, err = l2.status(ctx)
			if err != nil || after.Block == "" {
				return fmt.Errorf("no status yet: %v", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if after.PublicKey != before.PublicKey || after.Block != before.Block {
			t.Errorf("restart changed identity: key %s -> %s, block %s -> %s", before.PublicKey, after.PublicKey, before.Block, after.Block)
		}
		if err := meshtest.Eventually(ctx, 20*time.Second, func() error { return byName["a1"].h.Ping(ctx, ips["l2"]) }); err != nil {
			dumpStatus(ctx, t, []*node{byName["a1"], l2})
			t.Logf("l2's log:\n%s", grep(l2.p.Output(), "a1", "level=ERROR", "level=WARN", "level=INFO"))
			t.Errorf("a1 cannot reach l2 after its restart: %v", err)
		}
	})
}
