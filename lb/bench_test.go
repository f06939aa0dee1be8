package lb

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// BenchmarkHTTPKeepAlive measures one keep-alive request through the lean
// HTTP path (client and backend in-process; see bench/lb for the
// side-by-side with HAProxy). Watch allocs/op: the path should not allocate.
func BenchmarkHTTPKeepAlive(b *testing.B) {
	body := make([]byte, 1024)
	be := startHTTPBackend(b, "b", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		w.Write(body)
	})
	src := newFakeSource()
	src.set([]api.App{app("/b", freePort(b), map[string]string{"HAPROXY_0_VHOST": "b.test"})}, []api.Task{task("/b", 1, be.port)})
	p := startProxy(b, testConfig(src))
	c, err := net.Dial("tcp", p.Addr("http"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: b.test\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Write(req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

// tcpBench starts a proxy with one TCP-mode service in front of an echo
// backend and returns the service address.
func tcpBench(b *testing.B) string {
	echo := startTCPEcho(b, "")
	sp := freePort(b)
	src := newFakeSource()
	src.set([]api.App{app("/echo", sp, nil)}, []api.Task{task("/echo", 1, echo)})
	startProxy(b, testConfig(src))
	return "127.0.0.1:" + strconv.Itoa(sp)
}

// BenchmarkTCPRoundTrip measures one small message and its echo through a
// TCP-mode service port on a connection kept open (per-message cost).
func BenchmarkTCPRoundTrip(b *testing.B) {
	addr := tcpBench(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1024)
	buf := make([]byte, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTCPConnect measures a connection through a TCP-mode service
// port: connect, one small echo, close (per-connection cost: accept,
// tracking, backend dial, goroutines). The client resets rather than
// closes, so only the proxy's backend side leaves a TIME_WAIT behind; runs
// of more than ~25k connections within a minute still run out of
// ephemeral ports.
func BenchmarkTCPConnect(b *testing.B) {
	addr := tcpBench(b)
	msg := []byte("ping")
	buf := make([]byte, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(msg)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}
