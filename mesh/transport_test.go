package mesh

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestGossipTransportPackets: a datagram reaches memberlist in a buffer
// of its own size (not a 64 KiB one per packet), a second one does not
// overwrite the first, and sends go out to an address given as ip:port.
func TestGossipTransportPackets(t *testing.T) {
	tr, err := newGossipTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tr.port()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []*memberlist.Packet
	for _, msg := range []string{"first packet", "2nd"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-tr.PacketCh():
			got = append(got, p)
		case <-time.After(5 * time.Second):
			t.Fatalf("no packet for %q", msg)
		}
	}
	if string(got[0].Buf) != "first packet" || string(got[1].Buf) != "2nd" {
		t.Errorf("packets %q, %q: want %q, %q (a later read must not overwrite an earlier packet)", got[0].Buf, got[1].Buf, "first packet", "2nd")
	}
	for _, p := range got {
		if cap(p.Buf) > 64 {
			t.Errorf("packet of %d bytes handed over in a buffer of %d", len(p.Buf), cap(p.Buf))
		}
		if p.From.String() != c.LocalAddr().String() || p.Timestamp.IsZero() {
			t.Errorf("packet from %v at %v, want from %v with a time", p.From, p.Timestamp, c.LocalAddr())
		}
	}
	// Out: to the sender's address.
	if _, err := tr.WriteTo([]byte("back"), c.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte("back")) {
		t.Errorf("read %q, %v; want %q", buf[:n], err, "back")
	}
	if _, err := tr.WriteTo([]byte("x"), "127.0.0.1:99999"); err == nil {
		t.Error("a port out of range was taken")
	}
}

// TestGossipTransportAddresses: the advertised address is the given one,
// else the bound one, with the bound port for port 0; a bind address that
// is not an IP address is refused with the address in the error.
func TestGossipTransportAddresses(t *testing.T) {
	tr, err := newGossipTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != tr.port() {
		t.Errorf("bound: %v:%d %v, want 127.0.0.1:%d", ip, port, err, tr.port())
	}
	ip, port, err = tr.FinalAdvertiseAddr("10.1.2.3", 7000)
	if err != nil || ip.String() != "10.1.2.3" || len(ip) != 4 || port != 7000 {
		t.Errorf("given: %v:%d %v, want 10.1.2.3:7000 (4-byte form)", ip, port, err)
	}
	if _, port, _ = tr.FinalAdvertiseAddr("10.1.2.3", 0); port != tr.port() {
		t.Errorf("given address, port 0: port %d, want the bound %d", port, tr.port())
	}
	if _, _, err = tr.FinalAdvertiseAddr("not-an-ip", 1); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Errorf("bad advertise address: %v", err)
	}
	if _, err := newGossipTransport("gossip.example", 0, log.New(io.Discard, "", 0)); err == nil || !strings.Contains(err.Error(), "gossip.example") {
		t.Errorf("bind to a name: %v, want an error naming it", err)
	}
	// The port is taken now: the error says so (createSerf turns that
	// into "gossip port in use").
	if _, err := newGossipTransport("127.0.0.1", tr.port(), log.New(io.Discard, "", 0)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second bind to a taken port: %v", err)
	}
}

// TestGossipTransportMemberlist: two memberlists on it join, see each
// other alive (probes over UDP, the join's state exchange over TCP), and
// one leaving is seen.
func TestGossipTransportMemberlist(t *testing.T) {
	start := func(name string) *memberlist.Memberlist {
		c := memberlist.DefaultLocalConfig()
		c.Name = name
		c.Logger = log.New(io.Discard, "", 0)
		c.EnableCompression = false
		tr, err := newGossipTransport("127.0.0.1", 0, c.Logger)
		if err != nil {
			t.Fatal(err)
		}
		c.Transport = tr
		c.BindAddr, c.BindPort, c.AdvertisePort = "127.0.0.1", tr.port(), tr.port()
		ml, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Shutdown() })
		return ml
	}
	a, b := start("a"), start("b")
	if _, err := b.Join([]string{a.LocalNode().Address()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.NumMembers() != 2 || b.NumMembers() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("members: a sees %d, b sees %d, want 2", a.NumMembers(), b.NumMembers())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Probes run over the transport's UDP: a member stays alive through
	// several probe periods (DefaultLocalConfig probes every second).
	time.Sleep(3 * time.Second)
	if a.NumMembers() != 2 {
		t.Fatalf("after 3 s of probes a sees %d members, want 2", a.NumMembers())
	}
	if err := b.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for a.NumMembers() != 1 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("b left, a still sees %d members", a.NumMembers())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGossipTransportShutdownUnread: Shutdown returns although a packet
// and a stream are waiting for a memberlist that never reads them (a serf
// that failed to start), and a second Shutdown is harmless.
func TestGossipTransportShutdownUnread(t *testing.T) {
	tr, err := newGossipTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(tr.port()))
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(100 * time.Millisecond) // both readers hold what they got
	done := make(chan struct{})
	go func() { tr.Shutdown(); tr.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown hangs on a packet or stream nobody takes")
	}
}
