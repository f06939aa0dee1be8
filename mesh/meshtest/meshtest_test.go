package meshtest_test

import (
	"context"
	"fmt"
	"net"
	"strings"
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

// udpEcho answers each datagram with the sender's address as it arrived.
func udpEcho(t *testing.T, h *meshtest.Host, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := h.InNetns(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.String()), from)
		}
	}()
}

// observed sends from a fixed local port to each target and returns how
// each target saw the sender.
func observed(t *testing.T, h *meshtest.Host, port int, targets ...string) []string {
	t.Helper()
	var pc net.PacketConn
	if err := h.InNetns(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []string
	buf := make([]byte, 1500)
	for _, dst := range targets {
		ua, _ := net.ResolveUDPAddr("udp4", dst)
		var got string
		for try := 0; try < 5 && got == ""; try++ {
			_, _ = pc.WriteTo([]byte("hi"), ua)
			_ = pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, _, err := pc.ReadFrom(buf); err == nil {
				got = string(buf[:n])
			}
		}
		if got == "" {
			t.Fatalf("%s: no echo from %s", h, dst)
		}
		out = append(out, got)
	}
	return out
}

// TestNATTypes checks each NAT kind's mapping and filtering with plain UDP,
// and the TUN delayer's RTT.
func TestNATTypes(t *testing.T) {
	tb := meshtest.New(t)
	tb.AddSite("pub")
	far := tb.AddSite("far", meshtest.Delay(30*time.Millisecond))
	e1, e2 := tb.AddHost("pub", "e1"), tb.AddHost("pub", "e2")
	e3 := tb.AddHost("far", "e3")
	tb.AddNATSite("cone", meshtest.WithNAT(meshtest.NATFullCone))
	tb.AddNATSite("sym", meshtest.WithNAT(meshtest.NATSymmetric))
	tb.AddNATSite("cgn", meshtest.DoubleNAT())
	restricted := tb.AddNATHost("home", "r")
	cone, sym, dbl := tb.AddNATHost("cone", "c"), tb.AddNATHost("sym", "s"), tb.AddNATHost("cgn", "d")
	for _, h := range []*meshtest.Host{e1, e2, e3} {
		udpEcho(t, h, 3478)
	}
	ep := func(h *meshtest.Host) string { return h.IP().String() + ":3478" }
	t.Log(tb.DelayNote())

	// The delay: an RTT across the WAN includes far's 30 ms.
	ctx := context.Background()
	if !far.Delayed {
		t.Fatalf("no WAN delay in force for site far")
	}
	_ = e1.Ping(ctx, e3.IP().String())
	start := time.Now()
	if err := e1.Ping(ctx, e3.IP().String()); err != nil {
		t.Fatal(err)
	}
	rtt := time.Since(start)
	t.Logf("pub -> far RTT %v", rtt)
	if rtt < 30*time.Millisecond || rtt > 300*time.Millisecond {
		t.Errorf("pub -> far RTT %v with 30ms one-way delay into far (%s)", rtt, far.DelayBy)
	}
	start = time.Now()
	if err := e1.Ping(ctx, e2.IP().String()); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt > 25*time.Millisecond {
		t.Errorf("same-site RTT %v: the delay leaked onto an undelayed path", rtt)
	}

	for _, c := range []struct {
		h        *meshtest.Host
		samePort bool
		public   string
	}{
		{restricted, true, restricted.Site.Public.String()},
		{cone, true, cone.Site.Public.String()},
		{sym, false, sym.Site.Public.String()},
		{dbl, true, dbl.Site.Public.String()},
	} {
		got := observed(t, c.h, 40000, ep(e1), ep(e2), ep(e3))
		t.Logf("%s (%s) seen as %v", c.h, c.h.Site.NATType, got)
		for _, g := range got {
			if !strings.HasPrefix(g, c.public+":") {
				t.Errorf("%s seen at %s, want its public address %s", c.h, g, c.public)
			}
		}
		same := got[0] == got[1] && got[1] == got[2]
		if same != c.samePort {
			t.Errorf("%s (%s): mapping toward three peers %v, want same=%v", c.h, c.h.Site.NATType, got, c.samePort)
		}
	}

	// Filtering: after the cone host has talked to e1, e2 (never
	// contacted) reaches it at its mapping; the port-restricted one is
	// unreachable that way.
	for _, c := range []struct {
		h    *meshtest.Host
		open bool
	}{{cone, true}, {restricted, false}} {
		var pc net.PacketConn
		if err := c.h.InNetns(func() error {
			var err error
			pc, err = net.ListenPacket("udp4", ":40001")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ua, _ := net.ResolveUDPAddr("udp4", ep(e1))
		_, _ = pc.WriteTo([]byte("map"), ua)
		buf := make([]byte, 100)
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: no echo: %v", c.h, err)
		}
		mapped := string(buf[:n])
		var sender net.PacketConn
		_ = e2.InNetns(func() error {
			var err error
			sender, err = net.ListenPacket("udp4", ":0")
			return err
		})
		ma, _ := net.ResolveUDPAddr("udp4", mapped)
		got := false
		for try := 0; try < 3 && !got; try++ {
			_, _ = sender.WriteTo([]byte("unsolicited"), ma)
			_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			got = err == nil && string(buf[:n]) == "unsolicited"
		}
		sender.Close()
		pc.Close()
		if got != c.open {
			t.Errorf("%s (%s): an unsolicited packet from a new peer to its mapping %s arrived=%v, want %v", c.h, c.h.Site.NATType, mapped, got, c.open)
		}
	}
}
