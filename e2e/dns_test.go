package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/mesh/meshtest"
)

// siteNode is a weft process on a testbed host.
type siteNode struct {
	h *meshtest.Host
	p *meshtest.Process
}

// overlayIP reads the node's overlay address from its local agent API.
func (n *siteNode) overlayIP(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:5051/v1/mesh/status", nil)
	resp, err := n.h.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var st mesh.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return "", err
	}
	if st.OverlayIP == "" {
		return "", fmt.Errorf("%s has no overlay address yet", n.h.Name)
	}
	return st.OverlayIP, nil
}

// api calls the master API from a host's namespace.
func hostAPI(ctx context.Context, h *meshtest.Host, method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.HTTPClient().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// From another site, over the WireGuard overlay: `dig` and Go's resolver
// both resolve an app's name to its live task, SRV gives host:port, and a
// scale to zero is seen within seconds.
func TestDNSResolvesAcrossSites(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed (Debian dnsutils; make test installs it)")
	}
	tb := meshtest.New(t)
	weft := testbin.Weft(t)
	tb.AddSite("aws", meshtest.Delay(15*time.Millisecond))
	tb.AddSite("london", meshtest.Delay(15*time.Millisecond))
	m1h, a1h := tb.AddHost("aws", "m1"), tb.AddHost("london", "a1")
	tok, err := exec.Command(weft, "mesh", "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	dir := t.TempDir()
	common := func(h *meshtest.Host) []string {
		return []string{"--node-name", h.Name, "--site", h.Site.Name, "--data-dir", filepath.Join(dir, h.Name),
			"--gossip-addr", h.IP().String() + ":7946", "--agent-addr", "127.0.0.1:5051", "--token", token, "--no-lb"}
	}
	m1 := &siteNode{h: m1h, p: m1h.Start(append([]string{weft, "master", "--api-addr", "0.0.0.0:8080", "--raft-addr", ""}, common(m1h)...)...)}
	a1 := &siteNode{h: a1h, p: a1h.Start(append([]string{weft, "agent", "--join", m1h.IP().String() + ":7946", "--no-docker", "--cpus", "2", "--mem", "1024"}, common(a1h)...)...)}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var m1IP, a1IP string
	if err := meshtest.Eventually(ctx, 30*time.Second, func() (err error) {
		if m1IP, err = m1.overlayIP(ctx); err != nil {
			return err
		}
		a1IP, err = a1.overlayIP(ctx)
		return err
	}); err != nil {
		t.Fatalf("overlay addresses: %v\n--- m1:\n%s\n--- a1:\n%s", err, m1.p.Output(), a1.p.Output())
	}
	api := "http://127.0.0.1:8080"
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		code, b, err := hostAPI(ctx, m1h, "GET", api+"/v1/nodes", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("nodes: %d %v", code, err)
		}
		if !strings.Contains(string(b), `"a1"`) {
			return fmt.Errorf("a1 not a member yet: %s", b)
		}
		if code, b, err := hostAPI(ctx, m1h, "GET", api+"/v2/leader", nil); err != nil || code != 200 {
			return fmt.Errorf("no leader yet: %d %s %v", code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- m1:\n%s\n--- a1:\n%s", err, m1.p.Output(), a1.p.Output())
	}
	def := `{"id":"/biserver","cmd":"exec sleep 600","cpus":0.1,"mem":16,"instances":1,"portDefinitions":[{"port":0,"name":"http"}]}`
	if code, b, err := hostAPI(ctx, m1h, "PUT", api+"/v2/apps/biserver", []byte(def)); err != nil || code/100 != 2 {
		t.Fatalf("PUT /v2/apps/biserver: %d %s %v", code, b, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, _ = hostAPI(c, m1h, "DELETE", api+"/v2/apps/biserver?force=true", nil)
		time.Sleep(2 * time.Second) // let the agent stop the sleep before the testbed goes
	})

	// dig from london at the aws master's DNS, and from aws at london's.
	for _, q := range []struct {
		from   *meshtest.Host
		server string
	}{{a1h, m1IP}, {m1h, a1IP}} {
		err := meshtest.Eventually(ctx, 30*time.Second, func() error {
			out, err := q.from.Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+q.server, "biserver.marathon.pcm", "A")
			if err != nil {
				return fmt.Errorf("dig: %v %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != a1IP {
				return fmt.Errorf("dig @%s from %s: %q, want %s (the task's agent's overlay address)", q.server, q.from.Name, got, a1IP)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\n--- m1:\n%s", err, m1.p.Output())
		}
	}
	out, err := a1h.Exec(ctx, "dig", "+short", "@"+m1IP, "_biserver._tcp.marathon.pcm", "SRV")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 4 || !strings.HasPrefix(fields[3], "biserver-") || fields[2] < "31000" {
		t.Fatalf("SRV answer %q: want priority weight port target (a host port of a1)", out)
	}

	// Go's resolver, in london's namespace, asking aws's DNS.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return a1h.Dial(ctx, network, net.JoinHostPort(m1IP, "53"))
	}}
	addrs, err := r.LookupHost(ctx, "biserver.marathon.pcm")
	if err != nil || len(addrs) != 1 || addrs[0] != a1IP {
		t.Fatalf("Go resolver: %v %v, want [%s]", addrs, err, a1IP)
	}
	_, srvs, err := r.LookupSRV(ctx, "biserver", "tcp", "marathon.pcm")
	if err != nil || len(srvs) != 1 {
		t.Fatalf("Go resolver SRV: %v %v", srvs, err)
	}
	names, err := r.LookupHost(ctx, "a1.node.pcm")
	if err != nil || len(names) != 1 || names[0] != a1IP {
		t.Fatalf("a1.node.pcm: %v %v, want [%s]", names, err, a1IP)
	}

	// Scale to zero: the name goes away within seconds (push, not poll).
	if code, b, err := hostAPI(ctx, m1h, "PUT", api+"/v2/apps/biserver", []byte(`{"instances":0}`)); err != nil || code/100 != 2 {
		t.Fatalf("scale to 0: %d %s %v", code, b, err)
	}
	start := time.Now()
	if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
		_, err := r.LookupHost(ctx, "biserver.marathon.pcm")
		if err == nil {
			return fmt.Errorf("still resolves")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("scale to 0 seen in DNS from another site after %v", time.Since(start).Round(10*time.Millisecond))
}
