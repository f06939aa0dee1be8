package lb

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// The HTTP path serves keep-alive requests inside a RawConn.Read session
// that waits for the next request without reading first (sock.go). These
// tests send what such a wait could miss if it were wrong: a request that
// arrives while the previous one is still at the backend, a head split
// over several writes, a batch of pipelined requests with bodies, and a
// half-close. Each must be answered well within the 60 s idle timeout.

// sessionProxy starts a proxy in front of a backend that answers after
// delay with "<path> <body length>", and returns a connection to its
// vhost frontend (deadline 5 s).
func sessionProxy(t *testing.T, delay time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	be := startHTTPBackend(t, "s", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(delay)
		io.WriteString(w, r.URL.Path+" "+strconv.Itoa(len(body)))
	})
	src := newFakeSource()
	src.set([]api.App{app("/s", freePort(t), map[string]string{"HAPROXY_0_VHOST": "s.test"})}, []api.Task{task("/s", 1, be.port)})
	cfg := testConfig(src)
	cfg.ClientIdleTimeout = 60 * time.Second
	p := startProxy(t, cfg)
	c, err := net.Dial("tcp", p.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

func expectAnswer(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("waiting for %q: %v", want, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, b, want)
	}
}

func TestSessionPipelinedWhileAtBackend(t *testing.T) {
	c, br := sessionProxy(t, 200*time.Millisecond)
	c.Write([]byte("GET /one HTTP/1.1\r\nHost: s.test\r\n\r\n"))
	// The second request comes while the first is at the backend: after
	// the proxy has read the socket empty, before it waits again.
	time.Sleep(100 * time.Millisecond)
	c.Write([]byte("GET /two HTTP/1.1\r\nHost: s.test\r\n\r\n"))
	start := time.Now()
	expectAnswer(t, br, "/one 0")
	expectAnswer(t, br, "/two 0")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("two pipelined requests took %s", d)
	}
}

func TestSessionSplitHead(t *testing.T) {
	c, br := sessionProxy(t, 0)
	for i := 0; i < 3; i++ {
		for _, part := range []string{"GET /split HT", "TP/1.1\r\nHo", "st: s.test\r\nContent-Length: 3\r\n", "\r\nab", "c"} {
			c.Write([]byte(part))
			time.Sleep(20 * time.Millisecond)
		}
		expectAnswer(t, br, "/split 3")
	}
}

func TestSessionPipelinedBatch(t *testing.T) {
	c, br := sessionProxy(t, 0)
	var batch strings.Builder
	for i := 0; i < 20; i++ {
		body := strings.Repeat("x", i)
		batch.WriteString("POST /b" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: s.test\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
	c.Write([]byte(batch.String()))
	for i := 0; i < 20; i++ {
		expectAnswer(t, br, "/b"+strconv.Itoa(i)+" "+strconv.Itoa(i))
	}
}

func TestSessionBadHeadAfterGood(t *testing.T) {
	c, br := sessionProxy(t, 0)
	c.Write([]byte("GET /ok HTTP/1.1\r\nHost: s.test\r\n\r\nGET /bad HTTP/1.1\r\nHost: s.test\r\nBad Name: x\r\n\r\n"))
	expectAnswer(t, br, "/ok 0")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("a malformed pipelined head: %v %v, want 400", resp, err)
	}
}

func TestSessionHalfClose(t *testing.T) {
	c, br := sessionProxy(t, 50*time.Millisecond)
	c.Write([]byte("GET /last HTTP/1.1\r\nHost: s.test\r\n\r\n"))
	time.Sleep(10 * time.Millisecond)
	c.(*net.TCPConn).CloseWrite()
	expectAnswer(t, br, "/last 0")
	start := time.Now()
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after a half-close and its answer: %v %v, want EOF", n, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the proxy closed %s after the client's half-close", d)
	}
}
