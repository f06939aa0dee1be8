package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// HTTP/2 without TLS (h2c) with prior knowledge: a client that opens a
// plain HTTP connection with the HTTP/2 preface ("PRI * HTTP/2.0") is
// handed to the stock net/http server with unencrypted HTTP/2 enabled,
// which forwards through the same handler as the TLS frontend. The lean
// HTTP/1.1 path pays nothing for this: the preface is noticed only where
// it already rejects a request line that is neither HTTP/1.0 nor 1.1.
//
// The HTTP/1.1 "Upgrade: h2c" handshake, deprecated by RFC 9113, is not
// terminated here: such a request is forwarded as HTTP/1.1 (the backend
// sees no HTTP2-Settings connection option and answers in HTTP/1.1).

var errH2Preface = errors.New("HTTP/2 connection preface")

// h2cPreface is the part of the preface readRequest consumed.
const h2cPreface = "PRI * HTTP/2.0\r\n"

// serveH2C serves an HTTP/2 connection whose first line was read from br.
func (p *Proxy) serveH2C(c *net.TCPConn, br *bufio.Reader, fe *frontend) {
	c.SetReadDeadline(time.Time{})
	pick := func(rt *runtime, req *http.Request) *route {
		switch fe.kind {
		case "service":
			return rt.byPort[fe.port]
		case kindAppID:
			return rt.appIDs[req.Header.Get("X-Marathon-App-Id")]
		default:
			return matchVHost(rt, []byte(hostOnly(strings.ToLower(req.Host))), []byte(req.URL.Path))
		}
	}
	srv := &http.Server{Handler: p.streamHandler(fe.stats, fe.port, fe.kind == kindHTTP, pick), ReadHeaderTimeout: 15 * time.Second, IdleTimeout: p.cfg.ClientIdleTimeout}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	conn := &replayConn{TCPConn: c, r: io.MultiReader(strings.NewReader(h2cPreface), br)}
	serveOne(srv, conn)
}

// replayConn reads bytes already consumed from the connection first.
type replayConn struct {
	*net.TCPConn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// serveOne serves one connection with srv and returns when it is closed.
func serveOne(srv *http.Server, c net.Conn) {
	ln := &oneConnListener{c: c, done: make(chan struct{})}
	var once sync.Once
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed || st == http.StateHijacked {
			once.Do(func() { close(ln.done) })
		}
	}
	srv.BaseContext = func(net.Listener) context.Context { return context.Background() }
	srv.Serve(ln)
}

// oneConnListener yields one connection, then blocks until it is done.
type oneConnListener struct {
	mu   sync.Mutex
	c    net.Conn
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return dummyAddr{} }

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "serve-one" }
