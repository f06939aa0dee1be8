package lb

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
)

// sock is the I/O of one HTTP-path connection (client or backend): reads
// and writes go through its RawConn as recvfrom(2) and sendto(2) (see recv
// and send in tcp.go) instead of read(2) and write(2), and it lets the
// HTTP path skip the read that would only return EAGAIN.
//
// That read is the cost it saves. The answer to what the proxy just sent
// is never there yet: a backend has not answered the request being
// flushed, a keep-alive client has not sent its next request before it
// has read this response. A plain Flush then Read costs, on both sides of
// every request, a read that fails with EAGAIN before the goroutine parks
// (HAProxy does not make it: it knows the socket was drained). Go's
// RawConn.Read resets the read readiness before its first callback, so a
// read may be skipped only after a poller arm that came after the last
// read that drained the socket:
//
//   - flushAwait (backend side) arms the poller, then flushes the request
//     inside the callback, then waits: the backend can only have sent
//     something in answer to that request (or a close, which it answers
//     with a reset anyway), and that raises the edge the wait sees.
//   - serveHTTP (client side) serves a run of requests inside one
//     RawConn.Read session: the callback reads with recv, and once a recv
//     has drained the socket (EAGAIN or a short read), any later data
//     raises a new edge that no reset erases, so the session waits
//     without reading. Pipelined requests and bodies are never lost.
//     One thing only can be taken in by a recv without a later edge: a
//     FIN that came in the same segment as a request's last bytes. The
//     connection then closes at the idle timeout instead of at once.
type sock struct {
	rc syscall.RawConn

	// Inside a client session (serveHTTP), Read is a recv on fd that
	// never waits: EAGAIN returns errAgain and sets drained.
	inSession bool
	fd        uintptr
	drained   bool // the last recv of the session found the socket empty

	rbuf, wbuf []byte
	rn, wn     int
	rerr, werr error
	readFn     func(uintptr) bool // bound once, so that no call allocates
	writeFn    func(uintptr) bool

	aw      *bufio.Writer // flushAwait's writer
	flushed bool
	ferr    error
	awaitFn func(uintptr) bool
}

// errAgain is a session read that found no data.
var errAgain = errors.New("lb: no data yet")

func newSock(c *net.TCPConn) (*sock, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &sock{rc: rc}
	s.readFn, s.writeFn, s.awaitFn = s.readStep, s.writeStep, s.awaitStep
	return s, nil
}

func (s *sock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.inSession {
		n, err := s.recvOnce(s.fd, p)
		if err == syscall.EAGAIN {
			s.drained = true
			return 0, errAgain
		}
		if err == nil {
			s.drained = n < len(p)
		}
		return n, err
	}
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err != nil {
		return 0, err
	}
	return s.rn, s.rerr
}

// recvOnce is one recv: EAGAIN is returned as is, 0 bytes as io.EOF.
func (s *sock) recvOnce(fd uintptr, p []byte) (int, error) {
	for {
		n, err := recv(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (s *sock) readStep(fd uintptr) bool {
	n, err := s.recvOnce(fd, s.rbuf)
	if err == syscall.EAGAIN {
		return false // wait for readiness
	}
	s.rn, s.rerr = n, err
	return true
}

func (s *sock) Write(p []byte) (int, error) {
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	n := s.wn
	s.wbuf = nil
	if err != nil {
		return n, err
	}
	return n, s.werr
}

func (s *sock) writeStep(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		n, err := send(fd, s.wbuf[s.wn:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return false // wait until writable
		}
		if err != nil {
			s.werr = err
			return true
		}
		s.wn += n
	}
	return true
}

// flushAwait flushes w, whose writes go to s, and waits until s is
// readable, its read deadline passes or it is closed, without reading.
// The caller must know that its peer sends nothing before it has what
// this flush sends. The returned error is the flush's: a failed wait is
// met again, and reported, by the read that follows.
func (s *sock) flushAwait(w *bufio.Writer) error {
	s.aw, s.flushed, s.ferr = w, false, nil
	s.rc.Read(s.awaitFn)
	s.aw = nil
	if !s.flushed {
		// The wait could not start (a deadline already past, a closed
		// connection): flush as usual; the next read reports the rest.
		return w.Flush()
	}
	return s.ferr
}

func (s *sock) awaitStep(uintptr) bool {
	if s.flushed {
		return true // readable
	}
	s.flushed = true
	if err := s.aw.Flush(); err != nil {
		s.ferr = err
		return true
	}
	return false
}
