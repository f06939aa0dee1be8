package lb

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// requestLines are the request lines the differential target puts before
// the fuzzed head: the target is about header fields and body framing,
// not about request-target syntax, where Go's URL parser and the lb
// (which forwards the target as it came) differ on purpose.
var requestLines = []string{"GET / HTTP/1.1\r\n", "POST /x HTTP/1.1\r\n", "GET / HTTP/1.0\r\n"}

// lbFrame parses one request as the lb does and relays its body to
// nowhere; it returns how many bytes of in the request took.
func lbFrame(in []byte) (int, bool) {
	r := bytes.NewReader(in)
	br := bufio.NewReaderSize(r, 16<<10)
	var req request
	if err := readRequest(br, &req); err != nil {
		return 0, false
	}
	w := bufio.NewWriter(io.Discard)
	switch {
	case req.chunked:
		if copyChunked(w, br) != nil {
			return 0, false
		}
	case req.contentLength > 0:
		if copyN(w, br, req.contentLength) != nil {
			return 0, false
		}
	}
	return len(in) - r.Len() - br.Buffered(), true
}

// goFrame does the same with net/http's request reader. trailer says
// whether the body ended in trailer fields.
func goFrame(in []byte) (n int, ok, trailer bool) {
	r := bytes.NewReader(in)
	br := bufio.NewReaderSize(r, 16<<10)
	req, err := http.ReadRequest(br)
	if err != nil {
		return 0, false, false
	}
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		return 0, false, false
	}
	return len(in) - r.Len() - br.Buffered(), true, len(req.Trailer) > 0
}

// lbStricter reports the requests the lb refuses on purpose where Go's
// reader accepts them (RFC 9112 asks for 400 in each case): a field name
// that is not a token (whitespace before the colon, an obs-fold line),
// Content-Length together with Transfer-Encoding, Transfer-Encoding in
// HTTP/1.0, a head beyond the lb's limit, and trailer fields that are not
// plain header lines (the lb checks them as it checks the head; net/http
// folds and keeps them).
func lbStricter(in []byte, trailer bool) bool {
	if trailer {
		return true
	}
	end := bytes.Index(in, []byte("\n\r\n"))
	if e2 := bytes.Index(in, []byte("\n\n")); e2 >= 0 && (end < 0 || e2 < end) {
		end = e2
	}
	if end < 0 {
		end = len(in)
	}
	if end > maxHeadBytes-256 {
		return true
	}
	lines := bytes.Split(in[:end], []byte("\n"))
	cl, te := false, false
	for _, l := range lines[1:] {
		l = bytes.TrimSuffix(l, []byte("\r"))
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !validName(l[:colon]) {
			return true
		}
		switch {
		case nameIs(l[:colon], "content-length"):
			cl = true
		case nameIs(l[:colon], "transfer-encoding"):
			te = true
		}
	}
	return (cl && te) || (te && bytes.HasPrefix(in, []byte("GET / HTTP/1.0")))
}

// FuzzHTTP1Differential feeds the same bytes to the lb's request parser
// and to net/http's: they must agree on accepting the request and on
// where its body ends, save where the lb is stricter by design.
func FuzzHTTP1Differential(f *testing.F) {
	for _, s := range []string{
		"Host: a\r\n\r\n",
		"Host: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
		"Host: a\r\nContent-Length : 5\r\n\r\nhello",
		"Host: a\r\nX: a\r\n b\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"Host: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"Host: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
		"Host: a\r\nContent-Length: +2\r\n\r\nab",
		"Host: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"Host: a\r\nX: a\x00b\r\n\r\n",
		"Host: a\r\nX: a\rb\r\n\r\n",
		"Host: a\r\nHost: b\r\n\r\n",
		"Host: a\nContent-Length: 1\n\nx",
	} {
		for i := range requestLines {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, line uint8, rest []byte) {
		in := append([]byte(requestLines[int(line)%len(requestLines)]), rest...)
		ln, lok := lbFrame(in)
		gn, gok, trailer := goFrame(in)
		switch {
		case lok && !gok:
			t.Fatalf("the lb accepts what net/http refuses: %q", in)
		case !lok && gok && !lbStricter(in, trailer):
			t.Fatalf("the lb refuses what net/http accepts: %q", in)
		case lok && gok && ln != gn:
			t.Fatalf("the body ends at %d for the lb, at %d for net/http: %q", ln, gn, in)
		}
	})
}

// The cases of RFC 9112 that the lb answers with 400.
func TestStrictHTTP1Head(t *testing.T) {
	for _, c := range []struct{ name, head string }{
		{"whitespace before colon", "Content-Length : 5\r\n\r\nhello"},
		{"obs-fold", "X: a\r\n b\r\n\r\n"},
		{"xchunked", "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"chunked not alone", "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"two Transfer-Encodings", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"conflicting lengths", "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
		{"signed length", "Content-Length: +2\r\n\r\nab"},
		{"CL with TE", "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"NUL in value", "X: a\x00b\r\n\r\n"},
		{"CR in value", "X: a\rb\r\n\r\n"},
		{"two Hosts", "Host: b\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var req request
			err := readRequest(bufio.NewReader(bytes.NewReader([]byte("POST / HTTP/1.1\r\nHost: a\r\n"+c.head))), &req)
			if err != errBadRequest {
				t.Fatalf("readRequest: %v, want %v", err, errBadRequest)
			}
		})
	}
}

// FuzzTableLabels builds the routing table of one app whose labels are
// fuzzed (marathon-lb's HAPROXY_* labels drive routing): it must never
// panic, whatever the labels say.
func FuzzTableLabels(f *testing.F) {
	f.Add("HAPROXY_0_VHOST", "a.example,b.example", "HAPROXY_0_PATH", "/api")
	f.Add("HAPROXY_0_MODE", "tcp", "HAPROXY_0_PORT", "99999")
	f.Add("HAPROXY_0_AUTH", "realm:user:$1$salt$hash", "HAPROXY_0_STICKY", "true")
	f.Add("HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH", "/x", "HAPROXY_0_HTTP_BACKEND_REDIR", "/y\r\nX: 1")
	f.Add("HAPROXY_DEPLOYMENT_GROUP", "g", "HAPROXY_DEPLOYMENT_ALT_PORT", "-1")
	f.Add("HAPROXY_0_BALANCE", "leastconn", "HAPROXY_0_BIND_ADDR", "::1")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		labels := map[string]string{"HAPROXY_GROUP": "external", k1: v1, k2: v2}
		st := &api.State{
			Apps:  []*api.App{ptr(hostApp("/a", "v1", labels, 10001, 10002))},
			Tasks: []*api.Task{ptr(runningTask("t1", "/a", "n1", 31001, 31002))},
			Nodes: nodes(),
		}
		BuildTable(st, TableConfig{Groups: []string{"external"}, Site: "paris"})
	})
}
