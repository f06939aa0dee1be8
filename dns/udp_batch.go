package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share: recvmmsg
// and sendmmsg on Linux.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

const batchSize = 32

// serveUDPBatch reads and answers up to batchSize datagrams per system call
// each way. Answers are built into per-message buffers, then sent together.
func (s *Server) serveUDPBatch(ctx context.Context, c *net.UDPConn) {
	var bc batchConn
	if la, ok := c.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		bc = ipv6.NewPacketConn(c)
	} else {
		bc = ipv4.NewPacketConn(c)
	}
	w := newWorker()
	in := make([]ipv4.Message, batchSize)
	out := make([]ipv4.Message, 0, batchSize)
	outBufs := make([][]byte, batchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 65535)}
		outBufs[i] = make([]byte, 0, 4096)
	}
	outMsgs := make([]ipv4.Message, batchSize)
	for i := range outMsgs {
		outMsgs[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		start := time.Now()
		out = out[:0]
		for i := 0; i < n; i++ {
			m := &in[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			p := m.Buffers[0][:m.N]
			w.out = outBufs[i][:0]
			act := s.handle(w, p, from.Addr().Unmap(), false)
			outBufs[i] = w.out[:0]
			switch act {
			case actRespond:
				om := &outMsgs[len(out)]
				om.Buffers[0] = w.out
				om.Addr = m.Addr
				out = append(out, *om)
			case actForward:
				pkt := append([]byte(nil), p...)
				if len(w.out) > 0 && w.out[2]&0x80 == 0 {
					pkt = append(pkt[:0], w.out...)
				}
				s.forwardUDP(ctx, c, pkt, from, start)
			}
		}
		for sent := 0; sent < len(out); {
			k, err := bc.WriteBatch(out[sent:], 0)
			if err != nil {
				break
			}
			sent += k
		}
		if len(out) > 0 {
			el := time.Since(start).Seconds()
			for range out {
				s.m.latency.Observe(el)
			}
		}
	}
}

func (s *Server) forwardUDP(ctx context.Context, c *net.UDPConn, pkt []byte, from netip.AddrPort, start time.Time) {
	if !s.fwd.acquire() {
		s.servfail(c, pkt, from)
		return
	}
	go func() {
		defer s.fwd.release()
		resp := s.forward(ctx, pkt, "udp")
		if resp == nil {
			s.servfail(c, pkt, from)
			return
		}
		_, _ = c.WriteToUDPAddrPort(resp, from)
		s.m.latency.Observe(time.Since(start).Seconds())
	}()
}
