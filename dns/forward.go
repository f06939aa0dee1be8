package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// forwarder sends names outside the zone to upstream resolvers. Every
// upstream is asked at once (raced) and the first usable answer wins; each
// exchange is bounded by the timeout.
type forwarder struct {
	upstreams []string
	timeout   time.Duration
	sem       chan struct{}
}

func newForwarder(ups []string, timeout time.Duration, max int) *forwarder {
	return &forwarder{upstreams: ups, timeout: timeout, sem: make(chan struct{}, max)}
}

func (f *forwarder) acquire() bool {
	select {
	case f.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (f *forwarder) release() { <-f.sem }

// filterUpstreams normalises host[:port] upstreams and drops the ones that
// are this server itself (one of its listen addresses, or a local address
// on its port when it listens on a wildcard address).
func (s *Server) filterUpstreams(ups []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, u := range ups {
		hp := u
		if _, _, err := net.SplitHostPort(u); err != nil {
			hp = net.JoinHostPort(u, "53")
		}
		h, p, _ := net.SplitHostPort(hp)
		ip, err := netip.ParseAddr(h)
		if err != nil {
			s.log.Warn("ignoring upstream that is not an IP address", "upstream", u)
			continue
		}
		port, _ := strconv.Atoi(p)
		if s.isSelf(ip.Unmap(), port) {
			s.log.Info("ignoring upstream that is this server (forwarding loop)", "upstream", u)
			continue
		}
		if !seen[hp] {
			seen[hp] = true
			out = append(out, hp)
		}
	}
	return out
}

func (s *Server) isSelf(ip netip.Addr, port int) bool {
	for _, a := range s.addrs {
		h, p, _ := net.SplitHostPort(a)
		if strconv.Itoa(port) != p {
			continue
		}
		lip, err := netip.ParseAddr(h)
		if err != nil {
			continue
		}
		lip = lip.Unmap()
		if lip == ip {
			return true
		}
		if lip.IsUnspecified() && (ip.IsLoopback() || isLocalAddr(ip)) {
			return true
		}
	}
	return false
}

func isLocalAddr(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

var errNoUpstream = errors.New("no upstream resolver configured")

// exchange sends the query to every upstream at once over network (udp or
// tcp, the client's transport) and returns the first answer that is not
// SERVFAIL or REFUSED (or, failing that, the last answer received).
func (f *forwarder) exchange(ctx context.Context, pkt []byte, network string) ([]byte, error) {
	if len(f.upstreams) == 0 {
		return nil, errNoUpstream
	}
	if len(pkt) < hdrLen {
		return nil, errors.New("short query")
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, len(f.upstreams))
	for _, u := range f.upstreams {
		go func() {
			b, err := exchangeOne(ctx, u, pkt, network)
			ch <- result{b, err}
		}()
	}
	var last []byte
	var errs []error
	for range f.upstreams {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		rc := r.b[3] & 0xF
		if rc != 2 && rc != 5 { // SERVFAIL, REFUSED: wait for another upstream
			return r.b, nil
		}
		last = r.b
	}
	if last != nil {
		return last, nil
	}
	return nil, errors.Join(errs...)
}

// exchangeOne asks one upstream, with a fresh random id so that a spoofed
// or stale answer is not accepted, and restores the client's id.
func exchangeOne(ctx context.Context, upstream string, pkt []byte, network string) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, upstream)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", upstream, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	id := binary.BigEndian.Uint16(pkt)
	q := append([]byte(nil), pkt...)
	nid := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(q, nid)
	buf := make([]byte, 65535)
	if network == "tcp" {
		out := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
		if _, err := c.Write(append(out, q...)); err != nil {
			return nil, fmt.Errorf("writing to %s: %w", upstream, err)
		}
		var lb [2]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return nil, fmt.Errorf("reading from %s: %w", upstream, err)
		}
		n := int(binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return nil, fmt.Errorf("reading from %s: %w", upstream, err)
		}
		if n < hdrLen || binary.BigEndian.Uint16(buf) != nid {
			return nil, fmt.Errorf("bad answer from %s", upstream)
		}
		binary.BigEndian.PutUint16(buf, id)
		return buf[:n], nil
	}
	if _, err := c.Write(q); err != nil {
		return nil, fmt.Errorf("writing to %s: %w", upstream, err)
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("reading from %s: %w", upstream, err)
		}
		if n < hdrLen || binary.BigEndian.Uint16(buf) != nid || buf[2]&0x80 == 0 {
			continue // not our answer
		}
		binary.BigEndian.PutUint16(buf, id)
		return buf[:n], nil
	}
}
