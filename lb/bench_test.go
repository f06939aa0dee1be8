package lb

import (
	"bufio"
	"io"
	"net"
	"net/http"
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
