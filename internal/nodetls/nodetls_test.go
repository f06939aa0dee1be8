package nodetls

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	tokenA = "weft-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	tokenB = "weft-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func TestCADeterministic(t *testing.T) {
	a1, err := NewCA(tokenA)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := NewCA(tokenA)
	b, _ := NewCA(tokenB)
	if !bytes.Equal(a1.der, a2.der) {
		t.Fatal("the same token gave two different CA certificates")
	}
	if bytes.Equal(a1.der, b.der) {
		t.Fatal("two tokens gave the same CA certificate")
	}
	if _, err := NewCA("  "); err == nil {
		t.Fatal("an empty token made a CA")
	}
}

// handshake runs one TLS handshake between a server and a client config
// and returns the server's and the client's errors.
func handshake(t *testing.T, server, client *tls.Config) (srvState tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c1.SetDeadline(time.Now().Add(5 * time.Second))
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(c1, server)
		srvErr = s.Handshake()
		srvState = s.ConnectionState()
		// TLS 1.3 reports a refused client certificate on the client's
		// first read; give it one.
		if srvErr == nil {
			_, _ = s.Write([]byte("x"))
		}
		s.Close()
	}()
	cl := tls.Client(c2, client)
	cliErr = cl.Handshake()
	if cliErr == nil {
		_, cliErr = cl.Read(make([]byte, 1))
	}
	cl.Close()
	<-done
	return
}

func TestMutualTLS(t *testing.T) {
	m1, err := NewIdentity(tokenA, "m1", []net.IP{net.ParseIP("10.47.1.1")})
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := NewIdentity(tokenA, "a1", nil)
	stranger, _ := NewIdentity(tokenB, "a1", nil)

	st, srvErr, cliErr := handshake(t, m1.ServerConfig(), a1.ClientConfig())
	if srvErr != nil || cliErr != nil {
		t.Fatalf("two nodes of one cluster: server %v, client %v", srvErr, cliErr)
	}
	if name, ok := NodeName(&st); !ok || name != "a1" {
		t.Fatalf("NodeName = %q %v, want a1", name, ok)
	}

	cases := []struct {
		name   string
		server *tls.Config
		client *tls.Config
	}{
		{"client of another token", m1.ServerConfig(), stranger.ClientConfig()},
		{"client without certificate", m1.ServerConfig(), &tls.Config{InsecureSkipVerify: true}},
		{"server of another token", stranger.ServerConfig(), a1.ClientConfig()},
		{"API: client of another token", m1.APIServerConfig(), stranger.ClientConfig()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, srvErr, cliErr := handshake(t, tc.server, tc.client)
			if srvErr == nil && cliErr == nil {
				t.Fatal("handshake succeeded")
			}
		})
	}

	// The master API lets a client without a certificate in, as no node.
	st, srvErr, cliErr = handshake(t, m1.APIServerConfig(), &tls.Config{RootCAs: m1.CA.Pool(), ServerName: ServerName})
	if srvErr != nil || cliErr != nil {
		t.Fatalf("API without client certificate: %v %v", srvErr, cliErr)
	}
	if _, ok := NodeName(&st); ok {
		t.Fatal("a client without certificate was taken for a node")
	}
}

func TestListenerSortsConnections(t *testing.T) {
	id, _ := NewIdentity(tokenA, "m1", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainOK := true
	l := NewListener(ln, id.APIServerConfig(), func(net.Conn) bool { return plainOK })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := NodeName(r.TLS)
		io.WriteString(w, map[bool]string{true: "node " + name, false: "person"}[ok])
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	get := func(c *http.Client, url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b), nil
	}
	addr := ln.Addr().String()
	plain := &http.Client{Timeout: 5 * time.Second}
	node := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: id.ClientConfig()}}
	if got, err := get(plain, "http://"+addr); err != nil || got != "200 OK person" {
		t.Fatalf("plain: %q %v", got, err)
	}
	if got, err := get(node, "https://"+addr); err != nil || got != "200 OK node m1" {
		t.Fatalf("node over TLS: %q %v", got, err)
	}
	plainOK = false
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	got, err := get(fresh, "http://"+addr)
	if err != nil || !strings.HasPrefix(got, "400") || !strings.Contains(got, "https") {
		t.Fatalf("plain where TLS is required: %q %v", got, err)
	}
	// A silent client holds up no other.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if got, err := get(node, "https://"+addr); err != nil || got != "200 OK node m1" {
		t.Fatalf("beside a silent client: %q %v", got, err)
	}
}
