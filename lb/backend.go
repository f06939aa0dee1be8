package lb

import (
	"bufio"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// backend is the live state of one backend address, shared by every
// service that routes to it and kept across table swaps.
type backend struct {
	addr     string
	ap       netip.AddrPort // addr parsed, when it is ip:port (dialled without a lookup)
	serverID string         // sticky cookie value
	cookie   string         // the Set-Cookie value that names it
	name     string         // HAProxy server name, as marathon-lb writes it

	active       atomic.Int64 // TCP connections and HTTP requests in flight (leastconn)
	ejectedUntil atomic.Int64 // unix nanos; passive ejection after a failed connect
	conns        atomic.Uint64
	requests     atomic.Uint64
	failures     atomic.Uint64 // connect failures
	errors       atomic.Uint64 // errors after connect

	mu         sync.Mutex
	idle       []*bconn             // keep-alive pool
	live       map[io.Closer]string // every open connection (for the drain timeout)
	removed    bool
	drainTimer *time.Timer
}

// bconn is a pooled HTTP connection to a backend.
type bconn struct {
	c        *net.TCPConn
	br       *bufio.Reader
	bw       *bufio.Writer
	s        *sock // br and bw read and write through it (sock.go)
	b        *backend
	reused   bool
	idleAt   time.Time
	deadline time.Time // read deadline set on c
}

func newBackend(addr, name, serverID string) *backend {
	ap, _ := netip.ParseAddrPort(addr)
	return &backend{addr: addr, ap: ap, name: name, serverID: serverID, cookie: StickyCookie + "=" + serverID + "; path=/", live: map[io.Closer]string{}}
}

func (b *backend) ejected(now int64) bool { return b.ejectedUntil.Load() > now }

func (b *backend) track(c io.Closer, kind string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed && b.drainTimer == nil {
		return false // drained already
	}
	b.live[c] = kind
	return true
}

func (b *backend) untrack(c io.Closer) {
	b.mu.Lock()
	delete(b.live, c)
	b.mu.Unlock()
}

// getIdle returns a pooled connection, or nil.
func (b *backend) getIdle() *bconn {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := len(b.idle); n > 0; n = len(b.idle) {
		bc := b.idle[n-1]
		b.idle = b.idle[:n-1]
		bc.reused = true
		return bc
	}
	return nil
}

const maxIdlePerBackend = 256

// putIdle returns a connection to the pool; it closes it when the backend
// is being drained or the pool is full.
func (b *backend) putIdle(bc *bconn, now time.Time) {
	b.mu.Lock()
	if b.removed || len(b.idle) >= maxIdlePerBackend {
		b.mu.Unlock()
		bc.close()
		return
	}
	bc.idleAt = now
	b.idle = append(b.idle, bc)
	b.mu.Unlock()
}

func (bc *bconn) close() {
	bc.b.untrack(bc.c)
	bc.c.Close()
	putReader(bc.br)
	putWriter(bc.bw)
	bc.br, bc.bw = nil, nil
}

// markRemoved starts draining: idle connections close now, in-flight ones
// finish, and whatever is still open after drain is closed.
func (b *backend) markRemoved(drain time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed {
		return
	}
	b.removed = true
	idle := b.idle
	b.idle = nil
	for _, bc := range idle {
		go bc.close()
	}
	b.drainTimer = time.AfterFunc(drain, func() {
		b.mu.Lock()
		var cs []io.Closer
		for c := range b.live {
			cs = append(cs, c)
		}
		b.drainTimer = nil
		b.mu.Unlock()
		for _, c := range cs {
			c.Close()
		}
	})
}

// readmit cancels a drain: the backend is back in the table.
func (b *backend) readmit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.removed {
		return
	}
	b.removed = false
	if b.drainTimer != nil {
		b.drainTimer.Stop()
		b.drainTimer = nil
	}
}

// closeIdleOlder closes pooled connections idle since before t.
func (b *backend) closeIdleOlder(t time.Time) {
	b.mu.Lock()
	var old []*bconn
	keep := b.idle[:0]
	for _, bc := range b.idle {
		if bc.idleAt.Before(t) {
			old = append(old, bc)
		} else {
			keep = append(keep, bc)
		}
	}
	b.idle = keep
	b.mu.Unlock()
	for _, bc := range old {
		bc.close()
	}
}

// route is a service of the live table with its backends resolved.
type route struct {
	svc      *Service
	primary  []*backend
	fallback []*backend
	byCookie map[string]*backend
	rr       atomic.Uint64
	authOK   sync.Map // Authorization header value → true, once verified

	// Stats of the service (frontend and backend are one here).
	conns    *atomic.Uint64
	requests *atomic.Uint64
	errors   *atomic.Uint64
	active   *atomic.Int64
}

// pick chooses a backend: same-site tier first, then other sites, skipping
// ejected backends and those in tried; with every backend ejected it tries
// them anyway (an ejection is only a guess).
func (r *route) pick(client net.IP, now int64, tried []*backend) *backend {
	for pass := 0; pass < 2; pass++ {
		for _, tier := range [][]*backend{r.primary, r.fallback} {
			if b := r.pickIn(tier, client, now, tried, pass == 1); b != nil {
				return b
			}
		}
	}
	return nil
}

func in(b *backend, l []*backend) bool {
	for _, x := range l {
		if x == b {
			return true
		}
	}
	return false
}

func (r *route) pickIn(tier []*backend, client net.IP, now int64, tried []*backend, ignoreEjection bool) *backend {
	n := len(tier)
	if n == 0 {
		return nil
	}
	ok := func(b *backend) bool { return (ignoreEjection || !b.ejected(now)) && !in(b, tried) }
	switch r.svc.Balance {
	case BalanceLeastConn:
		var best *backend
		for _, b := range tier {
			if ok(b) && (best == nil || b.active.Load() < best.active.Load()) {
				best = b
			}
		}
		return best
	case BalanceSource:
		h := fnv.New32a()
		h.Write(client)
		start := int(h.Sum32() % uint32(n))
		for i := 0; i < n; i++ {
			if b := tier[(start+i)%n]; ok(b) {
				return b
			}
		}
		return nil
	default:
		start := int(r.rr.Add(1) % uint64(n))
		for i := 0; i < n; i++ {
			if b := tier[(start+i)%n]; ok(b) {
				return b
			}
		}
		return nil
	}
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	if br != nil {
		br.Reset(nil)
		readerPool.Put(br)
	}
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	if bw != nil {
		bw.Reset(nil)
		writerPool.Put(bw)
	}
}

// release ends a proxied TCP connection to b that dialBackend opened.
func (b *backend) release(bc *net.TCPConn) {
	b.untrack(bc)
	b.active.Add(-1)
	bc.Close()
}
