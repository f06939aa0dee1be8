package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAPIOnUnderlayIsTLS: `--api-addr` on a wildcard address serves plain
// HTTP to loopback only; a client at another address of the host gets a
// 400 that says to use https, and over TLS a certificate of the cluster CA
// (the data dir's ca.pem) whose SHA-256 fingerprint weft printed at start.
// A node-only endpoint answers 403 to a client without a node certificate.
func TestAPIOnUnderlayIsTLS(t *testing.T) {
	var ip net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		t.Skip("this host has no non-loopback IPv4 address to test from")
	}
	dir := t.TempDir()
	port := freePort(t)
	args := upArgs(t, filepath.Join(dir, "data"), port)
	for i, a := range args {
		if a == fmt.Sprintf("127.0.0.1:%d", port) {
			args[i] = fmt.Sprintf("0.0.0.0:%d", port)
		}
	}
	p := startWeft(t, "up", args...)
	local := fmt.Sprintf("http://127.0.0.1:%d", port)
	eventually(t, 30*time.Second, "a leader, on loopback", func() error {
		resp, err := http.Get(local + "/v2/leader")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/leader: %d", resp.StatusCode)
		}
		return nil
	})
	under := net.JoinHostPort(ip.String(), fmt.Sprint(port))
	// The client dials from the host's own address, not from loopback.
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
	resp, err := plain.Get("http://" + under + "/v2/info")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "https") {
		t.Fatalf("plain HTTP on the underlay: %d %s, want 400 naming https", resp.StatusCode, b)
	}

	caPEM, err := os.ReadFile(filepath.Join(dir, "data", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	var seen []byte
	tc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "node.weft",
			VerifyConnection: func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0].Raw; return nil }}}}
	resp, err = tc.Get("https://" + under + "/v2/info")
	if err != nil {
		t.Fatalf("TLS with the cluster CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/info over TLS: %d", resp.StatusCode)
	}
	sum := sha256.Sum256(seen)
	var hex []string
	for _, c := range sum {
		hex = append(hex, fmt.Sprintf("%02X", c))
	}
	out, _ := os.ReadFile(p.log)
	if fp := strings.Join(hex, ":"); !strings.Contains(string(out), fp) {
		t.Errorf("weft did not print the certificate's fingerprint %s", fp)
	}
	resp, err = tc.Get("https://" + under + "/v1/agents/x/assignments")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("node-only endpoint without a node certificate: %d, want 403", resp.StatusCode)
	}

	// /v1/state (every app's definition and environment) is open until
	// `weft acl bootstrap`, as documented (README: Tokens, policies and
	// secrets); from then on it is not, from the underlay or loopback,
	// without a token that may read everything.
	state := func(c *http.Client, base, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/v1/state", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s/v1/state: %v", base, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := state(tc, "https://"+under, ""); code != http.StatusOK {
		t.Fatalf("open cluster: /v1/state over TLS on the underlay: %d %.200s, want 200", code, body)
	}
	resp, err = http.Post(local+"/v1/acl/bootstrap", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var boot struct{ SecretID string }
	err = json.NewDecoder(resp.Body).Decode(&boot)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || boot.SecretID == "" {
		t.Fatalf("ACL bootstrap: %d %v", resp.StatusCode, err)
	}
	for _, c := range []struct {
		name   string
		client *http.Client
		base   string
	}{{"TLS on the underlay", tc, "https://" + under}, {"loopback", http.DefaultClient, local}} {
		if code, body := state(c.client, c.base, ""); code != http.StatusUnauthorized || !strings.Contains(body, "token") {
			t.Errorf("ACLs on: /v1/state without a token, %s: %d %.200s, want 401", c.name, code, body)
		}
		if code, _ := state(c.client, c.base, "Bearer not-a-token"); code != http.StatusUnauthorized {
			t.Errorf("ACLs on: /v1/state with an unknown token, %s: %d, want 401", c.name, code)
		}
	}
	if code, body := state(plain, "http://"+under, ""); code != http.StatusBadRequest {
		t.Errorf("ACLs on: /v1/state in plain HTTP on the underlay: %d %.200s, want 400", code, body)
	}
	if code, body := state(tc, "https://"+under, "Bearer "+boot.SecretID); code != http.StatusOK || !strings.Contains(body, `"apps"`) {
		t.Errorf("ACLs on: /v1/state with the management token over TLS: %d %.200s", code, body)
	}
}
