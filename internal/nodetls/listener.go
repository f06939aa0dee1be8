package nodetls

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// SniffTimeout bounds how long a new connection may take to send its
// first byte before it is dropped.
const SniffTimeout = 10 * time.Second

// Listener serves TLS and, where plain allows it, plain connections on
// one port: a connection whose first byte starts a TLS handshake is
// wrapped with conf (so http.Server sees a *tls.Conn and fills r.TLS);
// any other connection is accepted only when plain(it) says so, and is
// otherwise answered with a 400 that says to use https and closed.
type Listener struct {
	net.Listener
	conf  *tls.Config
	plain func(net.Conn) bool

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
}

// NewListener starts sorting ln's connections. plain may be nil: TLS only.
func NewListener(ln net.Listener, conf *tls.Config, plain func(net.Conn) bool) *Listener {
	l := &Listener{Listener: ln, conf: conf, plain: plain, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.Close()
			return
		}
		delay = 0
		go l.sort(c)
	}
}

// sort reads the first byte off the connection's own goroutine, so that a
// silent client holds up nobody else.
func (l *Listener) sort(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(SniffTimeout))
	br := bufio.NewReaderSize(c, 1)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	var out net.Conn
	switch {
	case first[0] == 0x16: // TLS record type handshake
		out = tls.Server(pc, l.conf)
	case l.plain != nil && l.plain(c):
		out = pc
	default:
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" +
			"this address serves HTTPS only: use https://\n"))
		c.Close()
		return
	}
	select {
	case l.conns <- out:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next sorted connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// FromLoopbackOr allows plain connections that come from a loopback
// address or from inside one of nets (the overlay: what arrives from
// there came through WireGuard, or from this host). It judges the peer's
// address, not the one dialled: a host on the underlay that routes to the
// overlay address through this node is still a stranger.
func FromLoopbackOr(nets ...*net.IPNet) func(net.Conn) bool {
	return func(c net.Conn) bool {
		ta, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return false
		}
		if ta.IP.IsLoopback() {
			return true
		}
		for _, n := range nets {
			if n != nil && n.Contains(ta.IP) {
				return true
			}
		}
		return false
	}
}
