package meshtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// InNetns runs fn on a thread switched into the host's network namespace;
// sockets fn creates stay in that namespace after it returns.
func (h *Host) InNetns(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(h.NS)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", h.NS, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", h.NS, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return fmt.Errorf("leaving netns %s: %w", h.NS, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

var pingID struct {
	sync.Mutex
	n int
}

// Ping sends one ICMP echo from the host to dst and waits for the reply
// (up to 1 s, or ctx).
func (h *Host) Ping(ctx context.Context, dst string) error {
	return h.PingSize(ctx, dst, 56)
}

// PingSize is Ping with a payload of size bytes (Don't Fragment is not set).
func (h *Host) PingSize(ctx context.Context, dst string, size int) error {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	var c *icmp.PacketConn
	if err := h.InNetns(func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("ping from %s: %w", h.Name, err)
	}
	defer c.Close()
	pingID.Lock()
	pingID.n++
	id := (os.Getpid() + pingID.n) & 0xffff
	pingID.Unlock()
	payload := make([]byte, size)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: payload}}
	b, _ := msg.Marshal(nil)
	if _, err := c.WriteTo(b, &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, h.Name, err)
	}
	deadline := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %s from %s: no reply", dst, h.Name)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == addr.String() {
			return nil
		}
	}
}

// Dial opens a connection from inside the host's namespace.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	var c net.Conn
	err := h.InNetns(func() error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.InNetns(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// HTTPClient returns a client whose connections start in the host's
// namespace (e.g. to reach a node's API on its loopback).
func (h *Host) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: h.Dial, DisableKeepAlives: true},
	}
}
