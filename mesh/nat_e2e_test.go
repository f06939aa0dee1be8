package mesh_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/mesh/meshtest"
)

// TestE2ENATTypes runs nodes behind every kind of NAT of the testbed, with
// WAN delay, and asserts the path of each pairing: direct where a hole
// punch can work (both NATs keep one public port per node, or one lets
// anybody in, or one gives each peer the next port in sequence, which is
// predicted), the relay where it cannot (two NATs that give each peer a
// new port, or one that picks it at random and a port-restricted one). Each node must also
// know its own kind of NAT.
func TestE2ENATTypes(t *testing.T) {
	t.Parallel() // alongside TestE2ESuspend, which mostly waits
	if why := meshtest.Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	weft := testbin.Weft(t)
	tb := meshtest.New(t)
	tb.AddSite("cloud", meshtest.Delay(10*time.Millisecond))
	tb.AddSite("dc", meshtest.Delay(10*time.Millisecond))
	natDelay := meshtest.Delay(30 * time.Millisecond)
	tb.AddNATSite("home1", natDelay)
	tb.AddNATSite("home2", natDelay)
	tb.AddNATSite("home3", natDelay)
	tb.AddNATSite("cafe", natDelay, meshtest.WithNAT(meshtest.NATFullCone))
	tb.AddNATSite("lte1", natDelay, meshtest.WithNAT(meshtest.NATSymmetric))
	tb.AddNATSite("lte2", natDelay, meshtest.WithNAT(meshtest.NATSymmetric))
	tb.AddNATSite("cgn", natDelay, meshtest.DoubleNAT())
	tb.AddNATSite("seq", natDelay, meshtest.WithNAT(meshtest.NATSequential))
	ctx := context.Background()
	token, err := mesh.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(tb.DelayNote())
	hosts := []*meshtest.Host{
		tb.AddHost("cloud", "m1"), tb.AddHost("dc", "d1"),
		tb.AddNATHost("home1", "r1"), tb.AddNATHost("home2", "r2"),
		tb.AddNATHost("cafe", "c1"),
		tb.AddNATHost("lte1", "s1"), tb.AddNATHost("lte2", "s2"),
		tb.AddNATHost("cgn", "dbl"), tb.AddNATHost("home3", "b0"),
		tb.AddNATHost("seq", "q1"),
	}
	byName := map[string]*node{}
	var nodes []*node
	for i, h := range hosts {
		join := hosts[0].IP().String()
		if i == 0 {
			join = ""
		}
		n := startNode(t, weft, h, token, join)
		nodes = append(nodes, n)
		byName[h.Name] = n
	}
	started := time.Now()
	ips := overlayIPs(ctx, t, nodes)

	// Every node knows its NAT kind (s1, s2 need two observers: m1, d1).
	wantKind := map[string]string{"m1": "none", "d1": "none", "r1": "easy", "r2": "easy", "c1": "easy", "s1": "hard", "s2": "hard", "dbl": "easy", "b0": "easy", "q1": "hard"}
	if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
		for name, want := range wantKind {
			st, err := byName[name].status(ctx)
			if err != nil {
				return err
			}
			if st.NATKind != want {
				return fmt.Errorf("%s says its NAT is %q, want %q", name, st.NATKind, want)
			}
		}
		return nil
	}); err != nil {
		dumpStatus(ctx, t, nodes)
		t.Fatal(err)
	}
	// And peers see it.
	if err := meshtest.Eventually(ctx, 10*time.Second, func() error {
		if p, err := byName["r1"].peer(ctx, "s1"); err != nil || p.NAT != "hard" {
			return fmt.Errorf("r1 sees s1's NAT as %q (%v), want hard", p.NAT, err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	pairs := []struct {
		a, b, want string
	}{
		{"r1", "r2", "direct"}, // port-restricted cone both sides
		{"c1", "r1", "direct"}, // full cone and port-restricted
		{"s1", "c1", "direct"}, // symmetric into a full cone
		{"dbl", "m1", "direct"},
		{"dbl", "r2", "direct"}, // double NAT and port-restricted, dbl initiating
		{"b0", "dbl", "direct"}, // the same, b0 initiating (smaller name)
		{"s1", "r2", "relay"},   // symmetric and port-restricted: no port to aim at
		{"q1", "r1", "direct"},  // sequential ports into port-restricted: predicted
		{"q1", "s2", "relay"},   // sequential and symmetric: both hard
		{"s1", "s2", "relay"},   // symmetric both sides
	}
	for _, pr := range pairs {
		t.Run(pr.a+"-"+pr.b, func(t *testing.T) {
			a, b := byName[pr.a], byName[pr.b]
			var p, q mesh.PeerStatus
			err := meshtest.Eventually(ctx, 30*time.Second, func() error {
				var err error
				if p, err = a.peer(ctx, pr.b); err != nil {
					return err
				}
				if q, err = b.peer(ctx, pr.a); err != nil {
					return err
				}
				if p.Path != pr.want || q.Path != pr.want {
					return fmt.Errorf("%s -> %s %s %s, %s -> %s %s %s", pr.a, pr.b, p.Path, p.Via, pr.b, pr.a, q.Path, q.Via)
				}
				if pr.want == "relay" && p.Via != q.Via {
					return fmt.Errorf("relayed through %s one way and %s the other", p.Via, q.Via)
				}
				if err := a.h.Ping(ctx, ips[pr.b]); err != nil {
					return err
				}
				return b.h.Ping(ctx, ips[pr.a])
			})
			if err != nil {
				dumpStatus(ctx, t, []*node{a, b})
				t.Logf("%s's log:\n%s", pr.a, grep(a.p.Output(), pr.b, "punch", "reflexive"))
				t.Fatalf("%s <-> %s: want %s both ways: %v", pr.a, pr.b, pr.want, err)
			}
			t.Logf("%s <-> %s: %s (%s -> %s at %s) %.1fs after the last start", pr.a, pr.b, pr.want, pr.a, pr.b, p.Endpoint, time.Since(started).Seconds())
			if pr.want == "direct" {
				if pub := b.h.Site.Public; pub.IsValid() && !strings.HasPrefix(p.Endpoint, pub.String()+":") {
					t.Errorf("%s reaches %s at %s, not at its NAT's public address %s", pr.a, pr.b, p.Endpoint, pub)
				}
			}
		})
	}
}
