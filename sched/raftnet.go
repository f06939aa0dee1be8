package sched

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftnet/weft/internal/nodetls"
)

// tlsStream is raft's stream layer over mutual TLS with the cluster CA: a
// peer without a node certificate fails the handshake before raft reads
// a byte of its RPC.
type tlsStream struct {
	ln     net.Listener
	adv    net.Addr
	server *tls.Config
	client *tls.Config
}

func newTLSStream(bind string, adv net.Addr, id *nodetls.Identity) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if adv == nil {
		adv = ln.Addr()
	}
	return &tlsStream{ln: ln, adv: adv, server: id.ServerConfig(), client: id.ClientConfig()}, nil
}

// Accept returns the next connection; its handshake runs (bounded) on
// raft's per-connection goroutine, at the first read.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, s.server)}, nil
}

func (s *tlsStream) Close() error   { return s.ln.Close() }
func (s *tlsStream) Addr() net.Addr { return s.adv }

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d, Config: s.client}).DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("raft over TLS to %s: %w", addr, err)
	}
	return c, nil
}

// handshakeConn completes the server handshake within a deadline at the
// first read, so that a peer that connects and stays silent does not hold
// a raft goroutine for ever.
type handshakeConn struct {
	*tls.Conn
	done bool
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if !c.done {
		c.done = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Conn.Close()
			return 0, fmt.Errorf("raft peer %s: %w", c.RemoteAddr(), err)
		}
	}
	return c.Conn.Read(p)
}

// ProveNode dials a raft peer over mutual TLS and checks that it holds a
// certificate of the cluster CA issued to id: a master is made a voter
// only once it has proved it holds the join token.
func ProveNode(ctx context.Context, id *nodetls.Identity, addr, want string) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: id.ClientConfig()}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("mutual TLS with %s: %w", addr, err)
	}
	defer c.Close()
	cs := c.(*tls.Conn).ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%s showed no certificate", addr)
	}
	if got := cs.PeerCertificates[0].Subject.CommonName; got != want {
		return fmt.Errorf("%s holds a certificate for %q, not %q", addr, got, want)
	}
	return nil
}
