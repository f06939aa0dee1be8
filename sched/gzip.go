package sched

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"sync"
)

// gzipMin is the smallest answer worth compressing: below it gzip's header
// and the CPU cost more than the bytes saved.
const gzipMin = 1024

var gzipPool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") || strings.TrimSpace(enc) == "*" {
			q = strings.ReplaceAll(strings.TrimSpace(q), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// gzipBytes compresses b.
func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzipPool.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	gzipPool.Put(zw)
	return buf.Bytes()
}

// writeJSONBody writes a JSON answer that the caller may have compressed
// already (gz, built once for many clients): the compressed one when the
// client accepts gzip and the body is large, else the plain one.
func writeJSONBody(w http.ResponseWriter, r *http.Request, body []byte, gz func() []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Add("Vary", "Accept-Encoding")
	if len(body) >= gzipMin && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(gz())
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// gzipped compresses JSON answers to GET requests of clients that accept
// gzip (as Marathon does), once they pass gzipMin bytes: /v2/apps,
// /v2/tasks, /v1/state and the rest. Streams (text/event-stream, logs) and
// answers already encoded (a leader's, proxied) pass through untouched.
func gzipped(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !acceptsGzip(r) {
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.finish()
		next.ServeHTTP(gw, r)
	})
}

// gzipWriter holds the first gzipMin bytes of an answer back to decide
// whether to compress it.
type gzipWriter struct {
	http.ResponseWriter
	code    int
	buf     []byte
	decided bool
	zw      *gzip.Writer
}

func (g *gzipWriter) WriteHeader(code int) {
	if g.decided {
		g.ResponseWriter.WriteHeader(code)
		return
	}
	if g.code == 0 {
		g.code = code
	}
}

// decide starts the answer, compressed or not.
func (g *gzipWriter) decide() {
	g.decided = true
	if g.code == 0 {
		g.code = http.StatusOK
	}
	h := g.ResponseWriter.Header()
	ct := h.Get("Content-Type")
	if len(g.buf) >= gzipMin && h.Get("Content-Encoding") == "" && g.code == http.StatusOK &&
		(strings.HasPrefix(ct, "application/json") || ct == "") {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		h.Del("Content-Length")
		g.ResponseWriter.WriteHeader(g.code)
		g.zw = gzipPool.Get().(*gzip.Writer)
		g.zw.Reset(g.ResponseWriter)
		_, _ = g.zw.Write(g.buf)
	} else {
		g.ResponseWriter.WriteHeader(g.code)
		_, _ = g.ResponseWriter.Write(g.buf)
	}
	g.buf = nil
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if !g.decided {
		g.buf = append(g.buf, b...)
		if len(g.buf) < gzipMin {
			return len(b), nil
		}
		g.decide()
		return len(b), nil
	}
	if g.zw != nil {
		return g.zw.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

// Flush sends what there is: a stream is never held back.
func (g *gzipWriter) Flush() {
	if !g.decided {
		g.decide()
	}
	if g.zw != nil {
		_ = g.zw.Flush()
	}
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (g *gzipWriter) finish() {
	if !g.decided {
		if g.code == 0 && len(g.buf) == 0 {
			return // the handler wrote nothing (a hijacked or aborted answer)
		}
		g.decide()
	}
	if g.zw != nil {
		_ = g.zw.Close()
		gzipPool.Put(g.zw)
		g.zw = nil
	}
}

func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }
