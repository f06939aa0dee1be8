package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/sched/api"
)

func TestWeftAllocator(t *testing.T) {
	state := filepath.Join(t.TempDir(), "weft-ipam.json")
	w, err := newWeftNet(WeftNetConfig{Block: "10.47.3.0/29", StateFile: state}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, task := range []string{"a", "b", "c", "d", "e"} {
		ip, err := w.allocate(task)
		if err != nil {
			t.Fatalf("allocating for %s: %v", task, err)
		}
		got = append(got, ip.String())
	}
	want := []string{"10.47.3.2", "10.47.3.3", "10.47.3.4", "10.47.3.5", "10.47.3.6"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("addresses %v, want %v (.1 is the node, .7 the broadcast)", got, want)
	}
	if _, err := w.allocate("f"); err == nil || !strings.Contains(err.Error(), "is full") {
		t.Errorf("allocating in a full block: %v", err)
	}
	if ip, _ := w.allocate("c"); ip.String() != "10.47.3.4" {
		t.Errorf("a task asking again got %v, want its own 10.47.3.4", ip)
	}
	w.release("b")
	// A restarted agent sees the same allocations and does not collide.
	w2, err := newWeftNet(WeftNetConfig{Block: "10.47.3.0/29", StateFile: state}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if ip, ok := w2.lookup("d"); !ok || ip.String() != "10.47.3.5" {
		t.Errorf("after restart d = %v %v, want 10.47.3.5", ip, ok)
	}
	if ip, err := w2.allocate("g"); err != nil || ip.String() != "10.47.3.3" {
		t.Errorf("after restart a new task got %v %v, want the freed 10.47.3.3", ip, err)
	}
	w2.releaseAllBut(map[string]bool{"a": true})
	if got := w2.allocations(); strings.Join(got, ",") != "a=10.47.3.2" {
		t.Errorf("after releaseAllBut: %v", got)
	}
	// A different block forgets old allocations.
	w3, err := newWeftNet(WeftNetConfig{Block: "10.47.9.0/24", StateFile: state}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got := w3.allocations(); len(got) != 0 {
		t.Errorf("allocations of another block survived: %v", got)
	}
	for _, bad := range []string{"", "10.47.3.0", "fd00::/64", "10.47.3.0/30"} {
		if _, err := newWeftNet(WeftNetConfig{Block: bad}, discardLogger()); err == nil {
			t.Errorf("block %q accepted", bad)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// rootOrSkip skips unless the test can manage links and iptables.
func rootOrSkip(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the weft network needs root (links, namespaces, iptables)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables is not installed")
	}
}

// testBlock is a random /24 of 10.250.0.0/16, unlikely to meet another test.
func testBlock() (block, gw string) {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	n := int(b[0])%250 + 1
	return fmt.Sprintf("10.250.%d.0/24", n), fmt.Sprintf("10.250.%d.1", n)
}

func weftLaunch(t *testing.T, img string) Launch {
	l := dkLaunch(t, img, "serve", ":8080")
	l.Spec.Networks = []api.Network{{Mode: "container", Name: WeftNetworkName}}
	l.Spec.Container.PortMappings = []api.PortMapping{{ContainerPort: 8080}}
	return l
}

func iptablesHas(t *testing.T, ns, bridge string) bool {
	args := []string{"iptables", "-w", "-S", "FORWARD"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v %s", args, err, out)
	}
	return strings.Contains(string(out), "weft network "+bridge)
}

// The weft network in the host's namespace: the container gets an address
// of the block, answers HTTP at it from the host, uses the node's DNS, keeps
// its address across an agent restart, and frees it when it stops.
func TestDockerWeftNetworkHost(t *testing.T) {
	rootOrSkip(t)
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	block, gw := testBlock()
	bridge := "wbt" + dkRand()
	state := filepath.Join(t.TempDir(), "weft-ipam.json")
	cfg := DefaultDockerConfig()
	cfg.AgentID = "weft-test-agent-" + dkRand()
	cfg.WeftNetwork = &WeftNetConfig{Block: block, Bridge: bridge, StateFile: state}
	cfg.DNS = []string{gw}
	e := dkExecutor(t, cli, cfg)
	t.Cleanup(func() {
		if err := e.RemoveWeftNetwork(); err != nil {
			t.Errorf("removing the weft network: %v", err)
		}
		if _, err := netlink.LinkByName(bridge); err == nil {
			t.Errorf("bridge %s still there after RemoveWeftNetwork", bridge)
		}
		if iptablesHas(t, "", bridge) {
			t.Errorf("iptables rules of %s still there after RemoveWeftNetwork", bridge)
		}
		if exec.Command("iptables", "-w", "-t", "nat", "-S", "WEFT-"+bridge).Run() == nil {
			t.Errorf("nat chain WEFT-%s still there after RemoveWeftNetwork", bridge)
		}
	})

	l1, l2 := weftLaunch(t, img), weftLaunch(t, img)
	h1 := dkStart(t, e, l1)
	h2 := dkStart(t, e, l2)
	ip1, ip2 := h1.IPAddresses(), h2.IPAddresses()
	prefix := strings.TrimSuffix(gw, ".1")
	if len(ip1) != 1 || ip1[0].IPAddress != prefix+".2" || ip1[0].Protocol != "IPv4" {
		t.Fatalf("first container's ipAddresses = %v, want %s.2", ip1, prefix)
	}
	if len(ip2) != 1 || ip2[0].IPAddress != prefix+".3" {
		t.Fatalf("second container's ipAddresses = %v, want %s.3", ip2, prefix)
	}
	for _, ip := range []string{ip1[0].IPAddress, ip2[0].IPAddress} {
		if got := dkGet(t, "http://"+ip+":8080/"); !strings.HasPrefix(got, "ok ") {
			t.Errorf("GET at %s = %q", ip, got)
		}
	}
	if !iptablesHas(t, "", bridge) {
		t.Errorf("no FORWARD ACCEPT rules for %s", bridge)
	}
	ins, err := cli.ContainerInspect(context.Background(), h1.(*dockerHandle).containerID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins.HostConfig.DNS) != 1 || ins.HostConfig.DNS[0] != gw {
		t.Errorf("container DNS = %v, want the node's %s", ins.HostConfig.DNS, gw)
	}

	// Agent restart: the re-adopted container keeps its address.
	e2 := dkExecutor(t, cli, cfg)
	got, err := e2.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r := got[l1.Task.ID]; r == nil || len(r.IPAddresses()) != 1 || r.IPAddresses()[0] != ip1[0] {
		t.Fatalf("re-adopted task's ipAddresses = %v, want %v", r, ip1)
	}
	// Stopping frees the address: the next container reuses .2.
	dkStop(t, got[l1.Task.ID])
	if _, ok := e2.weft.lookup(l1.Task.ID); ok {
		t.Errorf("address of a stopped task still allocated")
	}
	if name, _ := vethNames(h1.(*dockerHandle).containerID); true {
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("veth %s of a stopped container is still there", name)
		}
	}
	h3 := dkStart(t, e2, weftLaunch(t, img))
	defer dkStop(t, h3)
	if ip := h3.IPAddresses(); len(ip) != 1 || ip[0].IPAddress != prefix+".2" {
		t.Errorf("new container got %v, want the freed %s.2", ip, prefix)
	}
	// The reused address is reached at once: the node's neighbour entry
	// for .2, REACHABLE since the GET above, still holds the right MAC
	// (with a random MAC per container it pointed at the dead one for up
	// to 45 s, which made this test flaky).
	if mac := containerMAC(t, cli, h3.(*dockerHandle).containerID); mac != weftMAC(net.ParseIP(prefix+".2")).String() {
		t.Errorf("reused address's container MAC = %s, want %s", mac, weftMAC(net.ParseIP(prefix+".2")))
	}
	quick := &http.Client{Timeout: 3 * time.Second}
	if resp, err := quick.Get("http://" + prefix + ".2:8080/"); err != nil {
		t.Errorf("GET at the reused address %s.2 right after the start: %v", prefix, err)
	} else {
		resp.Body.Close()
	}
	dkStop(t, got[l2.Task.ID])

	// A host port of a weft container: reached at the node's addresses
	// (loopback included), forwarded to the container.
	hp := dkFreePort(t)
	lp := weftLaunch(t, img)
	lp.Spec.Container.PortMappings = []api.PortMapping{{ContainerPort: 8080, HostPort: dkInt(0)}}
	lp.Spec.Ports = []int{hp}
	hpH := dkStart(t, e2, lp)
	if got := dkGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hp)); !strings.HasPrefix(got, "ok ") {
		t.Errorf("GET through the host port = %q", got)
	}
	if got := dkGet(t, fmt.Sprintf("http://%s:%d/", gw, hp)); !strings.HasPrefix(got, "ok ") {
		t.Errorf("GET through the host port at the node's address = %q", got)
	}
	dkStop(t, hpH)
	out, _ := exec.Command("iptables", "-w", "-t", "nat", "-S", "WEFT-"+bridge).CombinedOutput()
	if strings.Contains(string(out), lp.Task.ID) {
		t.Errorf("host port rules of a stopped task are left:\n%s", out)
	}
}

// containerMAC reads eth0's MAC inside a running container.
func containerMAC(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	ins, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.GetFromPid(ins.State.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

// testNetns makes a named network namespace and removes it when the test ends.
func testNetns(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %v: %v %s", ns, args, err, out)
	}
}

// getFromNetns does an HTTP GET from inside a network namespace.
func getFromNetns(nsPath, addr string) (string, error) {
	type result struct {
		body string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // the thread stays in ns and dies with the goroutine
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
		r := bufio.NewReader(c)
		status, err := r.ReadString('\n')
		if err != nil {
			ch <- result{err: err}
			return
		}
		if !strings.Contains(status, "200") {
			ch <- result{err: fmt.Errorf("status %q", status)}
			return
		}
		b, err := io.ReadAll(r)
		body := string(b)
		if i := strings.Index(body, "\r\n\r\n"); i >= 0 {
			body = body[i+4:]
		}
		ch <- result{body: body, err: err}
	}()
	res := <-ch
	return res.body, res.err
}

// Two test hosts as network namespaces sharing one Docker daemon, joined by
// a routed link the way the mesh joins blocks: a container on host A's weft
// network answers host B at its overlay address. The agent's bridge lives in
// host A's namespace, not in the namespace of the Docker daemon.
func TestDockerWeftNetworkAcrossNamespaces(t *testing.T) {
	rootOrSkip(t)
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	suffix := dkRand()
	nsA, nsB := "wtA"+suffix, "wtB"+suffix
	pathA, pathB := testNetns(t, nsA), testNetns(t, nsB)
	// A <-> B point to point, like two sites' WireGuard peers.
	vethA, vethB := "wla"+suffix, "wlb"+suffix
	if out, err := exec.Command("ip", "link", "add", vethA, "netns", nsA, "type", "veth", "peer", "name", vethB, "netns", nsB).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v %s", err, out)
	}
	ipIn(t, nsA, "addr", "add", "10.251.0.1/30", "dev", vethA)
	ipIn(t, nsB, "addr", "add", "10.251.0.2/30", "dev", vethB)
	for _, c := range [][2]string{{nsA, vethA}, {nsB, vethB}, {nsA, "lo"}, {nsB, "lo"}} {
		ipIn(t, c[0], "link", "set", c[1], "up")
	}
	blockA, _ := testBlock()
	ipIn(t, nsB, "route", "add", blockA, "via", "10.251.0.1")
	ipIn(t, nsA, "route", "add", "10.250.0.0/16", "via", "10.251.0.2")

	cfg := DefaultDockerConfig()
	cfg.WeftNetwork = &WeftNetConfig{Block: blockA, NetNS: pathA}
	e := dkExecutor(t, cli, cfg)
	t.Cleanup(func() {
		if err := e.RemoveWeftNetwork(); err != nil {
			t.Errorf("removing the weft network: %v", err)
		}
	})
	h := dkStart(t, e, weftLaunch(t, img))
	defer dkStop(t, h)
	ips := h.IPAddresses()
	if len(ips) != 1 {
		t.Fatalf("ipAddresses = %v", ips)
	}
	addr := ips[0].IPAddress + ":8080"
	dkEventually(t, 15*time.Second, func() error {
		body, err := getFromNetns(pathB, addr)
		if err == nil && !strings.HasPrefix(body, "ok ") {
			err = fmt.Errorf("body %q", body)
		}
		return err
	})
	// The bridge and its rules are in host A's namespace.
	hA, err := netlink.NewHandleAt(mustNS(t, pathA))
	if err != nil {
		t.Fatal(err)
	}
	defer hA.Close()
	if _, err := hA.LinkByName(DefaultWeftBridge); err != nil {
		t.Errorf("no %s in host A's namespace: %v", DefaultWeftBridge, err)
	}
	if !iptablesHas(t, nsA, DefaultWeftBridge) {
		t.Errorf("no FORWARD rules in host A's namespace")
	}
}

func mustNS(t *testing.T, path string) netns.NsHandle {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// Close keeps the bridge while weft containers run (an agent restart must
// not cut them off) and removes it, with its rules, once none does.
func TestDockerCloseRemovesIdleWeftNetwork(t *testing.T) {
	rootOrSkip(t)
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	block, _ := testBlock()
	bridge := "wbt" + dkRand()
	cfg := DefaultDockerConfig()
	cfg.AgentID = "weft-test-agent-" + dkRand()
	cfg.StateDir = t.TempDir()
	cfg.WeftNetwork = &WeftNetConfig{Block: block, Bridge: bridge}
	first := dkExecutor(t, cli, cfg)
	t.Cleanup(func() { _ = first.RemoveWeftNetwork() })
	h := dkStart(t, first, weftLaunch(t, img))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(bridge); err != nil {
		t.Fatalf("Close removed the bridge under a running container: %v", err)
	}
	second := dkExecutor(t, cli, cfg)
	got, err := second.Recover(context.Background())
	if err != nil || got[h.(*dockerHandle).taskID] == nil {
		t.Fatalf("Recover = %v, %v", got, err)
	}
	dkStop(t, got[h.(*dockerHandle).taskID])
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(bridge); err == nil {
		t.Errorf("bridge %s left after the last weft container stopped and the agent closed", bridge)
	}
	if iptablesHas(t, "", bridge) {
		t.Errorf("iptables rules of %s left behind", bridge)
	}
}
