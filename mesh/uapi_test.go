package mesh

import (
	hexpkg "encoding/hex"
	"net"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestParseUAPI(t *testing.T) {
	priv, _ := wgtypes.ParseKey("GHuMb8H7nqKmXGbUjaM3W9OrD8DdbMXm6PhjeC6upGA=")
	p1, _ := wgtypes.ParseKey("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
	p2, _ := wgtypes.ParseKey("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
	hex := func(k wgtypes.Key) string { return hexpkg.EncodeToString(k[:]) }
	text := "private_key=" + hex(priv) + "\nlisten_port=51820\n" +
		"public_key=" + hex(p1) + "\npreshared_key=" + hex(wgtypes.Key{}) + "\nprotocol_version=1\nendpoint=192.0.2.7:51820\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=148\nrx_bytes=92\npersistent_keepalive_interval=25\n" +
		"allowed_ip=10.47.3.0/24\nallowed_ip=10.47.9.0/24\n" +
		"public_key=" + hex(p2) + "\nprotocol_version=1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n" +
		"errno=0\n\n"
	d, err := parseUAPI([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if d.PrivateKey != priv || d.PublicKey != priv.PublicKey() || d.ListenPort != 51820 || len(d.Peers) != 2 {
		t.Fatalf("device %+v", d)
	}
	a, b := d.Peers[0], d.Peers[1]
	if a.PublicKey != p1 || a.Endpoint.String() != "192.0.2.7:51820" || !a.LastHandshakeTime.Equal(time.Unix(1700000000, 5)) ||
		a.TransmitBytes != 148 || a.ReceiveBytes != 92 || a.PersistentKeepaliveInterval != 25*time.Second || a.ProtocolVersion != 1 {
		t.Errorf("first peer %+v", a)
	}
	if len(a.AllowedIPs) != 2 || a.AllowedIPs[0].String() != "10.47.3.0/24" || a.AllowedIPs[1].String() != "10.47.9.0/24" || len(a.AllowedIPs[0].IP) != net.IPv4len {
		t.Errorf("first peer's allowed IPs %v", a.AllowedIPs)
	}
	if b.PublicKey != p2 || b.Endpoint != nil || !b.LastHandshakeTime.IsZero() || len(b.AllowedIPs) != 0 {
		t.Errorf("second peer %+v", b)
	}

	for name, bad := range map[string]string{
		"errno":     "errno=1\n\n",
		"no equals": "listen_port\n\n",
		"short key": "private_key=abcd\n\n",
		"bad count": "public_key=" + hex(p1) + "\nrx_bytes=x\n\n",
		"bad ep":    "public_key=" + hex(p1) + "\nendpoint=nowhere\n\n",
	} {
		if _, err := parseUAPI([]byte(bad)); err == nil {
			t.Errorf("%s: parsed %q without an error", name, bad)
		}
	}
}

// TestUserDeviceInProcess configures a wireguard-go device (on an
// in-memory TUN) through the engine's in-process calls and reads it back.
func TestUserDeviceInProcess(t *testing.T) {
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	u := &userDevice{dev: dev}
	priv, _ := wgtypes.GeneratePrivateKey()
	p1, _ := wgtypes.GeneratePrivateKey()
	p2, _ := wgtypes.GeneratePrivateKey()
	port, ka := 0, 25*time.Second
	_, b1, _ := net.ParseCIDR("10.47.3.0/24")
	_, b2, _ := net.ParseCIDR("10.47.9.0/24")
	err := u.configure(wgtypes.Config{PrivateKey: &priv, ListenPort: &port, ReplacePeers: true, Peers: []wgtypes.PeerConfig{
		{PublicKey: p1.PublicKey(), Endpoint: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 51820}, PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*b1, *b2}},
		{PublicKey: p2.PublicKey()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := u.state()
	if err != nil {
		t.Fatal(err)
	}
	if d.PrivateKey != priv || len(d.Peers) != 2 {
		t.Fatalf("device %+v", d)
	}
	byKey := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range d.Peers {
		byKey[p.PublicKey] = p
	}
	a := byKey[p1.PublicKey()]
	if a.Endpoint.String() != "192.0.2.7:51820" || a.PersistentKeepaliveInterval != ka || len(a.AllowedIPs) != 2 || a.AllowedIPs[0].String() != "10.47.3.0/24" || a.AllowedIPs[1].String() != "10.47.9.0/24" {
		t.Errorf("first peer %+v", a)
	}
	// A poke's two steps, then a removal.
	zero := time.Duration(0)
	for _, c := range []wgtypes.PeerConfig{
		{PublicKey: p1.PublicKey(), UpdateOnly: true, PersistentKeepaliveInterval: &zero},
		{PublicKey: p2.PublicKey(), Remove: true},
	} {
		if err := u.configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{c}}); err != nil {
			t.Fatal(err)
		}
	}
	if d, err = u.state(); err != nil || len(d.Peers) != 1 || d.Peers[0].PersistentKeepaliveInterval != 0 || len(d.Peers[0].AllowedIPs) != 2 {
		t.Fatalf("after the updates: %v, %+v", err, d.Peers)
	}
}
