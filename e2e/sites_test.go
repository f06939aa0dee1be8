package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// twoSites is a master at site aws (m1) and an agent at site london (a1),
// each in its own network namespace, joined by a token over the WireGuard
// overlay, with the master API on m1's 127.0.0.1:8080.
type twoSites struct {
	m1h, a1h   *meshtest.Host
	m1, a1     *siteNode
	m1IP, a1IP string // overlay addresses
	api        string
	a1Args     []string
}

// restartAgent stops a1 (Ctrl-C: a real agent leaves its tasks running)
// and starts it again with the same arguments.
func (s *twoSites) restartAgent(t *testing.T) {
	t.Helper()
	if err := s.a1.p.Stop(); err != nil {
		t.Logf("a1 stopped: %v", err)
	}
	s.a1.p = s.a1h.Start(s.a1Args...)
}

// startTwoSites brings the two sites up and waits until both have overlay
// addresses, the master leads and ready (given /v1/nodes' JSON) holds.
func startTwoSites(t *testing.T, ctx context.Context, agentArgs []string, ready func(nodes string) error) *twoSites {
	t.Helper()
	tb := meshtest.New(t)
	weft := testbin.Weft(t)
	tb.AddSite("aws", meshtest.Delay(15*time.Millisecond))
	tb.AddSite("london", meshtest.Delay(15*time.Millisecond))
	s := &twoSites{m1h: tb.AddHost("aws", "m1"), a1h: tb.AddHost("london", "a1"), api: "http://127.0.0.1:8080"}
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
	s.m1 = &siteNode{h: s.m1h, p: s.m1h.Start(append([]string{weft, "master", "--api-addr", "0.0.0.0:8080", "--raft-addr", ""}, common(s.m1h)...)...)}
	// agentArgs come last, so they may override the common flags.
	args := []string{weft, "agent", "--join", s.m1h.IP().String() + ":7946", "--cpus", "2", "--mem", "1024"}
	s.a1Args = append(append(args, common(s.a1h)...), agentArgs...)
	s.a1 = &siteNode{h: s.a1h, p: s.a1h.Start(s.a1Args...)}
	if err := meshtest.Eventually(ctx, 30*time.Second, func() (err error) {
		if s.m1IP, err = s.m1.overlayIP(ctx); err != nil {
			return err
		}
		s.a1IP, err = s.a1.overlayIP(ctx)
		return err
	}); err != nil {
		t.Fatalf("overlay addresses: %v\n--- m1:\n%s\n--- a1:\n%s", err, s.m1.p.Output(), s.a1.p.Output())
	}
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		code, b, err := hostAPI(ctx, s.m1h, "GET", s.api+"/v1/nodes", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("nodes: %d %v", code, err)
		}
		if !strings.Contains(string(b), `"a1"`) {
			return fmt.Errorf("a1 not a member yet: %s", b)
		}
		if code, b, err := hostAPI(ctx, s.m1h, "GET", s.api+"/v2/leader", nil); err != nil || code != 200 {
			return fmt.Errorf("no leader yet: %d %s %v", code, b, err)
		}
		if ready != nil {
			return ready(string(b))
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- m1:\n%s\n--- a1:\n%s", err, s.m1.p.Output(), s.a1.p.Output())
	}
	return s
}
