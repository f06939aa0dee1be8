package mesh

import (
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// gossipTransport is memberlist's transport (UDP packets and TCP streams
// on one port) without the cost its NetTransport puts on every packet an
// idle node receives: a fresh 64 KiB buffer, allocated and zeroed per
// packet for a ping of a hundred bytes, and the garbage collections that
// follow. It reads into one buffer and hands memberlist a copy of just the
// bytes received (memberlist may keep a packet's buffer, so the read buffer
// is never lent out). Sends go to the parsed address without a resolver
// lookup. Everything else is as NetTransport does it.
type gossipTransport struct {
	bind     string
	tcp      *net.TCPListener
	udp      *net.UDPConn
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	logger   *log.Logger
	shutdown atomic.Bool
	done     chan struct{} // closed by Shutdown: nothing more goes to memberlist
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// gossipRecvBuf is the UDP socket's receive buffer (as NetTransport asks
// for): a burst of gossip waits there while the reader is busy.
const gossipRecvBuf = 2 << 20

// maxGossipPacket is the largest UDP payload there is.
const maxGossipPacket = 65536

// newGossipTransport listens on TCP and UDP at bind:port (port 0: one the
// kernel picks, the same for both).
func newGossipTransport(bind string, port int, logger *log.Logger) (*gossipTransport, error) {
	ip := net.ParseIP(bind)
	if ip == nil {
		return nil, fmt.Errorf("gossip bind address %q is not an IP address", bind)
	}
	t := &gossipTransport{bind: bind, packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn), done: make(chan struct{}), logger: logger}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, fmt.Errorf("listening for gossip streams on %s: %w", net.JoinHostPort(bind, fmt.Sprint(port)), err)
	}
	if port == 0 {
		port = tcp.Addr().(*net.TCPAddr).Port
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("listening for gossip packets on %s: %w", net.JoinHostPort(bind, fmt.Sprint(port)), err)
	}
	// As NetTransport: ask for 2 MiB, settle for what the kernel allows.
	for size := gossipRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t.tcp, t.udp = tcp, udp
	t.wg.Add(2)
	go t.acceptStreams()
	go t.readPackets()
	return t, nil
}

func (t *gossipTransport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is NetTransport's: the given address, else the bound
// one (a private address of this host when bound to every address).
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("gossip advertise address %q is not an IP address", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		if port == 0 {
			port = t.port()
		}
		return a, port, nil
	}
	a := t.tcp.Addr().(*net.TCPAddr).IP
	if a.IsUnspecified() {
		s, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("finding an address to advertise for gossip: %w", err)
		}
		if s == "" {
			return nil, 0, errors.New("no private address to advertise for gossip: pass --gossip-advertise")
		}
		if a = net.ParseIP(s); a == nil {
			return nil, 0, fmt.Errorf("gossip advertise address %q is not an IP address", s)
		}
	}
	return a, t.port(), nil
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ua, err := parseUDPAddr(a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteToUDP(b, ua)
	return time.Now(), err
}

// parseUDPAddr parses host:port without a resolver when host is an IP
// address (memberlist's addresses always are); names go to the resolver.
func parseUDPAddr(s string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip != nil {
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("bad port in gossip address %q", s)
		}
		return &net.UDPAddr{IP: ip, Port: p}, nil
	}
	return net.ResolveUDPAddr("udp", s)
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the listeners and waits for the readers, which no longer
// wait for memberlist to take what they hold (it may be gone: a serf that
// failed to start).
func (t *gossipTransport) Shutdown() error {
	if t.shutdown.Swap(true) {
		return nil
	}
	close(t.done)
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
	return nil
}

// readPackets hands each datagram to memberlist in a buffer of its own
// size.
func (t *gossipTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxGossipPacket)
	for {
		n, from, err := t.udp.ReadFromUDP(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.logger.Printf("[ERR] memberlist: reading a gossip packet: %v", err)
			continue
		}
		if n < 1 {
			t.logger.Printf("[ERR] memberlist: empty gossip packet from %s", from)
			continue
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: ts}:
		case <-t.done:
			return
		}
	}
}

// acceptStreams is NetTransport's accept loop: on an error it backs off
// from 5 ms up to 1 s.
func (t *gossipTransport) acceptStreams() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: accepting a gossip stream: %v", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.streamCh <- conn:
		case <-t.done:
			conn.Close()
			return
		}
	}
}
