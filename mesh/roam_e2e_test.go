package mesh_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/mesh/meshtest"
)

// TestE2ERoam moves a laptop from its home NAT to another network (new
// address, new NAT, none of the old mappings) and suspends it, with WAN
// delay, and checks that traffic resumes by itself, that the laptop keeps
// its overlay address, and that it gets its direct path to another NATed
// node back.
func TestE2ERoam(t *testing.T) {
	if why := meshtest.Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	weft := testbin.Weft(t)
	tb := meshtest.New(t)
	tb.AddSite("cloud", meshtest.Delay(15*time.Millisecond))
	tb.AddSite("dc", meshtest.Delay(15*time.Millisecond))
	tb.AddNATSite("home", meshtest.Delay(30*time.Millisecond))
	tb.AddNATSite("office", meshtest.Delay(30*time.Millisecond))
	tb.AddNATSite("lte", meshtest.Delay(40*time.Millisecond))
	ctx := context.Background()
	token, err := mesh.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(tb.DelayNote())
	hosts := []*meshtest.Host{tb.AddHost("cloud", "m1"), tb.AddHost("dc", "d1"), tb.AddNATHost("home", "laptop"), tb.AddNATHost("office", "o1")}
	byName := map[string]*node{}
	var nodes []*node
	for i, h := range hosts {
		join := hosts[0].IP().String()
		if i == 0 {
			join = ""
		}
		n := startNode(t, weft, h, token, join, "--reap-timeout", "10m")
		nodes = append(nodes, n)
		byName[h.Name] = n
	}
	ips := overlayIPs(ctx, t, nodes)
	laptop, m1, o1 := byName["laptop"], byName["m1"], byName["o1"]
	direct := func(within time.Duration) error {
		return meshtest.Eventually(ctx, within, func() error {
			p, err := laptop.peer(ctx, "o1")
			if err != nil {
				return err
			}
			q, err := o1.peer(ctx, "laptop")
			if err != nil {
				return err
			}
			if p.Path != "direct" || q.Path != "direct" {
				return fmt.Errorf("laptop -> o1 %s, o1 -> laptop %s", p.Path, q.Path)
			}
			return o1.h.Ping(ctx, ips["laptop"])
		})
	}
	if err := direct(20 * time.Second); err != nil {
		t.Fatalf("before the move: %v", err)
	}
	// traffic waits until m1 and o1 both reach the laptop, and the
	// laptop both of them.
	traffic := func(within time.Duration) (time.Duration, error) {
		start := time.Now()
		err := meshtest.Eventually(ctx, within, func() error {
			for _, pr := range [][2]string{{"m1", "laptop"}, {"o1", "laptop"}, {"laptop", "m1"}, {"laptop", "o1"}} {
				if err := byName[pr[0]].h.Ping(ctx, ips[pr[1]]); err != nil {
					return fmt.Errorf("%s -> %s: %w", pr[0], pr[1], err)
				}
			}
			return nil
		})
		return time.Since(start), err
	}

	t.Run("move", func(t *testing.T) {
		before := laptop.h.Site.Public
		laptop.h.Move("lte", true)
		moved := time.Now()
		took, err := traffic(20 * time.Second)
		if err != nil {
			dumpStatus(ctx, t, nodes)
			t.Fatalf("no traffic after the move: %v", err)
		}
		t.Logf("laptop moved from %s to %s (%s): traffic both ways with m1 and o1 again %.1fs after the move", before, laptop.h.Site.Public, tb.DelayNote(), took.Seconds())
		if took > 10*time.Second {
			t.Errorf("traffic resumed %v after the move (target 3 s)", took)
		}
		st, err := laptop.status(ctx)
		if err != nil || st.OverlayIP != ips["laptop"] {
			t.Errorf("overlay address after the move %q (%v), want %s", st.OverlayIP, err, ips["laptop"])
		}
		if err := direct(20 * time.Second); err != nil {
			dumpStatus(ctx, t, []*node{laptop, o1})
			t.Errorf("no direct path laptop <-> o1 from the new network: %v", err)
		} else {
			p, _ := m1.peer(ctx, "laptop")
			t.Logf("direct laptop <-> o1 again %.1fs after the move; m1 reaches the laptop at %s", time.Since(moved).Seconds(), p.Endpoint)
		}
	})

	t.Run("suspend", func(t *testing.T) {
		// 35 s by default: beyond the NAT's 30 s UDP timeout, so every
		// mapping is gone, and beyond gossip's failure detection, so the
		// peers have declared the laptop failed. WEFT_MESH_LONG makes it
		// 3 minutes, beyond WireGuard's 180 s key lifetime too.
		hold := 35 * time.Second
		if os.Getenv("WEFT_MESH_LONG") != "" {
			hold = 3 * time.Minute
		}
		laptop.p.Suspend()
		stopped := time.Now()
		if err := meshtest.Eventually(ctx, hold, func() error {
			p, err := m1.peer(ctx, "laptop")
			if err != nil || p.Status != "failed" {
				return fmt.Errorf("m1 sees laptop %q %v", p.Status, err)
			}
			return nil
		}); err != nil {
			laptop.p.Resume()
			t.Fatalf("the suspended laptop was not declared failed: %v", err)
		}
		time.Sleep(hold - time.Since(stopped))
		laptop.p.Resume()
		resumed := time.Now()
		if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
			for _, n := range nodes {
				p, err := n.peer(ctx, "laptop")
				if n == laptop {
					p, err = laptop.peer(ctx, "m1")
				}
				if err != nil || p.Status != "alive" {
					return fmt.Errorf("%s: %q %v", n.h.Name, p.Status, err)
				}
			}
			return nil
		}); err != nil {
			dumpStatus(ctx, t, nodes)
			t.Fatalf("the laptop did not rejoin gossip after a %v suspend: %v", hold, err)
		}
		took, err := traffic(30 * time.Second)
		if err != nil {
			dumpStatus(ctx, t, nodes)
			t.Fatalf("no traffic after a %v suspend: %v", hold, err)
		}
		t.Logf("after a %v suspend: alive in gossip and traffic both ways %.1fs after resuming", hold, time.Since(resumed).Seconds())
		_ = took
		if st, err := laptop.status(ctx); err != nil || st.OverlayIP != ips["laptop"] {
			t.Errorf("overlay address after the suspend %q (%v), want %s", st.OverlayIP, err, ips["laptop"])
		}
	})
}
