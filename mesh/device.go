package mesh

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
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

// The data planes: the kernel module, or wireguard-go on a TUN device.
const (
	PlaneKernel    = "kernel"
	PlaneUserspace = "userspace"
)

// tunDevicePath is the clone device wireguard-go opens.
const tunDevicePath = "/dev/net/tun"

// noMeshHint ends every data-plane error: the way to run without one.
const noMeshHint = "or pass --no-mesh for a local-only node (gossip only, no overlay)"

// DataPlaneError says why this host cannot run the WireGuard overlay: what
// is missing and how to run. Its text is meant to be shown alone.
type DataPlaneError struct {
	Missing []string // "CAP_NET_ADMIN", "/dev/net/tun"
	msg     string
}

func (e *DataPlaneError) Error() string { return e.msg }

// hostFacts are what decides the data plane, gathered by probeHost.
type hostFacts struct {
	KernelWG bool // the wireguard generic-netlink family exists
	NetAdmin bool // CAP_NET_ADMIN is effective over this network namespace
	// ForeignNetNS: CAP_NET_ADMIN is effective, but only in a user
	// namespace that does not own the network namespace (NetAdmin false).
	ForeignNetNS bool
	TUN          error // nil when /dev/net/tun opens, else why it does not
}

const capFix = "run weft as root (or grant CAP_NET_ADMIN: setcap cap_net_admin+ep, or docker run --cap-add NET_ADMIN), " + noMeshHint

func capError() *DataPlaneError {
	return &DataPlaneError{Missing: []string{"CAP_NET_ADMIN"}, msg: "the WireGuard overlay needs CAP_NET_ADMIN, which this process lacks: " + capFix}
}

// capRefusedError is CAP_NET_ADMIN held, but not over the network
// namespace: a user namespace (rootless container) that does not own it.
func capRefusedError() *DataPlaneError {
	return &DataPlaneError{Missing: []string{"CAP_NET_ADMIN"}, msg: "the WireGuard overlay needs CAP_NET_ADMIN over this network namespace, " +
		"and this process holds it only in a user namespace that does not own the network namespace (a rootless container?): " + capFix}
}

// refusedError is EPERM from the kernel although the probe found
// CAP_NET_ADMIN effective over the network namespace: a seccomp or LSM
// policy (or a namespace change the probe did not see).
func refusedError(what string) *DataPlaneError {
	return &DataPlaneError{Missing: []string{"CAP_NET_ADMIN"}, msg: what + " was refused (operation not permitted) although CAP_NET_ADMIN is effective: " +
		"a seccomp or security-module policy forbids it (in a container: --cap-add NET_ADMIN without a restrictive --security-opt); " + capFix}
}

func tunMissingError(kernelWG bool) *DataPlaneError {
	why := "there is no kernel WireGuard module, and " + tunDevicePath + " does not exist"
	if kernelWG {
		why = "--wg-userspace needs " + tunDevicePath + ", which does not exist (drop --wg-userspace to use kernel WireGuard)"
	}
	return &DataPlaneError{Missing: []string{tunDevicePath}, msg: "the WireGuard overlay needs a TUN device: " + why + ": " +
		"load the tun module (modprobe tun), or in a container pass --device /dev/net/tun, " + noMeshHint}
}

func tunDeniedError(err error) *DataPlaneError {
	return &DataPlaneError{Missing: []string{tunDevicePath}, msg: fmt.Sprintf("the WireGuard overlay needs a TUN device, and %s cannot be opened (%v): "+
		"in a container pass --device /dev/net/tun (docker run --device /dev/net/tun --cap-add NET_ADMIN), "+noMeshHint, tunDevicePath, errnoText(err))}
}

// choosePlane is the probe's decision: the kernel module when it exists
// (unless userspace is forced), else wireguard-go on /dev/net/tun; either
// needs CAP_NET_ADMIN. The error names everything that is missing.
func choosePlane(f hostFacts, forceUserspace bool) (string, error) {
	kernel := f.KernelWG && !forceUserspace
	tunMissing := f.TUN != nil && errors.Is(f.TUN, fs.ErrNotExist)
	switch {
	case !f.NetAdmin && !kernel && tunMissing:
		why := "with no kernel WireGuard module"
		if f.KernelWG {
			why = "with --wg-userspace"
		}
		return "", &DataPlaneError{Missing: []string{"CAP_NET_ADMIN", tunDevicePath}, msg: "the WireGuard overlay needs CAP_NET_ADMIN and, " + why + ", " + tunDevicePath +
			"; this process has neither: run weft as root with the tun module loaded (modprobe tun; in a container: --cap-add NET_ADMIN --device /dev/net/tun), " + noMeshHint}
	case !f.NetAdmin && f.ForeignNetNS:
		return "", capRefusedError()
	case !f.NetAdmin:
		return "", capError()
	case kernel:
		return PlaneKernel, nil
	case tunMissing:
		return "", tunMissingError(f.KernelWG)
	case f.TUN != nil:
		return "", tunDeniedError(f.TUN)
	}
	return PlaneUserspace, nil
}

// probeHost gathers the facts: is the wireguard genetlink family there
// (asking for it loads the module when it can), does /dev/net/tun open,
// and is CAP_NET_ADMIN effective.
func probeHost() hostFacts {
	var f hostFacts
	if _, err := netlink.GenlFamilyGet("wireguard"); err == nil {
		f.KernelWG = true
	}
	if hasNetAdmin() {
		f.NetAdmin = true
		if owns, ok := ownsNetNS(); ok && !owns {
			f.NetAdmin, f.ForeignNetNS = false, true
		}
	}
	// Opening the clone device creates nothing; TUNSETIFF would.
	if fd, err := os.OpenFile(tunDevicePath, os.O_RDWR, 0); err != nil {
		f.TUN = err
	} else {
		fd.Close()
	}
	return f
}

// capNetAdmin is CAP_NET_ADMIN's bit in the capability sets.
const capNetAdmin = 12

// hasNetAdmin reads the effective capability set of this process. When it
// cannot be read the answer is yes: the operations that need the
// capability still report EPERM.
func hasNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	eff, ok := effectiveCaps(string(b))
	return !ok || eff&(1<<capNetAdmin) != 0
}

// ownsNetNS reports whether this process's user namespace owns its network
// namespace or is an ancestor of its owner: only then do its capabilities
// apply to the network namespace. ok is false when the kernel cannot tell
// (no namespace ioctls).
func ownsNetNS() (owns, ok bool) {
	self, err := nsInode("/proc/self/ns/user")
	if err != nil {
		return false, false
	}
	netns, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return false, false
	}
	defer netns.Close()
	fd, err := unix.IoctlRetInt(int(netns.Fd()), unix.NS_GET_USERNS)
	if errors.Is(err, unix.EPERM) {
		// The owner lies outside this process's user namespace.
		return false, true
	}
	if err != nil {
		return false, false
	}
	for {
		var st unix.Stat_t
		err := unix.Fstat(fd, &st)
		if err != nil {
			unix.Close(fd)
			return false, false
		}
		if st.Ino == self {
			unix.Close(fd)
			return true, true
		}
		// EPERM: the parent lies outside this process's user namespace,
		// so this namespace is no ancestor of the owner.
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return false, true
		}
		fd = parent
	}
}

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// effectiveCaps parses the CapEff line of /proc/<pid>/status.
func effectiveCaps(status string) (uint64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// errnoText is the bare reason of a system call error ("permission
// denied"), without the path and call it is wrapped in.
func errnoText(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	return err.Error()
}

// CheckDataPlane probes this host for the WireGuard overlay before
// anything starts: it returns the data plane a node would use ("kernel",
// or "userspace" when the module is missing or userspace is forced), or a
// *DataPlaneError naming what is missing and how to run.
func CheckDataPlane(forceUserspace bool) (string, error) {
	return choosePlane(probeHost(), forceUserspace)
}

// kernelDevice is a WireGuard link made by the kernel module.
type kernelDevice struct{ name string }

func (k *kernelDevice) Kind() string { return PlaneKernel }

func (k *kernelDevice) Close() error {
	l, err := netlink.LinkByName(k.name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

// createKernelDevice adds a WireGuard link when the probe picks the kernel
// module; errNoKernelWG when it picks wireguard-go instead, or a
// *DataPlaneError when neither can run.
func createKernelDevice(name string, mtu int) (*kernelDevice, error) {
	plane, err := CheckDataPlane(false)
	if err != nil {
		return nil, err
	}
	if plane != PlaneKernel {
		return nil, errNoKernelWG
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	err = netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la})
	switch {
	case err == nil:
		return &kernelDevice{name: name}, nil
	case errors.Is(err, syscall.EOPNOTSUPP):
		// The genetlink family is there but rtnetlink knows no such
		// link kind: treat it as no module.
		return nil, errNoKernelWG
	case errors.Is(err, syscall.EPERM):
		// The probe found CAP_NET_ADMIN, yet the kernel refuses.
		return nil, refusedError("creating the WireGuard interface " + name)
	case errors.Is(err, syscall.EEXIST):
		return nil, fmt.Errorf("creating WireGuard interface %s: an interface of that name exists already (is another weft running? pass --interface NAME)", name)
	default:
		return nil, fmt.Errorf("creating WireGuard interface %s: %w", name, err)
	}
}

// userDevice is wireguard-go on a TUN device with its UAPI socket.
type userDevice struct {
	dev   *device.Device
	uapi  net.Listener
	mu    sync.Mutex
	buf   bytes.Buffer // state's UAPI text, kept between calls
	watch *watchTUN    // the TUN, with the probe back-off's tripwire
}

// state reads the device's peers and counters in-process: the text of a
// UAPI "get" written straight into a buffer. The engine looks every
// second; through wgctrl each look listed /var/run/wireguard, asked
// genetlink for a kernel device first, and dialled the UAPI socket, whose
// server started a goroutine per connection (about 20 syscalls and a
// dozen wake-ups, on a node that otherwise sleeps).
func (u *userDevice) state() (*wgtypes.Device, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.buf.Reset()
	if err := u.dev.IpcGetOperation(&u.buf); err != nil {
		return nil, err
	}
	return parseUAPI(u.buf.Bytes())
}

// configure applies cfg in-process, as wgctrl would through the UAPI
// socket (a keepalive poke is two of these).
func (u *userDevice) configure(cfg wgtypes.Config) error {
	var b strings.Builder
	writeUAPI(&b, cfg)
	return u.dev.IpcSet(b.String())
}

// writeUAPI writes cfg as the body of a UAPI "set", as wgctrl's userspace
// client does.
func writeUAPI(b *strings.Builder, cfg wgtypes.Config) {
	if cfg.PrivateKey != nil {
		fmt.Fprintf(b, "private_key=%s\n", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		fmt.Fprintf(b, "listen_port=%d\n", *cfg.ListenPort)
	}
	if cfg.FirewallMark != nil {
		fmt.Fprintf(b, "fwmark=%d\n", *cfg.FirewallMark)
	}
	if cfg.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range cfg.Peers {
		fmt.Fprintf(b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			b.WriteString("remove=true\n")
		}
		if p.UpdateOnly {
			b.WriteString("update_only=true\n")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(b, "endpoint=%s\n", p.Endpoint.String())
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
		}
		for _, ip := range p.AllowedIPs {
			fmt.Fprintf(b, "allowed_ip=%s\n", ip.String())
		}
	}
}

// lastKey remembers the latest private key publicOf derived: the device is
// read at every probe, and a curve25519 multiplication each time was a
// sizeable part of an idle node's reconcile.
var lastKey struct {
	sync.Mutex
	priv, pub wgtypes.Key
	ok        bool
}

// publicOf is priv.PublicKey(), remembered for the latest priv.
func publicOf(priv wgtypes.Key) wgtypes.Key {
	lastKey.Lock()
	defer lastKey.Unlock()
	if !lastKey.ok || lastKey.priv != priv {
		lastKey.priv, lastKey.pub, lastKey.ok = priv, priv.PublicKey(), true
	}
	return lastKey.pub
}

// parseUAPI reads the text of a UAPI "get" (key=value lines, a peer per
// public_key) as wgctrl's userspace client does.
func parseUAPI(b []byte) (*wgtypes.Device, error) {
	d := &wgtypes.Device{Type: wgtypes.Userspace}
	var p *wgtypes.Peer
	var hsSec, hsNsec int64
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte{'='})
		if !ok {
			return nil, fmt.Errorf("uapi: invalid key=value pair %q", line)
		}
		var err error
		switch key := string(k); {
		case key == "errno":
			if n, _ := strconv.Atoi(string(v)); n != 0 {
				return nil, fmt.Errorf("uapi: errno=%d", n)
			}
		case key == "public_key":
			d.Peers = append(d.Peers, wgtypes.Peer{})
			p = &d.Peers[len(d.Peers)-1]
			p.PublicKey, err = parseHexKey(v)
			hsSec, hsNsec = 0, 0
		case p == nil:
			switch key {
			case "private_key":
				d.PrivateKey, err = parseHexKey(v)
				d.PublicKey = publicOf(d.PrivateKey)
			case "listen_port":
				d.ListenPort, err = strconv.Atoi(string(v))
			case "fwmark":
				d.FirewallMark, err = strconv.Atoi(string(v))
			}
		default:
			switch key {
			case "preshared_key":
				p.PresharedKey, err = parseHexKey(v)
			case "protocol_version":
				p.ProtocolVersion, err = strconv.Atoi(string(v))
			case "endpoint":
				var ap netip.AddrPort
				if ap, err = netip.ParseAddrPort(string(v)); err == nil {
					p.Endpoint = net.UDPAddrFromAddrPort(ap)
				}
			case "last_handshake_time_sec":
				hsSec, err = strconv.ParseInt(string(v), 10, 64)
			case "last_handshake_time_nsec":
				hsNsec, err = strconv.ParseInt(string(v), 10, 64)
				if hsSec > 0 && hsNsec > 0 {
					p.LastHandshakeTime = time.Unix(hsSec, hsNsec)
				}
			case "tx_bytes":
				p.TransmitBytes, err = strconv.ParseInt(string(v), 10, 64)
			case "rx_bytes":
				p.ReceiveBytes, err = strconv.ParseInt(string(v), 10, 64)
			case "persistent_keepalive_interval":
				var n int
				n, err = strconv.Atoi(string(v))
				p.PersistentKeepaliveInterval = time.Duration(n) * time.Second
			case "allowed_ip":
				var pfx netip.Prefix
				if pfx, err = netip.ParsePrefix(string(v)); err == nil {
					p.AllowedIPs = append(p.AllowedIPs, net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())})
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("uapi: %s: %w", k, err)
		}
	}
	return d, nil
}

func parseHexKey(v []byte) (wgtypes.Key, error) {
	var k wgtypes.Key
	if len(v) != 2*len(k) {
		return k, fmt.Errorf("key of %d hex digits, want %d", len(v), 2*len(k))
	}
	_, err := hex.Decode(k[:], v)
	return k, err
}

func (u *userDevice) Kind() string { return PlaneUserspace }

func (u *userDevice) Close() error {
	u.uapi.Close()
	u.dev.Close()
	return nil
}

// createUserDevice starts wireguard-go on a new TUN device (offloads on)
// and serves its UAPI socket so wgctrl can configure it.
func createUserDevice(name string, mtu int, log func(string)) (*userDevice, error) {
	if _, err := CheckDataPlane(true); err != nil {
		return nil, err
	}
	tdev, err := createTUN(name, mtu)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "does not exist"):
			// wireguard-go says so in words, without the error.
			return nil, tunMissingError(false)
		case errors.Is(err, syscall.EPERM):
			return nil, refusedError("creating the TUN device " + name)
		case errors.Is(err, syscall.EACCES):
			return nil, tunDeniedError(err)
		case errors.Is(err, syscall.EINVAL) && linkExists(name):
			return nil, fmt.Errorf("creating TUN device %s: an interface of that name exists already and is no TUN device (pass --interface NAME)", name)
		case errors.Is(err, syscall.EBUSY):
			return nil, fmt.Errorf("creating TUN device %s: the interface is in use (is another weft running? pass --interface NAME): %w", name, err)
		}
		return nil, fmt.Errorf("creating TUN device %s: %w", name, err)
	}
	logger := &device.Logger{
		Verbosef: func(string, ...any) {},
		Errorf:   func(f string, a ...any) { log(fmt.Sprintf(f, a...)) },
	}
	watch := newWatchTUN(tdev)
	dev := device.NewDevice(watch, conn.NewDefaultBind(), logger)
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
	return &userDevice{dev: dev, uapi: l, watch: watch}, nil
}

// createTUN opens a TUN device as tun.CreateTUN does (offloads on), but
// unmonitored: wireguard-go's monitor polls the device every second
// (a write, a timer and a wake-up, forever) and watches netlink, to
// bring the device up and down with the link. The engine brings the link
// up itself and then the device (up).
func createTUN(name string, mtu int) (tun.Device, error) {
	fd, err := unix.Open(tunDevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("CreateTUN(%q) failed; %s does not exist", name, tunDevicePath)
		}
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// The MTU before the device exists: wireguard-go reads it once.
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetMTU(l, mtu)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting MTU %d on %s: %w", mtu, name, err)
	}
	tdev, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return tdev, nil
}

// up starts the device (its UDP socket, its peers); with a monitored TUN
// wireguard-go did so when the link came up.
func (u *userDevice) up() error { return u.dev.Up() }

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
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

// leanGCPercent is the GC target LeanGC sets.
const leanGCPercent = 25

// LeanGC lowers the garbage collector's target (GOGC) for a process whose
// own heap is small next to wireguard-go's: the userspace device keeps
// about 30 MB of packet buffers (three batches of 128 × 64 KB, most never
// written), which at GOGC=100 let as much garbage pile up, and become
// resident, between two collections. An idle agent allocates little, so
// the extra collections cost next to nothing. Agents and mesh-only nodes
// call it; masters, whose own state is the bulk of their heap, keep Go's
// default. GOGC in the environment wins.
func LeanGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(leanGCPercent)
	}
}
