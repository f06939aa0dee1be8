package meshtest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The WAN delay of a site is applied by tc netem on the router's interface
// toward the site when the kernel has sch_netem. When it has not, the
// router delays the packets itself: a policy route sends every forwarded
// packet bound for a delayed site into a TUN device (delayIf) in the
// router namespace, whose reader — a goroutine of the test process holding
// the TUN's file — keeps each packet for its site's delay and writes it
// back. A packet written to a TUN enters the router as if received on it,
// and a rule sends what comes in from the TUN through the main table, on
// to its site. The TUN's MTU is above every site's, so nothing fragments.
const (
	delayIf    = "wdelay"
	delayTable = "101"
	delayMTU   = "9000"
)

// delayer is the router's TUN reader: one FIFO per delayed site (all of a
// site's packets wait the same time, so each FIFO leaves in order).
type delayer struct {
	f     *os.File
	mu    sync.Mutex
	sites []*delayQueue
	done  chan struct{}
	wg    sync.WaitGroup
}

type delayQueue struct {
	pfx netip.Prefix
	d   time.Duration
	q   chan delayed
}

type delayed struct {
	due time.Time
	pkt []byte
}

// openTUN creates the TUN device name in the network namespace ns and
// returns its file (non-blocking, so Close ends a pending Read).
func openTUN(ns, name string) (*os.File, error) {
	var fd int
	err := inNamedNetns(ns, func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening /dev/net/tun: %w", err)
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:unix.IFNAMSIZ-1], name)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// inNamedNetns runs fn on a thread switched into the named namespace.
func inNamedNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return fmt.Errorf("leaving netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// startDelayer opens the router's TUN and sets up the policy routing that
// loops delayed sites' packets through it.
func (tb *Testbed) startDelayer() (*delayer, error) {
	f, err := openTUN(tb.Router, delayIf)
	if err != nil {
		return nil, err
	}
	for _, argv := range [][]string{
		{"ip", "link", "set", delayIf, "mtu", delayMTU, "up"},
		{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf." + delayIf + ".rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf." + delayIf + ".forwarding=1"},
		{"ip", "route", "add", "default", "dev", delayIf, "table", delayTable},
		{"ip", "rule", "add", "iif", delayIf, "lookup", "main", "pref", "100"},
	} {
		if out, err := tb.exec(tb.Router, argv...); err != nil {
			f.Close()
			return nil, fmt.Errorf("%v: %v %s", argv, err, out)
		}
	}
	d := &delayer{f: f, done: make(chan struct{})}
	d.wg.Add(1)
	go d.read()
	return d, nil
}

// add delays the packets to pfx by dl from now on.
func (tb *Testbed) delayTo(pfx netip.Prefix, dl time.Duration) error {
	tb.mu.Lock()
	if tb.delay == nil {
		tb.mu.Unlock()
		d, err := tb.startDelayer()
		if err != nil {
			return err
		}
		tb.mu.Lock()
		tb.delay = d
	}
	d := tb.delay
	tb.mu.Unlock()
	q := &delayQueue{pfx: pfx, d: dl, q: make(chan delayed, 8192)}
	d.mu.Lock()
	d.sites = append(d.sites, q)
	d.mu.Unlock()
	d.wg.Add(1)
	go d.release(q)
	out, err := tb.exec(tb.Router, "ip", "rule", "add", "to", pfx.String(), "lookup", delayTable, "pref", "200")
	if err != nil {
		return fmt.Errorf("ip rule to %s: %v %s", pfx, err, out)
	}
	return nil
}

func (d *delayer) read() {
	defer d.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := d.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-d.done:
				return
			default:
			}
			continue
		}
		if n < 20 || buf[0]>>4 != 4 {
			continue
		}
		dst := netip.AddrFrom4([4]byte(buf[16:20]))
		pkt := append([]byte(nil), buf[:n]...)
		q := d.queue(dst)
		if q == nil {
			_, _ = d.f.Write(pkt)
			continue
		}
		select {
		case q.q <- delayed{due: time.Now().Add(q.d), pkt: pkt}:
		default: // queue full: dropped, as a real link would
		}
	}
}

func (d *delayer) queue(dst netip.Addr) *delayQueue {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.sites {
		if q.pfx.Contains(dst) {
			return q
		}
	}
	return nil
}

func (d *delayer) release(q *delayQueue) {
	defer d.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case p := <-q.q:
			if w := time.Until(p.due); w > 0 {
				t.Reset(w)
				select {
				case <-d.done:
					return
				case <-t.C:
				}
			}
			_, _ = d.f.Write(p.pkt)
		}
	}
}

func (d *delayer) close() {
	if d == nil {
		return
	}
	close(d.done)
	d.f.Close()
	d.wg.Wait()
}
