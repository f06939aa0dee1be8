package dns

import (
	"encoding/binary"
	"math/rand/v2"

	mdns "github.com/miekg/dns"
)

const (
	hdrLen        = 12
	maxKeyLen     = 1024
	defaultUDPMax = 512
)

// query is what the fast path reads from a request.
type query struct {
	id       uint16
	rd, cd   bool
	qname    []byte // wire form, as sent
	qEnd     int    // offset just past qtype/qclass
	qtype    uint16
	qclass   uint16
	key      []byte // lower-case text form, for the table lookup
	zoneOff  int    // offset of the zone suffix in the packet, 0 when outside the zone
	edns     bool
	udpSize  uint16
	do       bool
	ednsVers uint8
}

// parseQuery is the fast path's parser: one question, no answer or
// authority records, at most an OPT record. It reports false for anything
// else, which the slow path (miekg/dns) then handles. It never panics on
// any input.
func parseQuery(p []byte, zoneWire []byte, q *query, keybuf []byte) bool {
	if len(p) < hdrLen {
		return false
	}
	flags := binary.BigEndian.Uint16(p[2:])
	if flags&0x8000 != 0 || (flags>>11)&0xF != 0 { // a response, or not QUERY
		return false
	}
	qd := binary.BigEndian.Uint16(p[4:])
	an := binary.BigEndian.Uint16(p[6:])
	ns := binary.BigEndian.Uint16(p[8:])
	ar := binary.BigEndian.Uint16(p[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return false
	}
	q.id = binary.BigEndian.Uint16(p)
	q.rd = flags&0x0100 != 0
	q.cd = flags&0x0010 != 0
	// The name: plain labels only (no compression in a question).
	off := hdrLen
	key := keybuf[:0]
	var labelStarts [128]int
	nl := 0
	for {
		if off >= len(p) {
			return false
		}
		l := int(p[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(p) || nl == len(labelStarts) {
			return false
		}
		labelStarts[nl] = off
		nl++
		for _, c := range p[off+1 : off+1+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				key = append(key, c+('a'-'A'))
			case c == '.' || c == '\\':
				key = append(key, '\\', c)
			case c < '!' || c > '~':
				key = append(key, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
			default:
				key = append(key, c)
			}
		}
		key = append(key, '.')
		off += 1 + l
		if off-hdrLen > 255 || len(key) > maxKeyLen {
			return false
		}
	}
	if nl == 0 {
		key = append(key, '.')
	}
	q.qname = p[hdrLen:off]
	if off+4 > len(p) {
		return false
	}
	q.qtype = binary.BigEndian.Uint16(p[off:])
	q.qclass = binary.BigEndian.Uint16(p[off+2:])
	off += 4
	q.qEnd = off
	q.key = key
	// Is the name inside the zone? Compare the trailing labels with the zone's.
	q.zoneOff = 0
	zl := len(zoneWire)
	if nl > 0 && len(q.qname) >= zl {
		start := hdrLen + len(q.qname) - zl
		// start must be a label boundary.
		boundary := false
		for i := 0; i < nl; i++ {
			if labelStarts[i] == start {
				boundary = true
				break
			}
		}
		if boundary && equalFold(p[start:start+zl], zoneWire) {
			q.zoneOff = start
		}
	}
	q.edns, q.do, q.udpSize, q.ednsVers = false, false, 0, 0
	if ar == 1 {
		// OPT: root name, type 41.
		if off+11 > len(p) || p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != mdns.TypeOPT {
			return false
		}
		q.edns = true
		q.udpSize = binary.BigEndian.Uint16(p[off+3:])
		q.ednsVers = p[off+6]
		q.do = p[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(p[off+9:]))
		off += 11 + rdlen
		if off > len(p) {
			return false
		}
	}
	return off == len(p)
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// worker holds per-goroutine scratch space so serving allocates nothing.
type worker struct {
	q     query
	key   [maxKeyLen + 8]byte
	out   []byte
	order []int
	rng   *rand.PCG
}

func newWorker() *worker {
	return &worker{out: make([]byte, 0, 65535+2), order: make([]int, 0, 64), rng: rand.NewPCG(rand.Uint64(), rand.Uint64())}
}

func (w *worker) intn(n int) int { return int(w.rng.Uint64() % uint64(n)) }

// response flags
const (
	flagQR = 0x8000
	flagAA = 0x0400
	flagTC = 0x0200
	flagRD = 0x0100
	flagRA = 0x0080
	flagCD = 0x0010
)

// writeHeader starts a response to q.
func (w *worker) start(p []byte, q *query, flags uint16, rcode int) {
	b := w.out[:0]
	b = binary.BigEndian.AppendUint16(b, q.id)
	f := flags | flagQR | uint16(rcode&0xF)
	if q.rd {
		f |= flagRD
	}
	if q.cd {
		f |= flagCD
	}
	b = binary.BigEndian.AppendUint16(b, f)
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0)
	b = append(b, p[hdrLen:q.qEnd]...) // the question as the client sent it
	w.out = b
}

func (w *worker) setCounts(an, ns, ar int) {
	binary.BigEndian.PutUint16(w.out[6:], uint16(an))
	binary.BigEndian.PutUint16(w.out[8:], uint16(ns))
	binary.BigEndian.PutUint16(w.out[10:], uint16(ar))
}

// finishOPT appends the OPT record when the query had one.
func (w *worker) finishOPT(q *query, ar int, rcode int) int {
	if !q.edns {
		return ar
	}
	var ttl uint32
	ttl |= uint32(rcode>>4) << 24
	if q.do {
		ttl |= 0x8000
	}
	b := append(w.out, 0)
	b = binary.BigEndian.AppendUint16(b, mdns.TypeOPT)
	b = binary.BigEndian.AppendUint16(b, ourUDPSize)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = append(b, 0, 0)
	w.out = b
	return ar + 1
}

// ourUDPSize is the payload size weft advertises (DNS flag day 2020).
const ourUDPSize = 1232

func limitFor(q *query, tcp bool) int {
	if tcp {
		return 65535
	}
	if !q.edns || q.udpSize < defaultUDPMax {
		return defaultUDPMax
	}
	return int(q.udpSize)
}

// answerTable writes the answer for an in-table name into w.out.
func (w *worker) answerTable(p []byte, q *query, t *Table, a *answer, site uint16, limit int, ra uint16) {
	w.start(p, q, flagAA|ra, mdns.RcodeSuccess)
	optLen := 0
	if q.edns {
		optLen = 11
	}
	// Order: records of the querying node's site first, then the rest, each
	// group shuffled.
	n := len(a.rrs)
	order := w.order[:0]
	for i := 0; i < n; i++ {
		order = append(order, i)
	}
	first := n
	if a.nsites > 1 && site != 0 {
		k := 0
		for i := 0; i < n; i++ {
			if a.site[order[i]] == site {
				order[k], order[i] = order[i], order[k]
				k++
			}
		}
		first = k
	}
	shuffle(w, order[:first])
	shuffle(w, order[first:])
	w.order = order
	an, ar := 0, 0
	tc := false
	for _, i := range order {
		if len(w.out)+len(a.rrs[i])+optLen > limit {
			tc = true
			break
		}
		w.out = append(w.out, a.rrs[i]...)
		an++
	}
	if !tc {
		for _, x := range a.extra {
			if len(w.out)+len(x)+optLen > limit {
				break
			}
			w.out = append(w.out, x...)
			ar++
		}
	} else {
		binary.BigEndian.PutUint16(w.out[2:], binary.BigEndian.Uint16(w.out[2:])|flagTC)
	}
	ar = w.finishOPT(q, ar, 0)
	w.setCounts(an, 0, ar)
}

func shuffle(w *worker, s []int) {
	for i := len(s) - 1; i > 0; i-- {
		j := w.intn(i + 1)
		s[i], s[j] = s[j], s[i]
	}
}

// answerNegative writes NXDOMAIN or NODATA with the zone's SOA.
func (w *worker) answerNegative(p []byte, q *query, t *Table, rcode int, ra uint16) {
	w.start(p, q, flagAA|ra, rcode)
	w.out = t.appendSOA(w.out, q.zoneOff)
	ar := w.finishOPT(q, 0, rcode)
	w.setCounts(0, 1, ar)
}

// answerRcode writes an empty response with rcode.
func (w *worker) answerRcode(p []byte, q *query, rcode int, ra uint16) {
	w.start(p, q, ra, rcode)
	ar := w.finishOPT(q, 0, rcode)
	w.setCounts(0, 0, ar)
}
