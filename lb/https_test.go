package lb

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// writeCert writes a self-signed certificate and its key into one PEM file.
func writeCert(t *testing.T, names ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	path := filepath.Join(t.TempDir(), "cert.pem")
	pemBytes := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})...)
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHTTPSBySNIWithHTTP2(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	b := startHTTPBackend(t, "b", nil)
	src.set([]api.App{
		app("/a", freePort(t), map[string]string{"HAPROXY_0_VHOST": "a.test", "HAPROXY_0_USE_HSTS": "true"}),
		app("/b", freePort(t), map[string]string{"HAPROXY_0_VHOST": "b.test", "HAPROXY_0_STICKY": "true"}),
	}, []api.Task{task("/a", 1, a.port), task("/b", 1, b.port)})
	cfg := testConfig(src)
	cfg.HTTPSAddr = "127.0.0.1:0"
	cfg.Certs = []string{writeCert(t, "a.test", "b.test")}
	p := startProxy(t, cfg)
	addr := p.Addr("https")
	for _, tc := range []struct{ sni, want string }{{"a.test", "a /x"}, {"b.test", "b /x"}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("https://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want {
			t.Errorf("SNI %s: got %q, want %q", tc.sni, body, tc.want)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("SNI %s: served over %s, want HTTP/2 through ALPN", tc.sni, resp.Proto)
		}
		if got := resp.Header.Get("X-Echo-X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto over TLS = %q", got)
		}
		if tc.sni == "a.test" && resp.Header.Get("Strict-Transport-Security") != "max-age=15768000" {
			t.Errorf("HSTS missing on https")
		}
		if tc.sni == "b.test" {
			var sticky *http.Cookie
			for _, ck := range resp.Cookies() {
				if ck.Name == StickyCookie {
					sticky = ck
				}
			}
			if sticky == nil {
				t.Fatalf("no sticky cookie over https: %v", resp.Header)
			}
			req, _ := http.NewRequest("GET", "https://"+addr+"/y", nil)
			req.AddCookie(&http.Cookie{Name: "keep", Value: "1"})
			req.AddCookie(sticky)
			resp2, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp2.Body.Close()
			if got := resp2.Header.Get("X-Echo-Cookie"); got != "keep=1" {
				t.Errorf("backend saw Cookie %q over https; want the sticky cookie stripped", got)
			}
			if resp2.Header.Get("Set-Cookie") != "" {
				t.Errorf("a valid sticky cookie was set again over https")
			}
		}
	}
}
