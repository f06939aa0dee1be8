package mesh

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
)

// The punch side channel: asks, answers and reports for this node reach
// the Run goroutine (or the waiting ask); messages for another node, or
// from outside the overlay, do not.
func TestPunchSideChannel(t *testing.T) {
	listen := func(overlay string) (*Mesh, *net.UDPConn) {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		m := &Mesh{
			cfg:       Config{NodeName: "b"},
			log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			overlay:   netip.MustParsePrefix(overlay),
			userEvts:  make(chan serf.UserEvent, 4),
			punchReqs: make(chan punchReq, 4),
			punchWait: map[string]chan punchReply{},
			punchConn: conn,
			// a and m1 send from 127.0.0.1 (their overlay address);
			// x's block is elsewhere.
			blockOf: func(name string) netip.Prefix {
				return map[string]netip.Prefix{
					"a":  netip.MustParsePrefix("127.0.0.0/24"),
					"m1": netip.MustParsePrefix("127.0.0.0/24"),
					"x":  netip.MustParsePrefix("127.0.5.0/24"),
				}[name]
			},
		}
		go m.readPunch(conn)
		return m, conn
	}
	m, conn := listen("127.0.0.0/8")
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	send := func(to netip.AddrPort, msg string) {
		t.Helper()
		if _, err := client.WriteToUDPAddrPort([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	ep := netip.MustParseAddrPort("198.51.100.7:51820")

	send(to, "ask c a 198.51.100.7:51820") // for another node
	send(to, "ask b a 198.51.100.7:51820")
	select {
	case r := <-m.punchReqs:
		if r.from != "a" || !slices.Equal(r.eps, []netip.AddrPort{ep}) || r.predicted || r.src != client.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("ask read as %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the ask did not arrive")
	}
	send(to, "ask b a 198.51.100.7:40001,40002 predicted")
	select {
	case r := <-m.punchReqs:
		if !r.predicted || len(r.eps) != 2 || r.eps[1].Port() != 40002 {
			t.Errorf("predicted ask read as %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the predicted ask did not arrive")
	}

	reply := make(chan punchReply, 1)
	m.mu.Lock()
	m.punchWait["a"] = reply
	m.mu.Unlock()
	send(to, "ack b a 198.51.100.7:51820")
	select {
	case r := <-reply:
		if !slices.Equal(r.eps, []netip.AddrPort{ep}) {
			t.Errorf("answer read as %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the answer did not reach the waiting ask")
	}

	send(to, "ep b 203.0.113.9:51820 m1")
	select {
	case ev := <-m.userEvts:
		if ev.Name != reflexiveEvent || string(ev.Payload) != "b 203.0.113.9:51820 m1" {
			t.Errorf("report read as %q %q", ev.Name, ev.Payload)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the report did not arrive")
	}
	if len(m.punchReqs) != 0 {
		t.Errorf("an ask for another node was taken: %+v", <-m.punchReqs)
	}

	// From an overlay address that is not the named node's: dropped.
	send(to, "ask b x 198.51.100.7:51820")
	send(to, "ep b 203.0.113.9:51820 x")
	send(to, "ep b 203.0.113.9:51820")
	send(to, "ask b b 198.51.100.7:51820")
	takesNothing(t, m, "not sent by the node it names")

	// From outside the overlay: dropped.
	far, conn2 := listen("10.47.0.0/16")
	send(conn2.LocalAddr().(*net.UDPAddr).AddrPort(), "ask b a 198.51.100.7:51820")
	send(conn2.LocalAddr().(*net.UDPAddr).AddrPort(), "ep b 203.0.113.9:51820 m1")
	takesNothing(t, far, "from outside the overlay")
}

// takesNothing fails if m takes an ask or a report within 300 ms.
func takesNothing(t *testing.T, m *Mesh, what string) {
	t.Helper()
	select {
	case r := <-m.punchReqs:
		t.Errorf("an ask %s was taken: %+v", what, r)
	case ev := <-m.userEvts:
		t.Errorf("a report %s was taken: %q", what, ev.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}
