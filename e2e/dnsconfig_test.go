package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// weft up --dns-config reads a Mesos-DNS config.json: its domain, ttl,
// listener and port, HTTP API, SOA fields and resolvers take effect, the
// settings weft keeps without honouring are logged as warnings and shown in
// /v1/config, and a file Mesos-DNS would refuse stops weft with an error
// naming the file and the key.
func TestUpDNSConfigFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dnsPort, httpPort := freePort(t), freePort(t)
	conf := filepath.Join(dir, "config.json")
	writeFile(t, conf, fmt.Sprintf(`{
  "zk": "zk://10.101.160.15:2181/mesos",
  "masters": ["10.101.160.15:5050"],
  "refreshSeconds": 60,
  "ttl": 42,
  "domain": "mesos",
  "port": %d,
  "resolvers": ["169.254.169.254"],
  "timeout": 5,
  "httpon": true,
  "dnson": true,
  "httpport": %d,
  "externalon": false,
  "listener": "127.0.0.1",
  "httpListener": "127.0.0.1",
  "SOAMname": "ns1.mesos",
  "SOARname": "admin@example.com",
  "SOARefresh": 61,
  "SOARetry": 601,
  "SOAExpire": 86401,
  "SOAMinttl": 60,
  "IPSources": ["netinfo", "mesos", "host"]
}`, dnsPort, httpPort))

	// A file Mesos-DNS would refuse: weft does not start.
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `{"domain": "mesos", "IPSources": ["netinfo", "dhcp"]}`)
	apiPort := freePort(t)
	args := withoutFlag(upArgs(t, filepath.Join(dir, "bad-data"), apiPort), "--dns-addr")
	cmd := exec.CommandContext(ctx, testbin.Weft(t), append(args, "--dns-config", bad)...)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code == 0 ||
		!strings.Contains(string(out), "--dns-config "+bad+`: Mesos-DNS config: IPSources: unknown source "dhcp"`) {
		t.Fatalf("weft up with a bad --dns-config: exit %d, %v, output:\n%s", code, err, tail(string(out), 3000))
	}

	apiPort = freePort(t)
	args = withoutFlag(upArgs(t, filepath.Join(dir, "data"), apiPort), "--dns-addr")
	weft := startWeft(t, "up", append(args, "--dns-config", conf)...)
	c := api.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort))
	waitLeader(t, ctx, c)

	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort))
	var soa *mdns.SOA
	eventually(t, 30*time.Second, "the SOA of mesos. from the config's listener and port", func() error {
		m := new(mdns.Msg)
		m.SetQuestion("mesos.", mdns.TypeSOA)
		r, _, err := new(mdns.Client).Exchange(m, dnsAddr)
		if err != nil {
			return err
		}
		if len(r.Answer) != 1 {
			return fmt.Errorf("answer %v", r)
		}
		soa, _ = r.Answer[0].(*mdns.SOA)
		return nil
	})
	if soa == nil || soa.Hdr.Ttl != 42 || soa.Ns != "ns1.mesos." || soa.Mbox != "admin.example.com." ||
		soa.Refresh != 61 || soa.Retry != 601 || soa.Expire != 86401 || soa.Minttl != 42 {
		t.Errorf("SOA %v", soa)
	}
	m := new(mdns.Msg)
	m.SetQuestion("leader.mesos.", mdns.TypeA)
	eventually(t, 30*time.Second, "leader.mesos with the config's TTL", func() error {
		if r, _, err := new(mdns.Client).Exchange(m, dnsAddr); err != nil || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 42 {
			return fmt.Errorf("leader.mesos: %v %v", r, err)
		}
		return nil
	})
	// externalon false: names outside the domain are refused.
	m.SetQuestion("example.com.", mdns.TypeA)
	if r, _, err := new(mdns.Client).Exchange(m, dnsAddr); err != nil || r.Rcode != mdns.RcodeRefused {
		t.Errorf("example.com with externalon false: %v %v", r, err)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/config", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cfg map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["Domain"] != "mesos" || cfg["TTL"] != float64(42) || cfg["Zk"] != "zk://10.101.160.15:2181/mesos" ||
		cfg["File"] != conf || cfg["ExternalOn"] != false || cfg["Port"] != float64(dnsPort) || cfg["HttpPort"] != float64(httpPort) ||
		fmt.Sprint(cfg["Resolvers"]) != "[169.254.169.254:53]" || fmt.Sprint(cfg["Masters"]) != "[10.101.160.15:5050]" {
		t.Errorf("/v1/config %v", cfg)
	}
	eventually(t, 5*time.Second, "the warnings in the log", func() error {
		b, _ := os.ReadFile(weft.log)
		for _, w := range []string{"zk kept but not honoured", "masters kept but not honoured", "SOAMinttl kept but not honoured"} {
			if !strings.Contains(string(b), w) {
				return fmt.Errorf("no %q in the log", w)
			}
		}
		return nil
	})
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// withoutFlag drops "--name value" from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == name {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
