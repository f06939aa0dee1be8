package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/weftnet/weft/mesh"
)

func TestPrintMeshStatus(t *testing.T) {
	st := mesh.Status{
		Node: "l1", Site: "london", Role: "agent", Members: 3, Alive: 3, GossipAddr: "10.47.3.1:7946",
		Encrypted: true, WireGuard: true, DataPlane: "userspace", Interface: "weft0", Block: "10.47.3.0/24",
		OverlayIP: "10.47.3.1", ListenPort: 51820, MTU: 1420, NAT: true, Endpoints: []string{"203.0.113.7:51820"},
		Peers: []mesh.PeerStatus{
			{Name: "a1", Site: "aws", Status: "alive", Block: "10.47.9.0/24", Endpoint: "198.51.100.1:51820", Path: "direct",
				HandshakeAge: 12.3, RxBytes: 2048, TxBytes: 5 << 20, RTTMillis: 31.25, MTU: 1420, DataPlane: "userspace"},
			{Name: "laptop", Site: "home", Status: "alive", Block: "10.47.4.0/24", Path: "relay", Via: "a1", HandshakeAge: -1, RTTMillis: -1},
		},
	}
	var b bytes.Buffer
	printMeshStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"node l1  site london", "(encrypted)", "overlay 10.47.3.1  block 10.47.3.0/24  weft0 userspace  port 51820  MTU 1420  behind NAT",
		"PEER", "a1", "198.51.100.1:51820", "direct", "12s ago", "2.0KiB", "5.0MiB", "31.2ms",
		"relay via a1", "never",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

func TestMeshTokenCommand(t *testing.T) {
	app := newApp()
	var b bytes.Buffer
	app.Writer = &b
	if err := app.Run([]string{"weft", "mesh", "token"}); err != nil {
		t.Fatal(err)
	}
	if tok := strings.TrimSpace(b.String()); !strings.HasPrefix(tok, "weft1-") || len(tok) < 40 {
		t.Errorf("token %q", tok)
	}
}
