package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP is served outside Go's network poller: each worker blocks in
// recvmmsg on the socket (a blocking socket, woken by the kernel directly,
// as NSD's process is) and answers with one sendmmsg. Through the poller
// every packet that finds the socket idle costs an epoll wakeup, a
// goroutine handoff and often a futex wakeup of a second thread to spin;
// at a moderate, steady rate (20k queries/s) that was most of the server's
// CPU per query, not the answering itself.

const (
	batchSize = 32
	maxUDPIn  = 65535
)

// udpSock is a bound UDP socket in blocking mode.
type udpSock struct {
	fd     int
	local  netip.AddrPort
	closed atomic.Bool
	mu     sync.RWMutex // writes outside the serving loop hold it for reading; close takes it
}

// listenUDP binds host:port (host an IP literal, or "" for every address,
// both families) as a blocking socket. Receives time out every second so a
// worker notices a shutdown even if the kernel's wakeup is missed.
func listenUDP(host string, port int) (*udpSock, error) {
	ip := netip.IPv6Unspecified()
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			ua, rerr := net.ResolveUDPAddr("udp", net.JoinHostPort(host, "0"))
			if rerr != nil {
				return nil, rerr
			}
			a, _ = netip.AddrFromSlice(ua.IP)
		}
		ip = a.Unmap()
	}
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		if ip.IsUnspecified() {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0) // both families, as net.ListenPacket does
		}
		sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, os.NewSyscallError("setsockopt", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	u := &udpSock{fd: fd}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		u.local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		u.local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	ok = true
	return u, nil
}

// shutdown wakes the workers blocked on the socket; they return at once.
func (u *udpSock) shutdown() {
	if u.closed.Swap(true) {
		return
	}
	_ = unix.Shutdown(u.fd, unix.SHUT_RDWR) // ENOTCONN on an unconnected socket, but the waiters wake
}

// close releases the descriptor, once no worker uses it any more.
func (u *udpSock) close() {
	u.shutdown()
	u.mu.Lock()
	if u.fd >= 0 {
		unix.Close(u.fd)
		u.fd = -1
	}
	u.mu.Unlock()
}

// sockName is a peer's raw socket address, as recvmmsg fills it in.
type sockName struct {
	raw unix.RawSockaddrInet6 // large enough for either family
	len uint32
}

func (n *sockName) addr() netip.Addr {
	switch n.raw.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&n.raw))
		return netip.AddrFrom4(sa.Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(n.raw.Addr).Unmap()
	}
	return netip.Addr{}
}

// sendTo writes one datagram to a peer from outside the serving loop (a
// forwarded answer); the descriptor cannot be closed meanwhile.
func (u *udpSock) sendTo(b []byte, to *sockName) {
	if len(b) == 0 {
		return
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.fd < 0 {
		return
	}
	_, _, _ = unix.Syscall6(unix.SYS_SENDTO, uintptr(u.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(&to.raw)), uintptr(to.len))
}

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// udpBatch is one worker's buffers, on the heap (the kernel writes into
// them; they never move).
type udpBatch struct {
	in    [batchSize]mmsghdr
	inIov [batchSize]unix.Iovec
	names [batchSize]sockName
	bufs  [batchSize][]byte
	out   [batchSize]mmsghdr
	oIov  [batchSize]unix.Iovec
	obufs [batchSize][]byte
}

func newUDPBatch() *udpBatch {
	b := &udpBatch{}
	for i := range b.in {
		b.bufs[i] = make([]byte, maxUDPIn)
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(maxUDPIn)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i].raw))
		b.obufs[i] = make([]byte, 0, 4096)
		b.out[i].hdr.Iov = &b.oIov[i]
		b.out[i].hdr.SetIovlen(1)
	}
	return b
}

// recv blocks until at least one datagram is there and returns how many it
// read (MSG_WAITFORONE: never waits for a whole batch).
func (u *udpSock) recv(b *udpBatch) (int, error) {
	for i := range b.in {
		b.in[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i].raw))
		b.in[i].hdr.Flags = 0
		b.in[i].len = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(u.fd), uintptr(unsafe.Pointer(&b.in[0])), batchSize,
		unix.MSG_WAITFORONE, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	for i := 0; i < int(n); i++ {
		b.names[i].len = b.in[i].hdr.Namelen
	}
	return int(n), nil
}

// send writes out[:n], retrying what the kernel did not take.
func (u *udpSock) send(b *udpBatch, n int) {
	for sent := 0; sent < n; {
		k, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(u.fd), uintptr(unsafe.Pointer(&b.out[sent])), uintptr(n-sent), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || k == 0 {
			// The first message failed (a peer's address the kernel refuses,
			// say): skip it, send the rest.
			sent++
			continue
		}
		sent += int(k)
	}
}

// serveUDPBatch reads and answers up to batchSize datagrams per system call
// each way. Answers are built into per-message buffers, then sent together.
func (s *Server) serveUDPBatch(ctx context.Context, u *udpSock) {
	w := newWorker()
	b := newUDPBatch()
	for {
		n, err := u.recv(b)
		if u.closed.Load() || ctx.Err() != nil {
			return
		}
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				s.log.Debug("udp receive failed", "err", err)
				time.Sleep(time.Millisecond) // do not spin on a persistent error
			}
			continue
		}
		start := time.Now()
		nout := 0
		for i := 0; i < n; i++ {
			name := &b.names[i]
			p := b.bufs[i][:b.in[i].len]
			w.out = b.obufs[nout][:0]
			act := s.handle(w, p, name.addr(), false)
			b.obufs[nout] = w.out[:0]
			switch act {
			case actRespond:
				if len(w.out) == 0 {
					continue
				}
				om := &b.out[nout]
				om.hdr.Name = (*byte)(unsafe.Pointer(&name.raw))
				om.hdr.Namelen = name.len
				b.oIov[nout].Base = &w.out[0]
				b.oIov[nout].SetLen(len(w.out))
				nout++
			case actForward:
				pkt := append([]byte(nil), p...)
				if len(w.out) > 0 && w.out[2]&0x80 == 0 {
					pkt = append(pkt[:0], w.out...)
				}
				to := *name
				s.forwardUDP(ctx, u, pkt, &to, start)
			}
		}
		u.send(b, nout)
		if nout > 0 {
			el := time.Since(start).Seconds()
			for range nout {
				s.m.latency.Observe(el)
			}
		}
	}
}

func (s *Server) forwardUDP(ctx context.Context, u *udpSock, pkt []byte, from *sockName, start time.Time) {
	if !s.fwd.acquire() {
		u.sendTo(servfailFor(pkt), from)
		return
	}
	go func() {
		defer s.fwd.release()
		resp := s.forward(ctx, pkt, "udp")
		if resp == nil {
			resp = servfailFor(pkt)
		}
		u.sendTo(resp, from)
		s.m.latency.Observe(time.Since(start).Seconds())
	}()
}
