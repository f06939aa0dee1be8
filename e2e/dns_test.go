package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/mesh/meshtest"
)

func TestDNSResolvesAcrossSites(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed (Debian dnsutils; make test installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startTwoSites(t, ctx, []string{"--no-docker"}, nil)
	m1h, a1h, m1IP, a1IP, api := s.m1h, s.a1h, s.m1IP, s.a1IP, s.api
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
			t.Fatalf("%v\n--- m1:\n%s", err, s.m1.p.Output())
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

	// Site-scoped names: the task runs at london only.
	for _, q := range []struct{ name, typ, want string }{
		{"biserver.marathon.site-london.pcm", "A", a1IP},
		{"biserver.marathon.site-aws.pcm", "A", ""},
	} {
		out, err := m1h.Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+m1IP, q.name, q.typ)
		if err != nil || strings.TrimSpace(string(out)) != q.want {
			t.Errorf("dig %s %s: %q %v, want %q", q.name, q.typ, out, err, q.want)
		}
	}
	out, err = m1h.Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+m1IP, "_biserver._tcp.marathon.site-london.pcm", "SRV")
	if f := strings.Fields(string(out)); err != nil || len(f) != 4 || !strings.HasPrefix(f[3], "biserver-") {
		t.Errorf("site-scoped SRV: %q %v", out, err)
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
