package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// WeftNetConfig is the node's container network "weft": containers get an
// address of the node's overlay block on a veth whose other end is on the
// node's bridge, which holds the block's .1. The mesh routes whole blocks
// between nodes over WireGuard, so containers on different sites reach each
// other directly.
type WeftNetConfig struct {
	// Block is the node's overlay block, e.g. 10.47.3.0/24. The node is .1;
	// containers get .2 upwards.
	Block string
	// Bridge is the bridge's name. Default "weftbr0".
	Bridge string
	// NetNS is the path of the network namespace holding the bridge (e.g.
	// /run/netns/host1). Empty: the agent's own namespace, which is what
	// `weft agent` uses wherever it runs.
	NetNS string
	// StateFile keeps address allocations across agent restarts, so a
	// re-adopted container keeps its address and no new one collides with
	// it. Empty: allocations live in memory only.
	StateFile string
	// Masquerade is the overlay range (10.47.0.0/16): traffic from the block
	// to anything outside it is masqueraded, so containers reach the
	// underlay and the internet. Empty: no NAT.
	Masquerade string
	// MTU of the container's interface. 0: 1420 (WireGuard over a 1500
	// underlay).
	MTU int
}

// DefaultWeftBridge is the bridge name of the weft network.
const DefaultWeftBridge = "weftbr0"

type weftNet struct {
	cfg   WeftNetConfig
	block *net.IPNet
	gw    net.IP
	log   *slog.Logger

	mu      sync.Mutex
	byTask  map[string]string // task id -> address
	fwReady bool
}

func newWeftNet(cfg WeftNetConfig, log *slog.Logger) (*weftNet, error) {
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultWeftBridge
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1420
	}
	_, block, err := net.ParseCIDR(cfg.Block)
	if err != nil || block.IP.To4() == nil {
		return nil, fmt.Errorf("weft network: block %q is not an IPv4 CIDR such as 10.47.3.0/24", cfg.Block)
	}
	if ones, _ := block.Mask.Size(); ones > 29 {
		return nil, fmt.Errorf("weft network: block %s is too small for containers", block)
	}
	if cfg.Masquerade != "" {
		if _, _, err := net.ParseCIDR(cfg.Masquerade); err != nil {
			return nil, fmt.Errorf("weft network: masquerade range %q: %w", cfg.Masquerade, err)
		}
	}
	w := &weftNet{cfg: cfg, block: block, gw: ipAdd(block.IP, 1), log: log, byTask: map[string]string{}}
	if err := w.load(); err != nil {
		return nil, err
	}
	return w, nil
}

func ipAdd(ip net.IP, n uint32) net.IP {
	v := binary.BigEndian.Uint32(ip.To4()) + n
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, v)
	return out
}

type weftState struct {
	Block string            `json:"block"`
	Tasks map[string]string `json:"tasks"`
}

func (w *weftNet) load() error {
	if w.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(w.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("weft network: reading %s: %w", w.cfg.StateFile, err)
	}
	var s weftState
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("weft network: %s is corrupt (%v); remove it and restart the agent", w.cfg.StateFile, err)
	}
	if s.Block != w.block.String() {
		w.log.Warn("weft block changed; forgetting old allocations", "old", s.Block, "new", w.block)
		return nil
	}
	for t, ip := range s.Tasks {
		w.byTask[t] = ip
	}
	return nil
}

// saveLocked writes the allocations atomically. w.mu is held.
func (w *weftNet) saveLocked() {
	if w.cfg.StateFile == "" {
		return
	}
	b, _ := json.Marshal(weftState{Block: w.block.String(), Tasks: w.byTask})
	if err := os.MkdirAll(filepath.Dir(w.cfg.StateFile), 0o755); err != nil {
		w.log.Error("saving weft allocations", "err", err)
		return
	}
	tmp := w.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		w.log.Error("saving weft allocations", "err", err)
		return
	}
	if err := os.Rename(tmp, w.cfg.StateFile); err != nil {
		w.log.Error("saving weft allocations", "err", err)
	}
}

// allocate returns the task's address, choosing the lowest free one of
// .2 up to the last before broadcast.
func (w *weftNet) allocate(task string) (net.IP, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s, ok := w.byTask[task]; ok {
		return net.ParseIP(s).To4(), nil
	}
	used := map[string]bool{}
	for _, s := range w.byTask {
		used[s] = true
	}
	ones, bits := w.block.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	for i := uint32(2); i < size-1; i++ {
		ip := ipAdd(w.block.IP, i)
		if !used[ip.String()] {
			w.byTask[task] = ip.String()
			w.saveLocked()
			return ip, nil
		}
	}
	return nil, fmt.Errorf("block %s is full: %d containers hold every address", w.block, len(w.byTask))
}

func (w *weftNet) lookup(task string) (net.IP, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.byTask[task]
	if !ok {
		return nil, false
	}
	return net.ParseIP(s).To4(), true
}

func (w *weftNet) release(task string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.byTask[task]; ok {
		delete(w.byTask, task)
		w.saveLocked()
	}
}

func (w *weftNet) releaseAllBut(keep map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for t := range w.byTask {
		if !keep[t] {
			delete(w.byTask, t)
			changed = true
		}
	}
	if changed {
		w.saveLocked()
	}
}

// hostHandle is a netlink handle in the bridge's namespace.
func (w *weftNet) hostHandle() (*netlink.Handle, error) {
	if w.cfg.NetNS == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(w.cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", w.cfg.NetNS, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// inHostNS runs f on a thread in the bridge's namespace (for /proc/sys and
// for commands, which inherit the thread's namespace).
func (w *weftNet) inHostNS(f func() error) error {
	if w.cfg.NetNS == "" {
		return f()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(w.cfg.NetNS)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening network namespace %s: %w", w.cfg.NetNS, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", w.cfg.NetNS, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: keep it locked so that it
		// dies with this goroutine instead of serving others.
		return errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", w.cfg.NetNS, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// ensureBridge creates the bridge with the block's gateway address (once),
// enables forwarding and accepts forwarded traffic of the bridge.
func (w *weftNet) ensureBridge(h *netlink.Handle) (netlink.Link, error) {
	br, err := h.LinkByName(w.cfg.Bridge)
	if _, notFound := err.(netlink.LinkNotFoundError); notFound {
		la := netlink.NewLinkAttrs()
		la.Name = w.cfg.Bridge
		la.MTU = w.cfg.MTU
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("creating bridge %s: %w", w.cfg.Bridge, err)
		}
		br, err = h.LinkByName(w.cfg.Bridge)
	}
	if err != nil {
		return nil, fmt.Errorf("finding bridge %s: %w", w.cfg.Bridge, err)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: w.gw, Mask: w.block.Mask}}
	if err := h.AddrReplace(br, gw); err != nil {
		return nil, fmt.Errorf("giving bridge %s address %s: %w", w.cfg.Bridge, gw.IPNet, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bringing bridge %s up: %w", w.cfg.Bridge, err)
	}
	w.mu.Lock()
	ready := w.fwReady
	w.mu.Unlock()
	if ready {
		return br, nil
	}
	err = w.inHostNS(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enabling ip_forward (the agent needs root or CAP_NET_ADMIN): %w", err)
		}
		// Host ports of weft containers: DNAT from the node's own addresses
		// (loopback included, hence route_localnet and the masquerade).
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+w.cfg.Bridge+"/route_localnet", []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enabling route_localnet on %s: %w", w.cfg.Bridge, err)
		}
		if iptables("-t", "nat", "-S", w.portsChain()) != nil {
			if err := iptables("-t", "nat", "-N", w.portsChain()); err != nil {
				return err
			}
		}
		for _, r := range w.rules() {
			if err := iptablesEnsure(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.fwReady = true
	w.mu.Unlock()
	return br, nil
}

// rules are the iptables rules of the bridge: table, chain, rule.
func (w *weftNet) rules() [][]string {
	comment := []string{"-m", "comment", "--comment", "weft network " + w.cfg.Bridge}
	rules := [][]string{
		append([]string{"filter", "FORWARD", "-i", w.cfg.Bridge}, append(comment, "-j", "ACCEPT")...),
		append([]string{"filter", "FORWARD", "-o", w.cfg.Bridge}, append(comment, "-j", "ACCEPT")...),
	}
	if w.cfg.Masquerade != "" {
		rules = append(rules, append([]string{"nat", "POSTROUTING", "-s", w.block.String(), "!", "-d", w.cfg.Masquerade}, append(comment, "-j", "MASQUERADE")...))
	}
	local := []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	rules = append(rules,
		append(append([]string{"nat", "PREROUTING"}, local...), append(comment, "-j", w.portsChain())...),
		append(append([]string{"nat", "OUTPUT"}, local...), append(comment, "-j", w.portsChain())...),
		append([]string{"nat", "POSTROUTING", "-o", w.cfg.Bridge, "-m", "addrtype", "--src-type", "LOCAL"}, append(comment, "-j", "MASQUERADE")...),
	)
	return rules
}

// portsChain is the nat chain holding the host ports of weft containers.
func (w *weftNet) portsChain() string { return "WEFT-" + w.cfg.Bridge }

// weftPort is one host port forwarded to a weft container.
type weftPort struct {
	Proto         string
	HostPort      int
	ContainerPort int
}

func taskComment(task string) string { return "weft task " + task }

// publish forwards the task's host ports to its address.
func (w *weftNet) publish(task string, ip net.IP, ports []weftPort) error {
	if len(ports) == 0 {
		return nil
	}
	return w.inHostNS(func() error {
		for _, p := range ports {
			err := iptables("-t", "nat", "-A", w.portsChain(), "-p", p.Proto, "--dport", fmt.Sprint(p.HostPort),
				"-m", "comment", "--comment", taskComment(task),
				"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", ip, p.ContainerPort))
			if err != nil {
				return fmt.Errorf("publishing host port %d/%s: %w", p.HostPort, p.Proto, err)
			}
		}
		return nil
	})
}

// unpublish removes the task's host port rules.
func (w *weftNet) unpublish(task string) {
	err := w.inHostNS(func() error {
		out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", w.portsChain()).Output()
		if err != nil {
			return nil // no chain, no rules
		}
		want := `"` + taskComment(task) + `"`
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, want) {
				continue
			}
			args := splitQuoted(line)
			args[0] = "-D"
			if err := iptables(append([]string{"-t", "nat"}, args...)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		w.log.Warn("removing host ports", "task", task, "err", err)
	}
}

// splitQuoted splits an iptables -S line into words, keeping "quoted words"
// whole (without the quotes).
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// iptablesEnsure inserts rule (table, chain, spec...) at the top of its
// chain unless it is there.
func iptablesEnsure(rule []string) error {
	table, chain, spec := rule[0], rule[1], rule[2:]
	if iptables(append([]string{"-t", table, "-C", chain}, spec...)...) == nil {
		return nil
	}
	return iptables(append([]string{"-t", table, "-I", chain, "1"}, spec...)...)
}

// teardown removes the bridge and its iptables rules. Containers still
// attached lose their network.
func (w *weftNet) teardown() error {
	var errs []error
	err := w.inHostNS(func() error {
		for _, r := range w.rules() {
			for iptables(append([]string{"-t", r[0], "-C", r[1]}, r[2:]...)...) == nil {
				if err := iptables(append([]string{"-t", r[0], "-D", r[1]}, r[2:]...)...); err != nil {
					return err
				}
			}
		}
		if iptables("-t", "nat", "-S", w.portsChain()) == nil {
			if err := iptables("-t", "nat", "-F", w.portsChain()); err != nil {
				return err
			}
			if err := iptables("-t", "nat", "-X", w.portsChain()); err != nil {
				return err
			}
		}
		return nil
	})
	errs = append(errs, err)
	h, err := w.hostHandle()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer h.Close()
	if br, err := h.LinkByName(w.cfg.Bridge); err == nil {
		if err := h.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("deleting bridge %s: %w", w.cfg.Bridge, err))
		}
	}
	w.mu.Lock()
	w.fwReady = false
	w.mu.Unlock()
	return errors.Join(errs...)
}

// attach gives the container (by its init pid) an address of the block: a
// veth pair, eth0 inside with the address and a default route via .1, the
// other end on the bridge.
func (w *weftNet) attach(task, containerID string, pid int) (ip net.IP, err error) {
	ip, err = w.allocate(task)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.release(task)
		}
	}()
	h, err := w.hostHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	br, err := w.ensureBridge(h)
	if err != nil {
		return nil, err
	}
	cns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("opening the container's network namespace (pid %d): %w", pid, err)
	}
	defer cns.Close()

	hostName, peerName := vethNames(containerID)
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	la.MTU = w.cfg.MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peerName, PeerNamespace: netlink.NsFd(int(cns))}
	if err := h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("creating veth %s: %w", hostName, err)
	}
	hostLink, err := h.LinkByName(hostName)
	if err == nil {
		err = h.LinkSetMaster(hostLink, br)
	}
	if err == nil {
		err = h.LinkSetUp(hostLink)
	}
	if err != nil {
		if hostLink != nil {
			_ = h.LinkDel(hostLink)
		}
		return nil, fmt.Errorf("putting %s on bridge %s: %w", hostName, w.cfg.Bridge, err)
	}

	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		_ = h.LinkDel(hostLink)
		return nil, fmt.Errorf("entering the container's network namespace: %w", err)
	}
	defer ch.Close()
	if err := w.configureInside(ch, peerName, ip); err != nil {
		_ = h.LinkDel(hostLink)
		return nil, err
	}
	w.log.Info("container joined the weft network", "task", task, "ip", ip, "veth", hostName)
	return ip, nil
}

func (w *weftNet) configureInside(ch *netlink.Handle, peerName string, ip net.IP) error {
	link, err := ch.LinkByName(peerName)
	if err != nil {
		return fmt.Errorf("finding %s in the container: %w", peerName, err)
	}
	if err := ch.LinkSetName(link, "eth0"); err != nil {
		return fmt.Errorf("naming the container's interface eth0: %w", err)
	}
	// The MAC follows the address, as Docker's bridge does: a task that
	// gets an address freed by an earlier one must not meet the earlier
	// one's MAC in the neighbour caches of the node and of the other
	// containers, which keep a REACHABLE entry for 15–45 s and send there
	// until it goes stale (measured: 28 s of silence on reuse).
	if err := ch.LinkSetHardwareAddr(link, weftMAC(ip)); err != nil {
		return fmt.Errorf("giving the container's eth0 its MAC: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: w.block.Mask}}
	if err := ch.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("giving the container %s: %w", addr.IPNet, err)
	}
	if err := ch.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing the container's eth0 up: %w", err)
	}
	if lo, err := ch.LinkByName("lo"); err == nil {
		_ = ch.LinkSetUp(lo)
	}
	if err := ch.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: w.gw}); err != nil {
		return fmt.Errorf("adding the container's default route via %s: %w", w.gw, err)
	}
	return nil
}

// weftMAC is the container MAC for an address of the block: locally
// administered unicast 02:57 ("W") followed by the IPv4 address, so the
// same address always has the same MAC.
func weftMAC(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, 0x57, v4[0], v4[1], v4[2], v4[3]}
}

func vethNames(containerID string) (host, peer string) {
	id := containerID
	if len(id) > 11 {
		id = id[:11]
	}
	return "wv" + id, "wp" + id
}

// detach deletes the container's veth pair (CNI's DEL), once the container
// is gone or going, and frees the task's address. The kernel deletes the
// pair with the container's namespace too, but not while anything still
// holds that namespace, so the agent does not rely on it.
func (w *weftNet) detach(task, containerID string) {
	w.release(task)
	w.unpublish(task)
	h, err := w.hostHandle()
	if err != nil {
		w.log.Warn("detaching from the weft network", "task", task, "err", err)
		return
	}
	defer h.Close()
	name, _ := vethNames(containerID)
	if l, err := h.LinkByName(name); err == nil {
		if err := h.LinkDel(l); err != nil {
			w.log.Warn("deleting veth", "veth", name, "err", err)
		}
	}
}

// allocations lists task -> address, sorted by task (for tests and status).
func (w *weftNet) allocations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.byTask))
	for t, ip := range w.byTask {
		out = append(out, t+"="+ip)
	}
	sort.Strings(out)
	return out
}

// RemoveWeftNetwork removes the weft bridge and its iptables rules. Call it
// when the node leaves for good (not on a restart: running containers keep
// their network until then).
func (e *DockerExecutor) RemoveWeftNetwork() error {
	if e.weft == nil {
		return nil
	}
	return e.weft.teardown()
}
