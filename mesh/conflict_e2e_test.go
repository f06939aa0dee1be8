package mesh_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/mesh/meshtest"
)

// twoSiteBed is a testbed of two sites (london 15 ms away) and a token, or
// skips the test when the testbed cannot run here.
func twoSiteBed(t *testing.T) (weft string, tb *meshtest.Testbed, token string) {
	if why := meshtest.Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	weft = testbin.Weft(t)
	tb = meshtest.New(t)
	tb.AddSite("aws")
	tb.AddSite("london", meshtest.Delay(15*time.Millisecond))
	token, err := mesh.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	return weft, tb, token
}

// TestE2EBlockConflict: a node that already carries traffic loses its block
// to an earlier claim that joins late (a node back from a long absence, or
// two clusters' nodes meeting). It must move to a free block, and every
// pair must reach every other at the new addresses, both ways, within
// seconds; the winner keeps the block. (In one bench/mesh run of the last
// session a node that had moved after a conflict stayed unreachable from 20
// peers for a minute; that run was not reproduced, and this move passes.)
func TestE2EBlockConflict(t *testing.T) {
	weft, tb, token := twoSiteBed(t)
	ctx := context.Background()
	const contested = "10.47.200.0/24"
	// claimed writes a persisted claim on the contested block with the
	// given Lamport time (the earlier time wins).
	claimed := func(name string, lamport int) string {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(dir, "mesh"), 0o700); err != nil {
			t.Fatal(err)
		}
		b := fmt.Sprintf(`{"block":%q,"salt":0,"time":%d}`, contested, lamport)
		if err := os.WriteFile(filepath.Join(dir, "mesh", "block.json"), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	hosts := []*meshtest.Host{tb.AddHost("aws", "c1"), tb.AddHost("london", "c2"), tb.AddHost("aws", "c3"), tb.AddHost("london", "c4")}
	seed := hosts[0].IP().String()
	var nodes []*node
	for i, h := range hosts {
		join := seed
		if i == 0 {
			join = ""
		}
		if h.Name == "c2" {
			nodes = append(nodes, startNodeIn(t, claimed("c2", 50), weft, h, token, join))
			continue
		}
		nodes = append(nodes, startNode(t, weft, h, token, join))
	}
	ips := overlayIPs(ctx, t, nodes)
	if ips["c2"] != "10.47.200.1" {
		t.Fatalf("c2 did not take its persisted block: %s", ips["c2"])
	}
	if failing := allPairs(ctx, nodes, ips, 30*time.Second); len(failing) > 0 {
		dumpStatus(ctx, t, nodes)
		t.Fatalf("before the conflict: unreachable: %v", failing)
	}

	// c5 comes back with an earlier claim on c2's block.
	c5 := startNodeIn(t, claimed("c5", 3), weft, tb.AddHost("aws", "c5"), token, seed)
	nodes = append(nodes, c5)
	joined := time.Now()
	var c2 mesh.Status
	if err := meshtest.Eventually(ctx, 15*time.Second, func() error {
		var err error
		if c2, err = nodes[1].status(ctx); err != nil {
			return err
		}
		if c2.Block == contested || c2.OverlayIP == "" {
			return fmt.Errorf("c2 still holds %s", c2.Block)
		}
		return nil
	}); err != nil {
		t.Fatalf("the later claim did not give way: %v\n%s", err, grep(nodes[1].p.Output(), "block"))
	}
	moved := time.Since(joined)
	ips = overlayIPs(ctx, t, nodes)
	if ips["c5"] != "10.47.200.1" || ips["c2"] == "10.47.200.1" {
		t.Fatalf("after the conflict: c5 at %s, c2 at %s; want c5 at 10.47.200.1", ips["c5"], ips["c2"])
	}
	failing, slow := allPairsTimed(ctx, nodes, ips, 20*time.Second)
	if len(failing) > 0 {
		dumpStatus(ctx, t, nodes)
		t.Fatalf("after c2 moved to %s: unreachable within 20 s: %v\n%s", c2.Block, failing, grep(nodes[1].p.Output(), "block", "restart", "path"))
	}
	t.Logf("c2 gave %s to c5 %.1fs after c5 started and moved to %s; all pairs reachable %.1fs after c5 started (slowest: %s)",
		contested, moved.Seconds(), c2.Block, time.Since(joined).Seconds(), slow)
	// Everyone routes the block to the winner: no peer still lists c2 there.
	for _, n := range nodes {
		st, err := n.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.Name == "c2" && p.Block == contested {
				t.Errorf("%s still lists c2 at %s", n.h.Name, contested)
			}
		}
	}
	if !strings.Contains(nodes[1].p.Output(), "block conflict") {
		t.Errorf("c2 logged no block conflict")
	}
}

// TestE2EBlockCollisionsAtStart: nodes that start at the same instant in a
// small overlay (8 blocks for 7 nodes) collide on their provisional blocks,
// some after they have joined. Every collision must resolve to distinct
// blocks, and every pair must reach every other within the formation
// target.
func TestE2EBlockCollisionsAtStart(t *testing.T) {
	weft, tb, token := twoSiteBed(t)
	ctx := context.Background()
	overlay := []string{"--overlay-cidr", "10.98.0.0/21"}
	seedHost := tb.AddHost("aws", "s0")
	nodes := []*node{startNode(t, weft, seedHost, token, "", overlay...)}
	if _, err := nodes[0].status(ctx); err != nil {
		_ = meshtest.Eventually(ctx, 10*time.Second, func() error { _, err := nodes[0].status(ctx); return err })
	}
	var hosts []*meshtest.Host
	for i := 1; i <= 6; i++ {
		hosts = append(hosts, tb.AddHost([]string{"aws", "london"}[i%2], fmt.Sprintf("n%d", i)))
	}
	for _, h := range hosts {
		nodes = append(nodes, startNode(t, weft, h, token, seedHost.IP().String(), overlay...))
	}
	last := time.Now()
	// Wait until the blocks are distinct and every node agrees on them.
	var ips map[string]string
	if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
		ips = map[string]string{}
		owner := map[string]string{}
		for _, n := range nodes {
			st, err := n.status(ctx)
			if err != nil {
				return err
			}
			if st.Block == "" {
				return fmt.Errorf("%s has no block", n.h.Name)
			}
			if o, dup := owner[st.Block]; dup {
				return fmt.Errorf("%s and %s both hold %s", o, n.h.Name, st.Block)
			}
			owner[st.Block] = n.h.Name
			ips[n.h.Name] = st.OverlayIP
		}
		for _, n := range nodes {
			st, _ := n.status(ctx)
			for _, p := range st.Peers {
				if owner[p.Block] != p.Name {
					return fmt.Errorf("%s lists %s at %s", n.h.Name, p.Name, p.Block)
				}
			}
		}
		return nil
	}); err != nil {
		dumpStatus(ctx, t, nodes)
		t.Fatalf("blocks did not settle: %v", err)
	}
	settled := time.Since(last)
	failing, slow := allPairsTimed(ctx, nodes, ips, 25*time.Second)
	if len(failing) > 0 {
		dumpStatus(ctx, t, nodes)
		for _, n := range nodes {
			t.Logf("%s:\n%s", n.h.Name, grep(n.p.Output(), "block", "restart", "path", "unanswered"))
		}
		t.Fatalf("unreachable: %v", failing)
	}
	conflicts := 0
	for _, n := range nodes {
		conflicts += strings.Count(n.p.Output(), "block conflict")
	}
	t.Logf("blocks settled %.1fs after the last start (%d conflicts resolved after a join); all pairs reachable %.1fs after it (slowest: %s)",
		settled.Seconds(), conflicts, time.Since(last).Seconds(), slow)
	if d := time.Since(last); d > 15*time.Second {
		t.Errorf("formation took %.1fs, want within 15 s", d.Seconds())
	}
}
