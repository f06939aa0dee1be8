package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/testbin"
)

// nsHTTPClient is an HTTP client whose connections start in a network
// namespace.
func nsHTTPClient(nsPath string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			ns, err := netns.GetFromPath(nsPath)
			if err != nil {
				ch <- res{err: err}
				return
			}
			defer ns.Close()
			if err := netns.Set(ns); err != nil {
				ch <- res{err: err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMeshNode runs `weft mesh node` in a namespace, with a private
// /run/wireguard (wireguard-go's socket directory is shared by all network
// namespaces), and kills it by PID when the test ends.
func startMeshNode(t *testing.T, weft, ns string, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	script := `mkdir -p /run/wireguard && mount -t tmpfs weft-test /run/wireguard && exec "$0" "$@"`
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "sh", "-c", script, weft, "mesh", "node"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting weft mesh node in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("weft mesh node in %s:\n%s", ns, tailLines(out.String(), 30))
		}
	})
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDockerWeftOverlayAcrossHosts is the multi-host story: two hosts
// (network namespaces on one underlay link, sharing this machine's Docker
// daemon) run the real `weft mesh node`; a container started on host A's
// weft network, with an address of A's block, answers HTTP from host B over
// the WireGuard overlay at that address.
func TestDockerWeftOverlayAcrossHosts(t *testing.T) {
	rootOrSkip(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun for the overlay")
	}
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	weft := testbin.Weft(t)
	tok, err := exec.Command(weft, "mesh", "token").Output()
	if err != nil {
		t.Fatalf("weft mesh token: %v", err)
	}
	token := strings.TrimSpace(string(tok))

	suffix := dkRand()
	nsA, nsB := "woa"+suffix, "wob"+suffix
	pathA, pathB := testNetns(t, nsA), testNetns(t, nsB)
	vA, vB := "ula"+suffix, "ulb"+suffix
	if out, err := exec.Command("ip", "link", "add", vA, "netns", nsA, "type", "veth", "peer", "name", vB, "netns", nsB).CombinedOutput(); err != nil {
		t.Fatalf("underlay veth: %v %s", err, out)
	}
	ipIn(t, nsA, "addr", "add", "192.168.77.1/24", "dev", vA)
	ipIn(t, nsB, "addr", "add", "192.168.77.2/24", "dev", vB)
	for _, c := range [][2]string{{nsA, vA}, {nsB, vB}, {nsA, "lo"}, {nsB, "lo"}} {
		ipIn(t, c[0], "link", "set", c[1], "up")
	}
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	x := int(b[0])%200 + 20
	blockA, blockB := fmt.Sprintf("10.47.%d.0/24", x), fmt.Sprintf("10.47.%d.0/24", x+1)
	common := []string{"--token", token, "--agent-addr", "127.0.0.1:5051", "--wg-userspace"}
	startMeshNode(t, weft, nsA, append([]string{"--node-name", "a", "--site", "aws", "--data-dir", t.TempDir(),
		"--gossip-addr", "192.168.77.1:7946", "--block", blockA}, common...)...)
	startMeshNode(t, weft, nsB, append([]string{"--node-name", "b", "--site", "london", "--data-dir", t.TempDir(),
		"--gossip-addr", "192.168.77.2:7946", "--block", blockB, "--join", "192.168.77.1"}, common...)...)

	// The agent on host A: its bridge is in A's namespace.
	cfg := DefaultDockerConfig()
	cfg.WeftNetwork = &WeftNetConfig{Block: blockA, NetNS: pathA}
	e := dkExecutor(t, cli, cfg)
	t.Cleanup(func() { _ = e.RemoveWeftNetwork() })
	h := dkStart(t, e, weftLaunch(t, img))
	defer dkStop(t, h)
	ips := h.IPAddresses()
	want := fmt.Sprintf("10.47.%d.2", x)
	if len(ips) != 1 || ips[0].IPAddress != want {
		t.Fatalf("ipAddresses = %v, want %s", ips, want)
	}

	// Host B reaches it over the overlay once the mesh has formed.
	fromB := nsHTTPClient(pathB)
	dkEventually(t, 60*time.Second, func() error {
		resp, err := fromB.Get("http://" + want + ":8080/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(body), "ok ") {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})
	// And it went over WireGuard: B's only route to A's block is the overlay.
	out, err := exec.Command("ip", "-n", nsB, "route", "get", want).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dev weft0") {
		t.Errorf("host B routes %s via %q (%v); want the overlay weft0", want, strings.TrimSpace(string(out)), err)
	}
}
