package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh/meshtest"
)

// TestDNSSiteScopedNames runs one app with a task at each of two sites
// (a master and an agent at aws, an agent at london, one instance per
// host) and checks that the site-scoped names answer with that site's
// task only, A and SRV, while the plain Mesos-DNS name answers with both.
func TestDNSSiteScopedNames(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed (Debian dnsutils; make test installs it)")
	}
	if why := meshtest.Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	weft := testbin.Weft(t)
	tb := meshtest.New(t)
	tb.AddSite("aws", meshtest.Delay(15*time.Millisecond))
	tb.AddSite("london", meshtest.Delay(15*time.Millisecond))
	m1h, a2h, a1h := tb.AddHost("aws", "m1"), tb.AddHost("aws", "a2"), tb.AddHost("london", "a1")
	tok, err := exec.Command(weft, "mesh", "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	common := func(h *meshtest.Host) []string {
		return []string{"--node-name", h.Name, "--site", h.Site.Name, "--data-dir", filepath.Join(dir, h.Name),
			"--gossip-addr", h.IP().String() + ":7946", "--agent-addr", "127.0.0.1:5051",
			"--token", strings.TrimSpace(string(tok)), "--no-lb", "--no-host-dns"}
	}
	nodes := map[string]*siteNode{"m1": {h: m1h, p: m1h.Start(append([]string{weft, "master", "--api-addr", "0.0.0.0:8080", "--raft-addr", ""}, common(m1h)...)...)}}
	for _, h := range []*meshtest.Host{a1h, a2h} {
		args := []string{weft, "agent", "--join", m1h.IP().String() + ":7946", "--cpus", "2", "--mem", "1024", "--no-docker"}
		nodes[h.Name] = &siteNode{h: h, p: h.Start(append(args, common(h)...)...)}
	}
	ips := map[string]string{}
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		for name, n := range nodes {
			ip, err := n.overlayIP(ctx)
			if err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
			ips[name] = ip
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const api = "http://127.0.0.1:8080"
	def := `{"id":"/biserver","cmd":"exec sleep 600","cpus":0.1,"mem":16,"instances":2,"constraints":[["hostname","UNIQUE"]],"portDefinitions":[{"port":0,"name":"http"}]}`
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		code, b, err := hostAPI(ctx, m1h, "PUT", api+"/v2/apps/biserver", []byte(def))
		if err != nil || code/100 != 2 {
			return fmt.Errorf("PUT /v2/apps/biserver: %d %s %v", code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, _ = hostAPI(c, m1h, "DELETE", api+"/v2/apps/biserver?force=true", nil)
		time.Sleep(2 * time.Second) // let the agents stop the sleeps before the testbed goes
	})

	dig := func(from *meshtest.Host, name, typ string) ([]string, error) {
		out, err := from.Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+ips["m1"], name, typ)
		if err != nil {
			return nil, fmt.Errorf("dig %s %s: %v %s", name, typ, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] == "" {
			lines = nil
		}
		slices.Sort(lines)
		return lines, nil
	}
	// Both tasks run (one on each agent): the plain name has both.
	both := []string{ips["a1"], ips["a2"]}
	slices.Sort(both)
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		got, err := dig(a1h, "biserver.marathon.pcm", "A")
		if err != nil {
			return err
		}
		if !slices.Equal(got, both) {
			return fmt.Errorf("biserver.marathon.pcm A: %v, want %v (a task on each agent)", got, both)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- m1:\n%s", err, nodes["m1"].p.Output())
	}
	for _, c := range []struct {
		site, want, other string
	}{{"london", ips["a1"], ips["a2"]}, {"aws", ips["a2"], ips["a1"]}} {
		name := "biserver.marathon.site-" + c.site + ".pcm"
		got, err := dig(a2h, name, "A")
		if err != nil || !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s A: %v %v, want only [%s] (not the other site's %s)", name, got, err, c.want, c.other)
		}
		srv := "_biserver._tcp.marathon.site-" + c.site + ".pcm"
		got, err = dig(a1h, srv, "SRV")
		if err != nil || len(got) != 1 {
			t.Errorf("%s SRV: %v %v, want one record (this site's task)", srv, got, err)
			continue
		}
		f := strings.Fields(got[0])
		if len(f) != 4 || !strings.HasPrefix(f[3], "biserver-") {
			t.Errorf("%s SRV: %q, want priority weight port target", srv, got[0])
			continue
		}
		// The SRV target's A record is this site's agent.
		if a, err := dig(a1h, f[3], "A"); err != nil || !slices.Equal(a, []string{c.want}) {
			t.Errorf("%s SRV target %s: A %v %v, want [%s]", srv, f[3], a, err, c.want)
		}
		t.Logf("%s: A %s only; SRV %s", c.site, c.want, got[0])
	}
	if got, err := dig(a1h, "biserver.marathon.site-paris.pcm", "A"); err != nil || len(got) != 0 {
		t.Errorf("a site with no task: %v %v, want no answer", got, err)
	}
}
