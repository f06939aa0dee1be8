package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh/meshtest"
)

// TestHostDNSResolvConf runs a master in a namespace whose /etc/resolv.conf
// is its own (ip netns exec bind-mounts /etc/netns/NS/resolv.conf; the
// host's file is never touched) and no systemd-resolved: weft puts its DNS
// first in a managed block, so getaddrinfo (getent) resolves the cluster
// domain with no setup; the file is put back byte for byte when weft
// stops, and after kill -9 on the next start; --no-host-dns leaves it be.
func TestHostDNSResolvConf(t *testing.T) {
	if why := meshtest.Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	if _, err := os.Stat("/run/systemd/resolve/io.systemd.Resolve"); err == nil {
		t.Skip("systemd-resolved runs here: host DNS goes through it, not resolv.conf")
	}
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("needs getent (Debian: libc-bin)")
	}
	weft := testbin.Weft(t)
	tb := meshtest.New(t)
	h := tb.AddHost("aws", "m1")
	resolv := filepath.Join("/etc/netns", h.NS, "resolv.conf") // the testbed's copy
	if _, err := os.Stat(resolv); err != nil {
		t.Fatalf("the testbed gave %s no resolv.conf of its own: %v", h.NS, err)
	}
	const orig = "# the namespace's own resolver\nnameserver 192.0.2.53\nsearch example.test\noptions ndots:1 timeout:1 attempts:1\n"
	if err := os.WriteFile(resolv, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := exec.Command(weft, "mesh", "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{weft, "master", "--api-addr", "0.0.0.0:8080", "--raft-addr", "",
		"--node-name", "m1", "--site", "aws", "--data-dir", filepath.Join(t.TempDir(), "m1"),
		"--gossip-addr", h.IP().String() + ":7946", "--agent-addr", "127.0.0.1:5051",
		"--token", strings.TrimSpace(string(tok)), "--no-lb"}
	ctx := context.Background()
	n := &siteNode{h: h, p: h.Start(args...)}
	read := func() string { b, _ := os.ReadFile(resolv); return string(b) }

	// resolves waits until getent in the namespace finds leader.pcm at
	// the master's overlay address through the managed block.
	resolves := func(what string) string {
		t.Helper()
		var ip string
		if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
			var err error
			if ip, err = n.overlayIP(ctx); err != nil {
				return err
			}
			cur := read()
			if !strings.HasPrefix(cur, "# >>> weft: managed block") || strings.Count(cur, "weft: managed block") != 1 || !strings.Contains(cur, "\nnameserver "+ip+"\n") {
				return fmt.Errorf("resolv.conf has no block naming %s:\n%s", ip, cur)
			}
			out, err := h.Exec(ctx, "getent", "hosts", "leader.pcm")
			if err != nil || !strings.HasPrefix(string(out), ip+" ") {
				return fmt.Errorf("getent hosts leader.pcm: %q %v", out, err)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, n.p.Output())
		}
		return ip
	}
	ip := resolves("first start")
	if rest := strings.SplitN(read(), "# <<< weft <<<\n", 2); len(rest) != 2 || rest[1] != orig {
		t.Errorf("the block changed the rest of resolv.conf:\n%s", read())
	}

	n.p.Kill()
	if !strings.Contains(read(), "nameserver "+ip) {
		t.Fatalf("the block is gone after kill -9 (nothing left to recover): %q", read())
	}
	n.p = h.Start(args...)
	resolves("restart after kill -9")
	if !strings.Contains(n.p.Output(), "did not stop cleanly") {
		t.Errorf("the restart did not say it restored the file")
	}

	if err := n.p.Stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	if got := read(); got != orig {
		t.Fatalf("resolv.conf after stop differs from the original:\n%q\nwant\n%q", got, orig)
	}

	n.p = h.Start(append(args, "--no-host-dns")...)
	if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
		_, err := n.overlayIP(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if got := read(); got != orig {
		t.Errorf("--no-host-dns changed resolv.conf:\n%s", got)
	}
}
