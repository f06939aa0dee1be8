package mesh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// wgDevice is a WireGuard interface, kernel or userspace. Both are
// configured through wgctrl: the kernel one over genetlink, the userspace
// one over its UAPI socket (/var/run/wireguard/<if>.sock).
type wgDevice interface {
	Kind() string // "kernel" | "userspace"
	Close() error
}

// errNoKernelWG means the kernel has no WireGuard module.
var errNoKernelWG = errors.New("kernel WireGuard not available")

// kernelDevice is a WireGuard link made by the kernel module.
type kernelDevice struct{ name string }

func (k *kernelDevice) Kind() string { return "kernel" }

func (k *kernelDevice) Close() error {
	l, err := netlink.LinkByName(k.name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

// createKernelDevice adds a WireGuard link; errNoKernelWG when the module
// is missing.
func createKernelDevice(name string, mtu int) (*kernelDevice, error) {
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la})
	switch {
	case err == nil:
		return &kernelDevice{name: name}, nil
	case errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EINVAL) || strings.Contains(err.Error(), "not supported") || strings.Contains(err.Error(), "Unknown device type"):
		return nil, errNoKernelWG
	case errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("creating WireGuard interface %s: %w: CAP_NET_ADMIN is missing; run as root (or grant CAP_NET_ADMIN), or pass --no-mesh for a node without the overlay", name, err)
	default:
		return nil, fmt.Errorf("creating WireGuard interface %s: %w", name, err)
	}
}

// userDevice is wireguard-go on a TUN device with its UAPI socket.
type userDevice struct {
	dev  *device.Device
	uapi net.Listener
}

func (u *userDevice) Kind() string { return "userspace" }

func (u *userDevice) Close() error {
	u.uapi.Close()
	u.dev.Close()
	return nil
}

// createUserDevice starts wireguard-go on a new TUN device (offloads on)
// and serves its UAPI socket so wgctrl can configure it.
func createUserDevice(name string, mtu int, log func(string)) (*userDevice, error) {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("creating TUN device %s: /dev/net/tun is missing (load the tun module, or give the container --device /dev/net/tun), or pass --no-mesh for a node without the overlay: %w", name, err)
		case errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM):
			return nil, fmt.Errorf("creating TUN device %s: CAP_NET_ADMIN is missing; run as root (or grant CAP_NET_ADMIN), or pass --no-mesh for a node without the overlay: %w", name, err)
		case errors.Is(err, syscall.EBUSY):
			return nil, fmt.Errorf("creating TUN device %s: the interface is in use (is another weft running? pass --interface NAME): %w", name, err)
		}
		return nil, fmt.Errorf("creating TUN device %s: %w", name, err)
	}
	logger := &device.Logger{
		Verbosef: func(string, ...any) {},
		Errorf:   func(f string, a ...any) { log(fmt.Sprintf(f, a...)) },
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), logger)
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("opening the UAPI socket of %s in /var/run/wireguard: %w (another node with the same interface name shares this directory? give each its own mount namespace, or pass --interface)", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		f.Close()
		dev.Close()
		return nil, fmt.Errorf("listening on the UAPI socket of %s: %w", name, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	return &userDevice{dev: dev, uapi: l}, nil
}

// underlayMTU is the MTU of the interface holding the default route, else
// the largest MTU of an up non-loopback interface, else 1500.
func underlayMTU(skip string) int {
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name != skip {
				return l.Attrs().MTU
			}
		}
	}
	best := 0
	links, _ := netlink.LinkList()
	for _, l := range links {
		a := l.Attrs()
		if a.Name == skip || a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		if a.MTU > best {
			best = a.MTU
		}
	}
	if best == 0 {
		return 1500
	}
	return best
}

// overlayMTU applies the default rule: underlay - 80, at least 1280.
func overlayMTU(configured, underlay int) int {
	if configured > 0 {
		return configured
	}
	m := underlay - MTUOverhead
	if m < MinMTU {
		m = MinMTU
	}
	return m
}

// checkOverlap refuses an overlay that overlaps a local route (other than
// the default route and routes on our own interface).
func checkOverlap(overlay netip.Prefix, ifname string) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		dst := netip.PrefixFrom(a, ones)
		dev := ""
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		// The agent's container bridge (weftbr0) holds this node's own
		// block while weft containers run, also across a restart of the
		// node: that route is the overlay's, not a conflict.
		if dev == ifname || strings.HasPrefix(dev, ContainerBridgePrefix) {
			continue
		}
		if dst.Overlaps(overlay) {
			return fmt.Errorf("mesh: overlay %s overlaps the local route %s dev %s; choose another range with --overlay-cidr", overlay, dst, dev)
		}
	}
	return nil
}

// localAddrs lists this host's usable unicast addresses and their subnets
// (no loopback, no link-local, not the overlay interface or range).
func localAddrs(skipIf string, overlay netip.Prefix) ([]netip.Addr, []netip.Prefix) {
	var addrs []netip.Addr
	var pfxs []netip.Prefix
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Name == skipIf || ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || !underlayInterface(ifc) {
			continue
		}
		as, _ := ifc.Addrs()
		for _, a := range as {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() || (overlay.IsValid() && overlay.Contains(ip)) {
				continue
			}
			ones, _ := ipn.Mask.Size()
			addrs = append(addrs, ip)
			pfxs = append(pfxs, netip.PrefixFrom(ip, ones).Masked())
		}
	}
	return addrs, pfxs
}

// ContainerBridgePrefix names the bridges the agent puts containers of the
// weft network on (weftbr0); their routes are part of the overlay.
const ContainerBridgePrefix = "weftbr"

// virtualPrefixes name interfaces whose addresses are no way to reach this
// host from another one (container bridges, other overlays).
var virtualPrefixes = []string{ContainerBridgePrefix, "docker", "br-", "veth", "cni", "flannel", "cali", "virbr", "lxc", "podman", "kube", "weave", "vxlan", "tailscale", "zt"}

// underlayInterface reports whether peers could reach this host at the
// interface's addresses: not a tunnel (no hardware address: TUN, WireGuard,
// PPP), not point-to-point, not a container bridge. Offering a tunnel's
// address as an endpoint would carry WireGuard inside another tunnel, past
// its MTU (sendmmsg: message too long).
func underlayInterface(ifc net.Interface) bool {
	if len(ifc.HardwareAddr) == 0 || ifc.Flags&net.FlagPointToPoint != 0 {
		return false
	}
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(ifc.Name, p) {
			return false
		}
	}
	return true
}
