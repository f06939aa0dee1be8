package lb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// allowed reports whether the client address passes the service's
// HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL.
func allowed(s *Service, addr net.Addr) bool {
	if len(s.Allow) == 0 {
		return true
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func clientIP(addr net.Addr) net.IP {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP
	}
	return nil
}

// dialBackend connects to a backend of r, ejecting backends that refuse and
// trying others (up to 3 attempts). It returns nil when none answered.
func (p *Proxy) dialBackend(r *route, client net.IP, first *backend) (*backend, *net.TCPConn) {
	var triedBuf [3]*backend
	tried := triedBuf[:0]
	for attempt := 0; attempt < 3; attempt++ {
		b := first
		first = nil
		if b == nil || b.ejectedUntil.Load() != 0 {
			now := p.now().UnixNano()
			if b == nil || b.ejected(now) {
				b = r.pick(client, now, tried)
			}
		}
		if b == nil {
			return nil, nil
		}
		tried = append(tried, b)
		tc, err := p.dial(b)
		if err != nil {
			b.failures.Add(1)
			b.ejectedUntil.Store(p.now().Add(p.cfg.EjectFor).UnixNano())
			p.log.Warn("backend refused a connection; ejected", "service", r.svc.Name, "backend", b.addr, "for", p.cfg.EjectFor, "err", err)
			continue
		}
		if b.ejectedUntil.Load() != 0 {
			b.ejectedUntil.Store(0)
		}
		b.conns.Add(1)
		b.active.Add(1)
		if !b.track(tc, "conn") {
			b.active.Add(-1)
			tc.Close()
			continue
		}
		return b, tc
	}
	return nil, nil
}

// dial connects to b within the connect timeout; an ip:port backend is
// dialled without parsing or resolving its address again.
func (p *Proxy) dial(b *backend) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: p.cfg.ConnectTimeout}
	if b.ap.IsValid() {
		return d.DialTCP(context.Background(), "tcp", netip.AddrPort{}, b.ap)
	}
	c, err := d.Dial("tcp", b.addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// serveTCP proxies one TCP connection: both sides stay *net.TCPConn so
// io.Copy splices, and each direction half-closes at EOF.
func (p *Proxy) serveTCP(c *net.TCPConn, r *route) {
	defer c.Close()
	r.conns.Add(1)
	r.active.Add(1)
	defer r.active.Add(-1)
	if !allowed(r.svc, c.RemoteAddr()) {
		return
	}
	b, bc := p.dialBackend(r, clientIP(c.RemoteAddr()), nil)
	if bc == nil {
		r.errors.Add(1)
		return
	}
	defer b.release(bc)
	splice(c, bc)
}

// splice copies both ways until both directions are done.
func splice(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyTCP(b, a)
		b.CloseWrite()
	}()
	copyTCP(a, b)
	a.CloseWrite()
	wg.Wait()
}

// smallBuf is the read size of the small-message path; a read that fills
// it marks the direction as bulk.
const smallBuf = 16 << 10

// eofProbe bounds how long a half-close or reset that arrived together
// with the last data can go unnoticed on the small-message path (see
// copyTCP). It only delays the close, never data.
const eofProbe = 20 * time.Millisecond

var smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}

// copyTCP copies src to dst until EOF or an error.
//
// Small messages (a request, a response) cost one read and one write per
// wake-up. The read loop runs inside src's RawConn.Read callback, so after
// a short read the goroutine waits for the next readiness edge instead of
// issuing the read that would only return EAGAIN, and no pipe is involved.
// A short read drains the socket, so later data always raises a new edge;
// only a FIN or reset queued behind the data can be taken in by that read
// without a later edge. To catch it, a short read arms a read deadline
// eofProbe ahead (re-armed at most every eofProbe/2); when it fires on a
// quiet connection the loop reads once more, which returns EOF or EAGAIN,
// and then waits without a deadline.
//
// The first read that fills the buffer switches the direction to io.Copy,
// which splices between the two *net.TCPConn for the rest of the stream.
//
// The callback never blocks: a write that the kernel does not take whole
// is finished outside it, with src's read lock released, so closing src
// (drain, shutdown) never waits on dst.
func copyTCP(dst, src *net.TCPConn) {
	rs, err1 := src.SyscallConn()
	rd, err2 := dst.SyscallConn()
	if err1 != nil || err2 != nil {
		io.Copy(dst, src)
		return
	}
	var (
		bp      *[]byte
		pending []byte // read but not yet written
		bulk    bool
		stop    bool // EOF or an error on either side
		chunk   []byte
		wrote   int
		werr    error
		armed   time.Time // read deadline set on src, zero when none
	)
	write := func(fd uintptr) bool {
		for wrote < len(chunk) {
			n, err := send(fd, chunk[wrote:])
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				return true // finished outside, blocking
			}
			if err != nil {
				werr = err
				return true
			}
			wrote += n
		}
		return true
	}
	read := func(fd uintptr) bool {
		for {
			if bp == nil {
				bp = smallPool.Get().(*[]byte)
			}
			buf := *bp
			n, err := recv(fd, buf)
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				smallPool.Put(bp)
				bp = nil
				return false // any later data or FIN raises an edge
			}
			if err != nil || n <= 0 {
				stop = true
				return true
			}
			chunk, wrote, werr = buf[:n], 0, nil
			if err := rd.Write(write); err != nil || werr != nil {
				stop = true
				return true
			}
			if wrote < n {
				pending = buf[wrote:n]
				return true
			}
			if n == len(buf) {
				bulk = true
				return true
			}
			smallPool.Put(bp)
			bp = nil
			now := time.Now()
			if armed.Sub(now) < eofProbe/2 {
				armed = now.Add(eofProbe)
				src.SetReadDeadline(armed)
			}
			return false
		}
	}
	defer func() {
		if bp != nil {
			smallPool.Put(bp)
		}
	}()
	for {
		err := rs.Read(read)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Quiet for eofProbe after a short read: probe once more.
			armed = time.Time{}
			src.SetReadDeadline(armed)
			continue
		}
		if err != nil || stop {
			return
		}
		if pending != nil {
			if _, err := dst.Write(pending); err != nil {
				return
			}
			pending = nil
			smallPool.Put(bp)
			bp = nil
		}
		if bulk {
			smallPool.Put(bp)
			bp = nil
			if !armed.IsZero() {
				src.SetReadDeadline(time.Time{})
			}
			io.Copy(dst, src)
			return
		}
	}
}

// recv and send are recvfrom(2) and sendto(2) without addresses: on a
// socket they take a shorter path through the kernel than read(2) and
// write(2) (no VFS permission and notification hooks), and MSG_NOSIGNAL
// spares a SIGPIPE when the peer is gone. The sockets are non-blocking,
// so the calls never wait: they skip the scheduler's syscall bookkeeping.
func recv(fd uintptr, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return int(n), e
	}
	return int(n), nil
}

func send(fd uintptr, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return int(n), e
	}
	return int(n), nil
}
