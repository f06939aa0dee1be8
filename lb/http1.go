package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The HTTP/1.1 path is a lean reverse proxy: one goroutine per client
// connection reads a request head straight from a pooled bufio.Reader,
// copies it (minus hop-by-hop headers, plus X-Forwarded-*) to a pooled
// keep-alive connection of the chosen backend, then copies the response
// back. Bodies are framed by Content-Length or chunked encoding and copied
// through pooled buffers; nothing is allocated per request on the common
// path. Both sides read and write with recv and send through their RawConn
// and skip the read that would only return EAGAIN (sock.go): the request
// loop runs inside one RawConn.Read session per connection (serveHTTP).
// httputil.ReverseProxy measured 0.30× HAProxy; this does not use it.

// frontend is one listening address of the HTTP path.
type frontend struct {
	kind  string // kindHTTP (vhosts), kindAppID, "service"
	port  int
	stats *frontStats
	xfwd  []byte // X-Forwarded-Proto and X-Forwarded-Port lines
}

func (fe *frontend) init() {
	fe.xfwd = []byte("X-Forwarded-Proto: http\r\nX-Forwarded-Port: " + strconv.Itoa(fe.port) + "\r\n")
}

const maxHeadBytes = 64 << 10

var (
	errHeadTooLarge = errors.New("request head too large")
	errBadRequest   = errors.New("malformed request")
)

// request is one parsed request head, reused across a connection's
// requests. Offsets point into head.
type request struct {
	head          []byte // request line and forwarded header lines, CRLF-terminated
	method        []byte
	pathStart     int // offset of the request target in head
	pathEnd       int
	host          []byte // lower-cased, without port
	appID         []byte
	cookieStart   int // value of the Cookie line in head, 0 when none
	cookieEnd     int
	authStart     int
	authEnd       int
	contentLength int64    // -1 when absent
	clText        [18]byte // the first Content-Length's text, clLen bytes:
	clLen         int      // a repeat must be the same text, as net/http requires
	chunked       bool
	close         bool
	upgrade       bool
	http10        bool
	expect        bool
	deadline      time.Time // the client connection's read deadline
	// bodyBuffered: the whole body sits in the client reader. It is sent
	// with Peek and discarded only once a response arrives, so the request
	// can be replayed on another connection.
	bodyBuffered bool
}

// replayable reports whether the request can be sent again.
func (req *request) replayable() bool { return !req.hasBody() || req.bodyBuffered }

// armDeadline sets a read deadline d ahead, lazily: only when the one set
// (*cur) is less than d/2 away, so that a busy keep-alive connection does
// not touch the runtime timer on every request.
func armDeadline(c *net.TCPConn, cur *time.Time, now time.Time, d time.Duration) {
	if cur.IsZero() || cur.Sub(now) < d/2 {
		*cur = now.Add(d)
		c.SetReadDeadline(*cur)
	}
}

// clearDeadline removes a read deadline before an open-ended copy (a
// large or streaming body).
func clearDeadline(c *net.TCPConn, cur *time.Time) {
	if !cur.IsZero() {
		*cur = time.Time{}
		c.SetReadDeadline(time.Time{})
	}
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasToken reports whether a comma-separated header value holds tok.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var f []byte
		if i < 0 {
			f, v = v, nil
		} else {
			f, v = v[:i], v[i+1:]
		}
		if bytes.EqualFold(trimSpace(f), []byte(tok)) {
			return true
		}
	}
	return false
}

func nameIs(name []byte, want string) bool {
	return len(name) == len(want) && bytes.EqualFold(name, []byte(want))
}

// readRequest parses the next request head from br into req.
func readRequest(br *bufio.Reader, req *request) error {
	req.head = req.head[:0]
	req.host, req.appID = req.host[:0], req.appID[:0]
	req.cookieStart, req.cookieEnd, req.authStart, req.authEnd = 0, 0, 0, 0
	req.contentLength = -1
	req.chunked, req.close, req.upgrade, req.http10, req.expect = false, false, false, false, false

	var line []byte
	var err error
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errHeadTooLarge
			}
			return err
		}
		if len(trimCRLF(line)) > 0 {
			break // RFC 9112: ignore empty lines before the request line
		}
	}
	line = trimCRLF(line)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequest
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errBadRequest
	}
	proto := rest[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		req.http10 = true
		req.close = true
	default:
		if string(proto) == "HTTP/2.0" && string(line[:sp1]) == "PRI" && string(rest[:sp2]) == "*" {
			return errH2Preface
		}
		return errBadRequest
	}
	req.head = append(req.head, line...)
	req.head = append(req.head, '\r', '\n')
	req.method = req.head[:sp1]
	req.pathStart, req.pathEnd = sp1+1, sp1+1+sp2
	hosts := 0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errHeadTooLarge
			}
			return err
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		if len(req.head)+len(line) > maxHeadBytes {
			return errHeadTooLarge
		}
		// RFC 9112 §5: a field name is a token right before the colon
		// (no whitespace, so no obs-fold either, which starts with it),
		// and a value holds no CR, LF, NUL or other control byte. A
		// backend could read anything else another way.
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validName(line[:colon]) || !validValue(line[colon+1:]) {
			return errBadRequest
		}
		name, value := line[:colon], trimSpace(line[colon+1:])
		keep := true
		switch len(name) {
		case 4:
			if nameIs(name, "host") {
				if hosts++; hosts > 1 {
					return errBadRequest // RFC 9112 §3.2
				}
				h := value
				if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[i:], ']') < 0 {
					h = h[:i]
				}
				for _, c := range h {
					if 'A' <= c && c <= 'Z' {
						c += 'a' - 'A'
					}
					req.host = append(req.host, c)
				}
			}
		case 6:
			if nameIs(name, "cookie") {
				req.cookieStart = len(req.head) + (len(line) - len(value))
				req.cookieEnd = req.cookieStart + len(value)
			} else if nameIs(name, "expect") {
				if hasToken(value, "100-continue") {
					req.expect = true
				}
				keep = false
			}
		case 7:
			if nameIs(name, "upgrade") {
				req.upgrade = true
			}
		case 10:
			if nameIs(name, "connection") {
				if hasToken(value, "close") {
					req.close = true
				}
				if hasToken(value, "keep-alive") && req.http10 {
					// HTTP/1.0 keep-alive: still closed after the response.
				}
				keep = false
			} else if nameIs(name, "keep-alive") {
				keep = false
			}
		case 13:
			if nameIs(name, "authorization") {
				req.authStart = len(req.head) + (len(line) - len(value))
				req.authEnd = req.authStart + len(value)
			}
		case 14:
			if nameIs(name, "content-length") {
				n, ok := parseLength(value)
				if !ok || (req.contentLength >= 0 && !bytes.Equal(req.clText[:req.clLen], value)) {
					// RFC 9112 §6.3: invalid or conflicting. A repeat
					// must be the same text, not just the same number
					// ("02" and "2"): net/http refuses that too, and a
					// backend may read either.
					return errBadRequest
				}
				req.contentLength = n
				req.clLen = copy(req.clText[:], value)
			}
		case 16:
			if nameIs(name, "proxy-connection") || nameIs(name, "x-forwarded-port") {
				keep = false
			}
		case 17:
			if nameIs(name, "transfer-encoding") {
				// Exactly one coding, chunked: any other (or a list, or a
				// second header) has a length a backend may frame
				// another way (RFC 9112 §6.1; Go's net/http agrees).
				if req.chunked || !bytes.EqualFold(value, []byte("chunked")) || req.http10 {
					return errBadRequest
				}
				req.chunked = true
			} else if nameIs(name, "x-marathon-app-id") {
				req.appID = append(req.appID, value...)
			} else if nameIs(name, "x-forwarded-proto") {
				keep = false
			}
		}
		if keep {
			req.head = append(req.head, line...)
			req.head = append(req.head, '\r', '\n')
		}
	}
	if req.chunked && req.contentLength >= 0 {
		// Both framings: a request smuggling attempt or a broken client.
		return errBadRequest
	}
	return nil
}

// tchar marks the bytes of an RFC 9110 token; ctl the control bytes a
// field value must not hold (HTAB is allowed).
var tchar, ctl [256]bool

func init() {
	for c := 0; c < 256; c++ {
		tchar[c] = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
		ctl[c] = c < 0x20 && c != '\t' || c == 0x7f
	}
}

func validName(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

func validValue(b []byte) bool {
	for _, c := range b {
		if ctl[c] {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value: digits only (no sign, no
// list), at most 18 of them.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func (req *request) path() []byte {
	t := req.head[req.pathStart:req.pathEnd]
	// absolute-form: http://host/path
	if len(t) > 0 && t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			if j := bytes.IndexByte(t, '/'); j >= 0 {
				return t[j:]
			}
			return []byte("/")
		}
	}
	return t
}

func (req *request) hasBody() bool { return req.chunked || req.contentLength > 0 }

// matchVHost picks the route for host and path on the vhost frontend.
func matchVHost(rt *runtime, host, path []byte) *route {
	for _, r := range rt.vhosts[string(host)] {
		if len(r.svc.Paths) == 0 {
			return r
		}
		for _, p := range r.svc.Paths {
			if bytes.HasPrefix(path, []byte(p)) {
				return r
			}
		}
	}
	return nil
}

var (
	resp400 = errorResponse(400, "Bad Request", "Your browser sent an invalid request.")
	resp401 = "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/html\r\nContent-Length: 81\r\nCache-Control: no-cache\r\n"
	resp403 = errorResponse(403, "Forbidden", "Request forbidden by administrative rules.")
	resp431 = errorResponse(431, "Request Header Fields Too Large", "The request head is too large.")
	resp502 = errorResponse(502, "Bad Gateway", "The server returned an invalid or incomplete response.")
	resp503 = errorResponse(503, "Service Unavailable", "No server is available to handle this request.")
	resp504 = errorResponse(504, "Gateway Timeout", "The server didn't respond in time.")
)

func errorResponse(code int, reason, msg string) []byte {
	body := "<html><body><h1>" + strconv.Itoa(code) + " " + reason + "</h1>\n" + msg + "\n</body></html>\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + reason + "\r\nContent-Type: text/html\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nCache-Control: no-cache\r\n\r\n" + body)
}

const body401 = "<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password.\n</body></html>\n"

func init() {
	resp401 = "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/html\r\nContent-Length: " + strconv.Itoa(len(body401)) + "\r\nCache-Control: no-cache\r\n"
}

// serveHTTP runs the request loop of one client connection.
//
// Requests that need nothing more from the client than their head and a
// body already read are served inside a session: one RawConn.Read whose
// callback reads with recv and waits for the next request without the
// read that would only return EAGAIN (sock.go). The others (a body still
// to come, chunked, Upgrade, Expect, a head larger than the buffer) end
// the session and are served with blocking reads, as is an error.
func (p *Proxy) serveHTTP(c *net.TCPConn, fe *frontend) {
	defer c.Close()
	s, err := newSock(c)
	if err != nil {
		return
	}
	ip := clientIP(c.RemoteAddr())
	h := &hconn{p: p, c: c, s: s, fe: fe, ip: ip,
		xff: []byte("X-Forwarded-For: " + ip.String() + "\r\n"),
		req: &request{head: make([]byte, 0, 1024)},
		br:  getReader(s),
	}
	defer putReader(h.br)
	h.step = h.sessionStep
	for {
		armDeadline(c, &h.req.deadline, p.now(), p.cfg.ClientIdleTimeout)
		h.exit, h.err = exitNone, nil
		if err := s.rc.Read(h.step); err != nil {
			return // idle timeout, or closed
		}
		s.inSession = false
		switch h.exit {
		case exitRead:
			// A head larger than the buffer: read as it comes.
			if err := readRequest(h.br, h.req); err != nil {
				h.badRequest(err)
				return
			}
			h.requests++
			if !h.serveOutside() {
				return
			}
		case exitServe:
			if !h.serveOutside() {
				return
			}
		case exitBad:
			h.badRequest(h.err)
			return
		default:
			return
		}
	}
}

// hconn is the state of one client connection on the HTTP path.
type hconn struct {
	p        *Proxy
	c        *net.TCPConn
	s        *sock
	fe       *frontend
	ip       net.IP
	xff      []byte
	req      *request
	br       *bufio.Reader
	requests int // read on this connection

	step  func(uintptr) bool // sessionStep, bound once
	exit  int
	err   error
	pr    bytes.Reader // the buffered bytes a head is parsed from
	probe int          // bytes of br last found not to hold a whole head
}

// Why a session ended.
const (
	exitNone  = iota
	exitClose // EOF, an error, or a response that closes the connection
	exitRead  // a head larger than the buffer: readRequest on br
	exitServe // a parsed request that needs blocking reads of the client
	exitBad   // a head readRequest refused: h.err
)

// sessionStep is the RawConn.Read callback of a session: it parses and
// serves requests until one needs blocking reads, and returns false to
// wait for the next request only when its last recv drained the socket.
func (h *hconn) sessionStep(fd uintptr) bool {
	s := h.s
	s.fd, s.inSession, s.drained = fd, true, false // woken, or new: read first
	for {
		switch h.parse() {
		case parseMore:
			if s.drained {
				// Any later data raises an edge: wait for it, under
				// the idle deadline, refreshed only between requests
				// (a head must come whole within it).
				if h.br.Buffered() == 0 {
					armDeadline(h.c, &h.req.deadline, h.p.now(), h.p.cfg.ClientIdleTimeout)
				}
				return false
			}
			if _, err := h.br.Peek(h.br.Buffered() + 1); err != nil && err != errAgain {
				h.exit = exitClose
				return true
			}
			continue
		case parseFull:
			h.exit = exitRead
			return true
		case parseBad:
			h.exit = exitBad
			return true
		}
		req := h.req
		if req.chunked || req.upgrade || req.expect || req.contentLength > int64(h.br.Buffered()) {
			h.exit = exitServe
			return true
		}
		bw := getWriter(s)
		keep := h.serve(bw)
		err := bw.Flush()
		putWriter(bw)
		if !keep || err != nil {
			h.exit = exitClose
			return true
		}
	}
}

// Results of parse.
const (
	parseOK   = iota
	parseMore // no whole head buffered yet
	parseFull // no whole head, and the buffer is full
	parseBad  // readRequest's error in h.err
)

// parse reads the next request head from what br holds, without taking
// bytes from br unless the head is whole: readRequest runs over a copy,
// so a head split over reads is parsed again once more has come, and
// refused exactly as readRequest refuses it.
func (h *hconn) parse() int {
	n := h.br.Buffered()
	if n == 0 || n == h.probe {
		return parseMore
	}
	buf, _ := h.br.Peek(n)
	h.pr.Reset(buf)
	pb := getReader(&h.pr)
	err := readRequest(pb, h.req)
	used := n - h.pr.Len() - pb.Buffered()
	putReader(pb)
	switch {
	case err == nil:
		h.probe = 0
		h.br.Discard(used)
		h.requests++
		return parseOK
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		if n == h.br.Size() {
			return parseFull
		}
		h.probe = n
		return parseMore
	case err == errH2Preface:
		h.br.Discard(used) // serveH2C goes on after the preface's first line
	}
	h.err = err
	return parseBad
}

// serve handles the parsed request, writing the answer to bw (unflushed);
// it returns whether the connection can carry another request.
func (h *hconn) serve(bw *bufio.Writer) bool {
	if h.fe.stats != nil {
		h.fe.stats.requests.Add(1)
	}
	return h.p.handleHTTP(h.c, h.br, bw, h.fe, h.req, h.ip, h.xff) && !h.req.close
}

// serveOutside serves the parsed request with blocking reads of the
// client (a body to stream, an upgrade): it returns whether the
// connection goes on.
func (h *hconn) serveOutside() bool {
	// The writer is taken per request so that an idle keep-alive
	// connection holds only its reader.
	bw := getWriter(h.s)
	keep := h.serve(bw)
	err := bw.Flush()
	putWriter(bw)
	return keep && err == nil
}

// badRequest answers a head readRequest refused, or hands an HTTP/2
// preface to the h2c server.
func (h *hconn) badRequest(err error) {
	switch err {
	case errH2Preface:
		if h.requests == 0 {
			h.p.serveH2C(h.c, h.br, h.fe)
			return
		}
		h.c.Write(resp400)
	case errHeadTooLarge:
		h.c.Write(resp431)
	case errBadRequest:
		h.c.Write(resp400)
	}
}

// reply writes a canned response; the connection stays usable when the
// request had no body left unread.
func reply(bw *bufio.Writer, resp []byte, req *request) bool {
	bw.Write(resp)
	bw.Flush()
	return !req.hasBody()
}

// handleHTTP routes and forwards one request. It returns whether the client
// connection can carry another request.
func (p *Proxy) handleHTTP(c *net.TCPConn, br *bufio.Reader, bw *bufio.Writer, fe *frontend, req *request, ip net.IP, xff []byte) bool {
	rt := p.rt.Load()
	var r *route
	switch fe.kind {
	case "service":
		r = rt.byPort[fe.port]
	case kindAppID:
		r = rt.appIDs[string(req.appID)]
	default:
		r = matchVHost(rt, req.host, req.path())
	}
	if r == nil {
		if fe.stats != nil {
			fe.stats.errors.Add(1)
		}
		return reply(bw, resp503, req)
	}
	r.requests.Add(1)
	q := requestFacts{remote: c.RemoteAddr(), plain: fe.kind == kindHTTP, host: req.host, path: req.path()}
	if r.svc.Auth != nil && req.authEnd > 0 {
		q.auth = req.head[req.authStart:req.authEnd]
	}
	if r.svc.Sticky && req.cookieEnd > 0 {
		q.cookie = cookieValue(req.head[req.cookieStart:req.cookieEnd], StickyCookie)
	}
	v, sticky := r.decide(&q)
	switch v {
	case forbid:
		return reply(bw, resp403, req)
	case toHTTPS:
		bw.WriteString("HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\nLocation: https://")
		bw.Write(req.host)
		bw.Write(req.path())
		bw.WriteString("\r\n\r\n")
		bw.Flush()
		return !req.hasBody()
	case askAuth:
		bw.WriteString(resp401)
		bw.WriteString("WWW-Authenticate: Basic realm=\"")
		bw.WriteString(r.svc.Auth.Realm)
		bw.WriteString("\"\r\n\r\n")
		bw.WriteString(body401)
		bw.Flush()
		return !req.hasBody()
	case rootRedirect:
		writeRedirect(bw, r.svc.Redir)
		return !req.hasBody()
	}
	cookieVal := q.cookie
	if cookieVal != nil {
		stripCookie(req, StickyCookie)
	}
	if r.svc.ProxyPath != "" {
		proxyPass(req, r.svc)
	}
	if req.expect {
		bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := bw.Flush(); err != nil {
			return false
		}
	}

	now := p.now()
	fresh := false
	req.bodyBuffered = !req.chunked && req.contentLength > 0 && int64(br.Buffered()) >= req.contentLength
	defer func() {
		if req.bodyBuffered {
			br.Discard(int(req.contentLength))
			req.bodyBuffered = false
		}
	}()
	for attempt := 0; ; attempt++ {
		bc := p.acquire(r, ip, sticky, !req.replayable(), fresh, now)
		if bc == nil {
			r.errors.Add(1)
			return reply(bw, resp503, req)
		}
		b := bc.b
		b.requests.Add(1)
		keep, retry := p.exchange(c, br, bw, bc, r, req, fe, xff, cookieVal)
		if retry && attempt < 2 {
			// A pooled connection the backend had closed: send again on a
			// new connection (or another backend if it refuses).
			sticky, fresh = b, true
			continue
		}
		if retry {
			r.errors.Add(1)
			bw.Write(resp502)
			bw.Flush()
			return false
		}
		return keep
	}
}

// acquire returns a connection to a backend of r, pooled when possible.
// With careful set (the request cannot be replayed) only a connection idle
// for under a second is taken from the pool; with fresh set, none is.
func (p *Proxy) acquire(r *route, ip net.IP, prefer *backend, careful, fresh bool, now time.Time) *bconn {
	nowN := now.UnixNano()
	b := prefer
	if b == nil || b.ejected(nowN) {
		b = r.pick(ip, nowN, nil)
	}
	if b == nil {
		return nil
	}
	if !fresh {
		if bc := b.getIdle(); bc != nil {
			// A request that cannot be replayed only takes a connection
			// the backend is unlikely to have closed meanwhile.
			if !careful || now.Sub(bc.idleAt) < time.Second {
				b.active.Add(1)
				return bc
			}
			bc.close()
		}
	}
	db, tc := p.dialBackend(r, ip, b)
	if tc == nil {
		return nil
	}
	s, err := newSock(tc)
	if err != nil {
		db.release(tc)
		return nil
	}
	return &bconn{c: tc, br: getReader(s), bw: getWriter(s), s: s, b: db}
}

// release puts a backend connection back in its pool or closes it.
func (p *Proxy) release(bc *bconn, reusable bool) {
	bc.b.active.Add(-1)
	if reusable {
		bc.reused = false
		bc.b.putIdle(bc, p.now())
		return
	}
	bc.close()
}

// exchange sends one request over bc and relays the response. retry is
// true when a reused connection turned out dead before anything was
// relayed and the request can be sent again.
func (p *Proxy) exchange(c *net.TCPConn, br *bufio.Reader, bw *bufio.Writer, bc *bconn, r *route, req *request, fe *frontend, xff, cookieVal []byte) (keep, retry bool) {
	reused := bc.reused
	w := bc.bw
	w.Write(req.head)
	w.Write(xff)
	w.Write(fe.xfwd)
	if req.upgrade {
		w.WriteString("Connection: Upgrade\r\n")
	}
	w.WriteString("\r\n")
	// whole: the request goes out in one flush (nothing of it reached the
	// backend before), so the wait for the answer may skip a read.
	whole := !req.chunked && (req.contentLength <= 0 || req.bodyBuffered)
	wholeLen := len(req.head) + len(xff) + len(fe.xfwd) + 2
	if req.upgrade {
		wholeLen += len("Connection: Upgrade\r\n")
	}
	if req.bodyBuffered {
		wholeLen += int(req.contentLength)
	}
	var err error
	if req.chunked || int64(br.Buffered()) < req.contentLength {
		clearDeadline(c, &req.deadline)
	}
	switch {
	case req.chunked:
		err = copyChunked(w, br)
	case req.bodyBuffered:
		body, _ := br.Peek(int(req.contentLength))
		_, err = w.Write(body)
	case req.contentLength > 0:
		err = copyN(w, br, req.contentLength)
	}
	if err == nil {
		armDeadline(bc.c, &bc.deadline, p.now(), p.cfg.ServerTimeout)
		if whole && w.Buffered() == wholeLen {
			// Sent, and the wait for the response armed, in one step
			// (sock.go), under the server timeout.
			err = bc.s.flushAwait(w)
		} else {
			err = w.Flush()
		}
	}
	if err != nil {
		p.release(bc, false)
		if reused && req.replayable() {
			return false, true
		}
		bc.b.errors.Add(1)
		r.errors.Add(1)
		bw.Write(resp502)
		bw.Flush()
		return false, false
	}

	head := req.method
	isHead := string(head) == "HEAD"
	for {
		status, line, err := readStatus(bc.br)
		if err != nil {
			p.release(bc, false)
			if reused && req.replayable() && !errors.Is(err, errBadRequest) {
				return false, true
			}
			bc.b.errors.Add(1)
			r.errors.Add(1)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				bw.Write(resp504)
			} else {
				bw.Write(resp502)
			}
			bw.Flush()
			return false, false
		}
		if status == 101 && !req.upgrade {
			// RFC 9110 §15.2.2: a server switches only to a protocol
			// the client asked for in Upgrade.
			p.release(bc, false)
			bc.b.errors.Add(1)
			r.errors.Add(1)
			bw.Write(resp502)
			bw.Flush()
			return false, false
		}
		reused = false
		bw.Write(line)
		bw.WriteString("\r\n")
		rh, err := copyResponseHeaders(bw, bc.br)
		if err != nil {
			p.release(bc, false)
			return false, false
		}
		if status >= 100 && status < 200 && status != 101 {
			bw.WriteString("\r\n")
			bw.Flush()
			continue
		}
		if h := r.answerHeaders(cookieVal, bc.b); h != (responseHeaders{}) {
			if h.setCookie != "" {
				bw.WriteString("Set-Cookie: ")
				bw.WriteString(h.setCookie)
				bw.WriteString("\r\nCache-Control: private\r\n")
			}
			if h.hsts != "" {
				bw.WriteString("Strict-Transport-Security: ")
				bw.WriteString(h.hsts)
				bw.WriteString("\r\n")
			}
		}
		if status == 101 {
			if req.bodyBuffered {
				br.Discard(int(req.contentLength)) // sent; not to be tunnelled again
				req.bodyBuffered = false
			}
			bw.WriteString("Connection: Upgrade\r\n\r\n")
			if bw.Flush() != nil {
				p.release(bc, false)
				return false, false
			}
			p.tunnel(c, br, bc)
			return false, false
		}
		noBody := isHead || status == 204 || status == 304
		untilClose := !noBody && !rh.chunked && rh.contentLength < 0
		clientKeep := !req.close && !untilClose
		if !clientKeep && !req.http10 {
			bw.WriteString("Connection: close\r\n")
		}
		bw.WriteString("\r\n")
		if !noBody && (rh.contentLength < 0 || int64(bc.br.Buffered()) < rh.contentLength) {
			clearDeadline(bc.c, &bc.deadline)
		}
		switch {
		case noBody:
		case rh.chunked:
			err = copyChunked(bw, bc.br)
		case rh.contentLength >= 0:
			err = copyN(bw, bc.br, rh.contentLength)
		default:
			err = copyUntilEOF(bw, bc.br)
		}
		if err != nil {
			bc.b.errors.Add(1)
			p.release(bc, false)
			bw.Flush()
			return false, false
		}
		// The response is read whole: the backend connection goes back
		// now; serveHTTP flushes the response to the client.
		p.release(bc, !rh.close && !untilClose && !req.upgrade && !req.http10)
		return clientKeep, false
	}
}

// tunnel splices an upgraded connection (WebSocket and the like) both ways.
func (p *Proxy) tunnel(c *net.TCPConn, br *bufio.Reader, bc *bconn) {
	defer p.release(bc, false)
	c.SetReadDeadline(time.Time{})
	clearDeadline(bc.c, &bc.deadline)
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := bc.c.Write(b); err != nil {
			return
		}
	}
	if n := bc.br.Buffered(); n > 0 {
		b, _ := bc.br.Peek(n)
		if _, err := c.Write(b); err != nil {
			return
		}
	}
	splice(c, bc.c)
}

// readStatus reads a response status line.
func readStatus(br *bufio.Reader) (int, []byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, nil, errBadRequest
		}
		return 0, nil, err
	}
	line = trimCRLF(line)
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, errBadRequest
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, nil, errBadRequest
		}
		code = code*10 + int(c-'0')
	}
	return code, line, nil
}

type respHead struct {
	contentLength int64
	chunked       bool
	close         bool
}

// copyResponseHeaders relays header lines to w, without the final CRLF,
// dropping hop-by-hop ones.
func copyResponseHeaders(w *bufio.Writer, br *bufio.Reader) (respHead, error) {
	rh := respHead{contentLength: -1}
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return rh, err
		}
		n += len(line)
		if n > maxHeadBytes {
			return rh, errHeadTooLarge
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			return rh, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return rh, errBadRequest
		}
		name, value := line[:colon], trimSpace(line[colon+1:])
		switch len(name) {
		case 10:
			if nameIs(name, "connection") {
				if hasToken(value, "close") {
					rh.close = true
				}
				continue
			}
			if nameIs(name, "keep-alive") {
				continue
			}
		case 14:
			if nameIs(name, "content-length") {
				if v, err := strconv.ParseInt(string(value), 10, 64); err == nil && v >= 0 {
					rh.contentLength = v
				}
			}
		case 17:
			if nameIs(name, "transfer-encoding") && hasToken(value, "chunked") {
				rh.chunked = true
			}
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
}

// copyN copies exactly n bytes from src to dst through dst's buffer.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		if dst.Available() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
		}
		buf := dst.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n)]
		m, err := src.Read(buf)
		if m > 0 {
			dst.Write(buf[:m])
			n -= int64(m)
		}
		if err != nil {
			if n > 0 {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
	}
	return nil
}

// copyUntilEOF copies src to dst until src ends.
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		if dst.Available() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
		}
		buf := dst.AvailableBuffer()
		buf = buf[:cap(buf)]
		m, err := src.Read(buf)
		if m > 0 {
			dst.Write(buf[:m])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyChunked relays a chunked body, trailers included. It frames the body
// exactly as Go's net/http does (RFC 9112 §7.1): a chunk-size line ends in
// CRLF with no other CR, holds hex digits (trailing whitespace and an
// extension after ';' ignored), each chunk's data ends in CRLF, trailer
// lines are header lines, and a body whose framing outweighs its data by
// more than 16 KiB is refused.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) error {
	var excess int64
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errBadRequest
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if cr := bytes.IndexByte(line, '\r'); len(line) < 2 || cr != len(line)-2 || len(line)-2 >= maxChunkLine {
			return errBadRequest // a bare LF, a stray CR, or too long
		}
		dst.Write(line)
		sz := bytes.TrimRight(line[:len(line)-2], " \t")
		if i := bytes.IndexByte(sz, ';'); i >= 0 {
			sz = sz[:i]
		}
		size, ok := parseHex(sz)
		if !ok {
			return errBadRequest
		}
		excess += int64(len(line)) - 16 - 2*size
		if excess < 0 {
			excess = 0
		}
		if excess > 16<<10 {
			return errBadRequest
		}
		if size == 0 {
			// The trailer section, read as net/http reads it: CRLF alone
			// ends it at once; anything else is header lines.
			end, err := src.Peek(2)
			if err != nil {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
			if end[0] == '\r' && end[1] == '\n' {
				dst.Write(end)
				src.Discard(2)
				return nil
			}
			if !doubleCRLFAhead(src) {
				return errBadRequest // net/http's bound on a trailer
			}
			for {
				line, err := src.ReadSlice('\n')
				if err != nil {
					if err == io.EOF {
						return io.ErrUnexpectedEOF
					}
					return err
				}
				dst.Write(line)
				t := trimCRLF(line)
				if len(t) == 0 {
					return nil
				}
				colon := bytes.IndexByte(t, ':')
				if colon <= 0 || !validName(t[:colon]) || !validValue(t[colon+1:]) {
					return errBadRequest
				}
			}
		}
		if err := copyN(dst, src, size); err != nil {
			return err
		}
		crlf, err := src.Peek(2)
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return errBadRequest
		}
		dst.Write(crlf)
		src.Discard(2)
	}
}

// doubleCRLFAhead reports whether the reader's buffer, filled as far as
// it goes, holds an end of header lines (CRLF CRLF): the bound net/http
// puts on a trailer section.
func doubleCRLFAhead(r *bufio.Reader) bool {
	for n := 4; ; n++ {
		buf, err := r.Peek(n)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// maxChunkLine bounds a chunk-size line, as Go's net/http does.
const maxChunkLine = 4096

// parseHex parses a chunk size: 1 to 16 hex digits, below 2^63.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	if n > 1<<62 {
		return 0, false // no body is that long: a lie about framing
	}
	return int64(n), true
}

// cookieValue returns the value of cookie name in a Cookie header value.
func cookieValue(h []byte, name string) []byte {
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ';'); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		part = trimSpace(part)
		if eq := bytes.IndexByte(part, '='); eq > 0 && string(part[:eq]) == name {
			return part[eq+1:]
		}
	}
	return nil
}

// stripCookie removes cookie name from the request's Cookie line, as
// HAProxy's "cookie ... insert indirect" does; an emptied line goes.
func stripCookie(req *request, name string) {
	v := req.head[req.cookieStart:req.cookieEnd]
	var out []byte
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ';'); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		t := trimSpace(part)
		if eq := bytes.IndexByte(t, '='); eq > 0 && string(t[:eq]) == name {
			continue
		}
		if len(t) == 0 {
			continue
		}
		if len(out) > 0 {
			out = append(out, "; "...)
		}
		out = append(out, t...)
	}
	// Find the start of the line to drop it whole when empty.
	lineStart := bytes.LastIndexByte(req.head[:req.cookieStart], '\n') + 1
	lineEnd := req.cookieEnd + 2 // CRLF
	var nh []byte
	nh = append(nh, req.head[:lineStart]...)
	if len(out) > 0 {
		nh = append(nh, "Cookie: "...)
		nh = append(nh, out...)
		nh = append(nh, '\r', '\n')
	}
	nh = append(nh, req.head[lineEnd:]...)
	req.head = nh
	req.cookieStart, req.cookieEnd = 0, 0
	req.method = req.head[:len(req.method)]
	req.authStart, req.authEnd = 0, 0 // checked before; offsets moved
}
