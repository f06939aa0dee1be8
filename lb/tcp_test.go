package lb

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// throughSplice returns the client end and the backend end of a
// connection that runs through splice, and a channel closed when splice
// returns.
func throughSplice(t testing.TB) (client, backend *net.TCPConn, done chan struct{}) {
	client, front := tcpPair(t)
	back, backend := tcpPair(t)
	done = make(chan struct{})
	go func() {
		defer close(done)
		splice(front, back)
		front.Close()
		back.Close()
	}()
	return client, backend, done
}

func TestSpliceSmallMessagesBothWays(t *testing.T) {
	client, backend, done := throughSplice(t)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := backend.Read(buf)
			if err != nil {
				backend.CloseWrite()
				return
			}
			backend.Write(bytes.ToUpper(buf[:n]))
		}
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for i := 0; i < 2000; i++ {
		if _, err := client.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf[:4]); err != nil || string(buf[:4]) != "PING" {
			t.Fatalf("round %d: got %q, %v", i, buf[:4], err)
		}
	}
	client.CloseWrite()
	if n, err := client.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after half-close: got %d bytes, %v; want EOF", n, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("splice did not return after both sides closed")
	}
}

// A FIN that arrives together with the last data must still reach the
// other side, promptly: queued before splice starts (the first read takes
// both), and sent while splice already waits.
func TestSpliceDataThenFINTogether(t *testing.T) {
	for i := 0; i < 40; i++ {
		client, front := tcpPair(t)
		back, backend := tcpPair(t)
		early := i%2 == 0
		if early {
			client.Write([]byte("last words"))
			client.CloseWrite()
			time.Sleep(time.Millisecond)
		}
		go splice(front, back)
		if !early {
			client.Write([]byte("last words"))
			client.CloseWrite()
		}
		backend.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		got, err := io.ReadAll(backend)
		if err != nil || string(got) != "last words" {
			t.Fatalf("run %d (queued first: %v): got %q, %v", i, early, got, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("run %d: the FIN took %s to pass", i, d)
		}
		backend.CloseWrite()
	}
}

// A receiver that does not read makes the proxy's writes partial; a large
// stream switches to splice. Every byte must arrive in order.
func TestSpliceSlowReaderAndBulk(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chunk int
	}{{"small writes", 1000}, {"bulk", 256 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			client, backend, done := throughSplice(t)
			want := make([]byte, 8<<20)
			rand.Read(want)
			go func() {
				for off := 0; off < len(want); off += tc.chunk {
					if _, err := client.Write(want[off:min(off+tc.chunk, len(want))]); err != nil {
						return
					}
				}
				client.CloseWrite()
			}()
			time.Sleep(200 * time.Millisecond) // let the buffers fill
			backend.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(backend)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d; equal prefix %d", len(got), len(want), commonPrefix(got, want))
			}
			backend.CloseWrite()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("splice did not return")
			}
		})
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// Closing the client side while the proxy waits must end splice (drain and
// shutdown close tracked connections).
func TestSpliceEndsWhenClosed(t *testing.T) {
	client, front := tcpPair(t)
	back, backend := tcpPair(t)
	done := make(chan struct{})
	go func() { defer close(done); splice(front, back) }()
	client.Write([]byte("x"))
	buf := make([]byte, 1)
	backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(backend, buf); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { front.Close(); back.Close(); close(closed) }()
	for _, ch := range []chan struct{}{closed, done} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("close or splice hung")
		}
	}
}
