package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// The TestGuest* cases run inside the VM that TestKernelWireGuardVM boots
// (the kernel there has the wireguard module); anywhere else they skip.
// Each builds its own pair of network namespaces joined by a veth and runs
// one real `weft mesh node` in each.

func guestOnly(t *testing.T) string {
	t.Helper()
	if os.Getenv(GuestEnv) == "" {
		t.Skip("runs inside the test VM (TestKernelWireGuardVM boots it)")
	}
	weft := os.Getenv("WEFT_BIN")
	if weft == "" {
		t.Fatal("WEFT_BIN is not set inside the VM")
	}
	return weft
}

// TestGuestKernelPair: two nodes, both on the kernel WireGuard device,
// ping each other and move a TCP stream over the overlay. Then a restart:
// a node killed without cleanup leaves its kernel weft0 behind; restarted
// with the same identity it takes that link over (it holds the node's own
// key), while a node of another identity is refused and leaves the link
// alone (mesh/engine.go replaceLeftover). One pair serves both: under
// emulation every node start costs seconds.
func TestGuestKernelPair(t *testing.T) {
	weft := guestOnly(t)
	t.Parallel()
	b := newBed(t, weft)
	x := b.start(0, "a", "")
	y := b.start(1, "b", "")
	b.waitPair(x, y, PlaneKernel, PlaneKernel)
	for _, n := range []*node{x, y} {
		if typ := linkType(t, n.ns, "weft0"); typ != "wireguard" {
			t.Fatalf("%s: weft0 is a %q link, want the kernel's wireguard", n.name, typ)
		}
	}
	b.ping(x, y)
	b.ping(y, x)
	b.transfer(x, y, 256<<10)
	key := x.status().PublicKey

	t.Run("restart-over-own-leftover", func(t *testing.T) {
		b.t = t
		x.kill()
		if typ := linkType(t, x.ns, "weft0"); typ != "wireguard" {
			t.Fatalf("after kill -9, weft0 is %q; want the leftover kernel link", typ)
		}
		if k := deviceKey(t, x.ns); k != key {
			t.Fatalf("leftover weft0 holds key %s, want a's %s", k, key)
		}
		x = b.start(0, "a", x.dataDir)
		b.waitPair(x, y, PlaneKernel, PlaneKernel)
		if k := x.status().PublicKey; k != key {
			t.Fatalf("restarted a has key %s, want %s (same data dir)", k, key)
		}
		b.ping(x, y)
		b.ping(y, x)
	})
	t.Run("leftover-of-another-identity-refused", func(t *testing.T) {
		b.t = t
		x.kill()
		before := linkIndex(t, x.ns, "weft0")
		other := b.start(0, "c", "")
		select {
		case <-other.done:
		case <-time.After(2 * time.Minute):
			t.Fatalf("a node of another identity kept running beside a's leftover weft0:\n%s", other.output())
		}
		out := other.output()
		if other.err == nil {
			t.Fatalf("a node of another identity started on a's leftover weft0:\n%s", out)
		}
		for _, want := range []string{"another identity", key, "--interface"} {
			if !strings.Contains(out, want) {
				t.Errorf("refusal lacks %q:\n%s", want, out)
			}
		}
		if after := linkIndex(t, x.ns, "weft0"); after != before {
			t.Errorf("the refused node touched the leftover weft0 (ifindex %d, then %d)", before, after)
		}
		if k := deviceKey(t, x.ns); k != key {
			t.Errorf("leftover weft0 now holds key %s, want a's %s", k, key)
		}
		t.Logf("c refused: %s", lastLine(out))
	})
}

// TestGuestMixedPair: a kernel node and a node forced onto wireguard-go
// (--wg-userspace) interoperate, both ways.
func TestGuestMixedPair(t *testing.T) {
	weft := guestOnly(t)
	t.Parallel()
	b := newBed(t, weft)
	x := b.start(0, "a", "")
	y := b.start(1, "b", "", "--wg-userspace")
	b.waitPair(x, y, PlaneKernel, PlaneUserspace)
	if typ := linkType(t, y.ns, "weft0"); typ != "tun" {
		t.Fatalf("b: weft0 is a %q link, want wireguard-go's tun", typ)
	}
	b.ping(x, y)
	b.ping(y, x)
	b.transfer(x, y, 128<<10)
	b.transfer(y, x, 128<<10)
}

// The data planes as weft's status names them.
const (
	PlaneKernel    = "kernel"
	PlaneUserspace = "userspace"
)

// bed is two network namespaces joined by a veth, the underlay of a pair.
type bed struct {
	t     *testing.T
	weft  string
	token string
	ns    [2]string
	ip    [2]string // underlay addresses
	n     int32
}

var beds atomic.Int32

func newBed(t *testing.T, weft string) *bed {
	t.Helper()
	n := beds.Add(1)
	b := &bed{t: t, weft: weft, n: n}
	for i := range 2 {
		b.ns[i] = fmt.Sprintf("vm%d%c", n, 'a'+i)
		b.ip[i] = fmt.Sprintf("198.18.%d.%d", n, i+1)
		ip(t, "netns", "add", b.ns[i])
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", b.ns[i]).Run() })
		ip(t, "-n", b.ns[i], "link", "set", "lo", "up")
	}
	va, vb := fmt.Sprintf("v%da", n), fmt.Sprintf("v%db", n)
	ip(t, "link", "add", va, "netns", b.ns[0], "type", "veth", "peer", "name", vb, "netns", b.ns[1])
	for i, dev := range []string{va, vb} {
		ip(t, "-n", b.ns[i], "addr", "add", b.ip[i]+"/24", "dev", dev)
		ip(t, "-n", b.ns[i], "link", "set", dev, "up")
	}
	out, err := exec.Command(weft, "mesh", "token").Output()
	if err != nil {
		t.Fatalf("weft mesh token: %v", err)
	}
	b.token = strings.TrimSpace(string(out))
	return b
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// node is one `weft mesh node` process in a namespace of the bed.
type node struct {
	b       *bed
	name    string
	ns      string
	dataDir string
	block   string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// start runs a node in namespace i, with a fresh data dir unless one is
// given (a restart), joining the other namespace's address.
func (b *bed) start(i int, name, dataDir string, extra ...string) *node {
	t := b.t
	t.Helper()
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), name)
	}
	n := &node{b: b, name: name, ns: b.ns[i], dataDir: dataDir, block: fmt.Sprintf("10.47.%d.0/24", 10*b.n+int32(i)), done: make(chan struct{})}
	args := []string{b.weft, "mesh", "node", "--node-name", name, "--site", "vm", "--data-dir", dataDir,
		"--gossip-addr", b.ip[i] + ":7946", "--agent-addr", "127.0.0.1:5051", "--token", b.token,
		"--block", n.block, "--join", b.ip[1-i] + ":7946"}
	args = append(args, extra...)
	// Each node has its own mount namespace and UAPI directory.
	script := `mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 tmpfs /run/wireguard && exec "$@"`
	n.cmd = exec.Command("ip", append([]string{"netns", "exec", n.ns, "sh", "-c", script, "sh"}, args...)...)
	f, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n.logPath = f.Name()
	n.cmd.Stdout, n.cmd.Stderr = f, f
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { n.err = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node %s output:\n%s", name, tail(n.output(), 40))
		}
	})
	return n
}

func (n *node) output() string {
	b, _ := os.ReadFile(n.logPath)
	return string(b)
}

// kill sends SIGKILL to the node's process group and waits: the node gets
// no chance to clean up, as in a crash.
func (n *node) kill() {
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}

// status is the subset of weft's /v1/mesh/status the cases read.
type status struct {
	DataPlane string `json:"dataPlane"`
	PublicKey string `json:"publicKey"`
	OverlayIP string `json:"overlayIP"`
	Peers     []struct {
		Name         string  `json:"name"`
		Path         string  `json:"path"`
		HandshakeAge float64 `json:"handshakeAgeSeconds"`
		DataPlane    string  `json:"dataPlane"`
	} `json:"peers"`
}

func (n *node) fetchStatus() (status, error) {
	var st status
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: dialIn(n.ns)}}
	resp, err := c.Get("http://127.0.0.1:5051/v1/mesh/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (n *node) status() status {
	n.b.t.Helper()
	st, err := n.fetchStatus()
	if err != nil {
		n.b.t.Fatalf("%s: %v", n.name, err)
	}
	return st
}

// waitPair waits until each node runs on the data plane given and has a
// direct WireGuard session with the other.
func (b *bed) waitPair(x, y *node, planeX, planeY string) {
	b.t.Helper()
	for _, c := range []struct {
		n, peer *node
		plane   string
	}{{x, y, planeX}, {y, x, planeY}} {
		err := eventually(2*time.Minute, func() error {
			select {
			case <-c.n.done:
				return fmt.Errorf("%s exited: %v", c.n.name, c.n.err)
			default:
			}
			st, err := c.n.fetchStatus()
			if err != nil {
				return err
			}
			if st.DataPlane != c.plane {
				return fmt.Errorf("%s runs on the %q data plane, want %q", c.n.name, st.DataPlane, c.plane)
			}
			for _, p := range st.Peers {
				if p.Name == c.peer.name {
					if p.Path != "direct" || p.HandshakeAge < 0 {
						return fmt.Errorf("%s sees %s: path %s, handshake age %.1f", c.n.name, p.Name, p.Path, p.HandshakeAge)
					}
					return nil
				}
			}
			return fmt.Errorf("%s does not know %s yet", c.n.name, c.peer.name)
		})
		if err != nil {
			b.t.Fatal(err)
		}
	}
}

func overlayIP(n *node) string {
	return strings.TrimSuffix(n.block, "0/24") + "1"
}

// ping sends ICMP echoes over the overlay from x to y until one answers.
func (b *bed) ping(x, y *node) {
	b.t.Helper()
	var out []byte
	err := eventually(30*time.Second, func() error {
		var err error
		out, err = exec.Command("ip", "netns", "exec", x.ns, "ping", "-c1", "-W2", overlayIP(y)).CombinedOutput()
		return err
	})
	if err != nil {
		b.t.Fatalf("ping %s -> %s (%s): %v\n%s", x.name, y.name, overlayIP(y), err, out)
	}
}

// transfer sends size bytes over TCP from x to y's overlay address and
// checks that exactly they arrived.
func (b *bed) transfer(x, y *node, size int64) {
	b.t.Helper()
	r, err := tcpStream(x.ns, y.ns, overlayIP(y), size, 0, 90*time.Second)
	if err != nil {
		b.t.Fatalf("TCP %s -> %s over the overlay: %v", x.name, y.name, err)
	}
	b.t.Logf("TCP %s -> %s: %d bytes in %v (%.1f Mbit/s)", x.name, y.name, r.Bytes, r.Elapsed.Round(time.Millisecond), r.Mbps())
}

// streamResult is one TCP transfer as the receiver saw it.
type streamResult struct {
	Bytes   int64
	Elapsed time.Duration // first byte sent to last byte received
}

func (r streamResult) Mbps() float64 { return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e6 }

// tcpStream sends from namespace from to dst:5201 in namespace to: size
// bytes, or for dur when dur > 0. The receiver hashes what arrives, and it
// must match what was sent.
func tcpStream(from, to, dst string, size int64, dur, timeout time.Duration) (streamResult, error) {
	var ln net.Listener
	if err := inNetns(to, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(dst, "5201"))
		return err
	}); err != nil {
		return streamResult{}, err
	}
	defer ln.Close()
	type got struct {
		n   int64
		sum [32]byte
		at  time.Time
		err error
	}
	recv := make(chan got, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- got{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		h := sha256.New()
		n, err := io.Copy(h, c)
		var g got
		g.n, g.err, g.at = n, err, time.Now()
		copy(g.sum[:], h.Sum(nil))
		recv <- g
	}()
	var c net.Conn
	if err := inNetns(from, func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(dst, "5201"), 10*time.Second)
		return err
	}); err != nil {
		return streamResult{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	h := sha256.New()
	buf := make([]byte, 64<<10)
	rng := rand.NewChaCha8([32]byte{1})
	start := time.Now()
	var sent int64
	for (dur > 0 && time.Since(start) < dur) || (dur == 0 && sent < size) {
		chunk := buf
		if dur == 0 && size-sent < int64(len(chunk)) {
			chunk = chunk[:size-sent]
		}
		_, _ = rng.Read(chunk)
		n, err := c.Write(chunk)
		h.Write(chunk[:n])
		sent += int64(n)
		if err != nil {
			return streamResult{}, fmt.Errorf("sending after %d bytes: %w", sent, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return streamResult{}, err
	}
	g := <-recv
	if g.err != nil {
		return streamResult{}, fmt.Errorf("receiving (%d of %d bytes): %w", g.n, sent, g.err)
	}
	if g.n != sent || !bytes.Equal(g.sum[:], h.Sum(nil)) {
		return streamResult{}, fmt.Errorf("sent %d bytes, received %d (contents equal: %v)", sent, g.n, bytes.Equal(g.sum[:], h.Sum(nil)))
	}
	return streamResult{Bytes: g.n, Elapsed: g.at.Sub(start)}, nil
}

// inNetns runs fn on a thread switched into the named network namespace;
// sockets fn creates stay in that namespace.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and dies with this goroutine.
		return fmt.Errorf("leaving netns %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(ns, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// linkType is the kind of a link ("wireguard", "tun"), "" when absent.
func linkType(t *testing.T, ns, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-d", "-o", "link", "show", name).CombinedOutput()
	if err != nil {
		return ""
	}
	for _, kind := range []string{"wireguard", "tun"} {
		if bytes.Contains(out, []byte(" "+kind+" ")) {
			return kind
		}
	}
	return "other: " + string(out)
}

// linkIndex is a link's ifindex in a namespace.
func linkIndex(t *testing.T, ns, name string) int {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v: %s", ns, name, err, out)
	}
	var idx int
	if _, err := fmt.Sscanf(string(out), "%d:", &idx); err != nil {
		t.Fatalf("ip link show %s: %q", name, out)
	}
	return idx
}

// deviceKey is the public key a kernel WireGuard weft0 holds, read over
// genetlink from inside its namespace.
func deviceKey(t *testing.T, ns string) string {
	t.Helper()
	var key string
	err := inNetns(ns, func() error {
		c, err := wgctrl.New()
		if err != nil {
			return err
		}
		defer c.Close()
		d, err := c.Device("weft0")
		if err != nil {
			return err
		}
		key = d.PublicKey.String()
		return nil
	})
	if err != nil {
		t.Fatalf("reading weft0 in %s: %v", ns, err)
	}
	return key
}

// eventually retries cond every 500 ms until it returns nil or within
// passes; it returns the last error.
func eventually(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", within, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string { return tail(s, 1) }

// TestVMBench measures one TCP stream for a few seconds over the overlay
// of a kernel pair and of a userspace pair (both weft nodes), and over the
// bare veth for scale, in alternating order. It prints one line per run:
// "VMBENCH PATH BYTES SECONDS MBITS".
func TestVMBench(t *testing.T) {
	weft := guestOnly(t)
	secs, err := time.ParseDuration(os.Getenv(BenchEnv) + "s")
	if err != nil || secs <= 0 {
		t.Skipf("set %s to run the benchmark", BenchEnv)
	}
	paths := []string{"veth", PlaneKernel, PlaneUserspace}
	for round := range 2 {
		if round == 1 {
			paths = []string{PlaneUserspace, PlaneKernel}
		}
		for _, path := range paths {
			b := newBed(t, weft)
			from, to, dst := b.ns[0], b.ns[1], b.ip[1]
			var nodes []*node
			if path != "veth" {
				var extra []string
				if path == PlaneUserspace {
					extra = []string{"--wg-userspace"}
				}
				x, y := b.start(0, "a", "", extra...), b.start(1, "b", "", extra...)
				b.waitPair(x, y, path, path)
				b.ping(x, y)
				dst, nodes = overlayIP(y), []*node{x, y}
			}
			r, err := tcpStream(from, to, dst, 0, secs, secs+2*time.Minute)
			for _, n := range nodes {
				n.kill()
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			fmt.Printf("VMBENCH %s %d %.3f %.2f\n", path, r.Bytes, r.Elapsed.Seconds(), r.Mbps())
		}
	}
}
