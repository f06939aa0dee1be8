package meshtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/mesh/meshtest"
)

func TestTestbedUnderlay(t *testing.T) {
	tb := meshtest.New(t)
	tb.AddSite("aws")
	london := tb.AddSite("london", meshtest.Delay(20*time.Millisecond))
	a := tb.AddHost("aws", "a1")
	a2 := tb.AddHost("aws", "a2")
	l := tb.AddHost("london", "l1")
	n := tb.AddNATHost("home", "laptop")
	ctx := context.Background()

	for _, c := range []struct {
		from *meshtest.Host
		to   string
	}{{a, a2.IP().String()}, {a, l.IP().String()}, {n, a.IP().String()}, {n, l.IP().String()}} {
		if err := c.from.Ping(ctx, c.to); err != nil {
			t.Errorf("%s -> %s: %v", c.from, c.to, err)
		}
	}
	// Nobody outside reaches a host behind NAT.
	if err := a.Ping(ctx, n.IP().String()); err == nil {
		t.Errorf("reached %s behind NAT from outside", n)
	}
	// The WAN delay is there.
	start := time.Now()
	if err := a.Ping(ctx, l.IP().String()); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); london.Delayed && rtt < 20*time.Millisecond {
		t.Errorf("aws-london RTT %v, want >= 20ms", rtt)
	}

	tb.CutLink("aws", "london")
	if err := a.Ping(ctx, l.IP().String()); err == nil {
		t.Error("ping crossed a cut link")
	}
	if err := a.Ping(ctx, a2.IP().String()); err != nil {
		t.Errorf("same-site ping broke with the cut: %v", err)
	}
	tb.Heal()
	if err := a.Ping(ctx, l.IP().String()); err != nil {
		t.Errorf("after heal: %v", err)
	}
	out, err := l.Exec(ctx, "ip", "-br", "addr", "show", "eth0")
	if err != nil {
		t.Fatalf("exec: %v %s", err, out)
	}
	p := a.Start("sh", "-c", "mount | grep -c /run/wireguard; sleep 60")
	if err := meshtest.Eventually(ctx, 5*time.Second, func() error {
		if p.Output() == "" {
			return context.DeadlineExceeded
		}
		return nil
	}); err != nil {
		t.Errorf("process output: %v", err)
	}
}
