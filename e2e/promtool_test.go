package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

// `promtool check metrics` (Prometheus's own linter, the real binary)
// passes on every /metrics weft serves: the master API's, an agent-only
// node's agent API (its agent, DNS and lb metrics), and the lb admin's,
// after a task ran, a DNS query was answered and the lb served a request,
// so the labelled series exist.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package; scripts/deps.sh test installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pidDir := filepath.Join(dir, "pids")
	mkdirs(t, pidDir)
	t.Cleanup(func() { killTaskPids(pidDir) })
	loop := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	apiAddr, gossip, magent := loop(), loop(), loop()
	mLBAdmin := loop()
	startWeft(t, "m1", "master", "--no-mesh", "--node-name", "m1", "--data-dir", filepath.Join(dir, "m1"),
		"--api-addr", apiAddr, "--raft-addr", "", "--gossip-addr", gossip, "--agent-addr", magent,
		"--dns-addr", loop(), "--no-host-dns", "--lb-http-addr", loop(), "--lb-https-addr", "",
		"--lb-admin-addr", mLBAdmin, "--lb-appid-addr", loop(), "--lb-bind", "127.0.0.1")
	aAgent, aDNS, aLBHTTP, aLBAdmin := loop(), loop(), loop(), loop()
	startWeft(t, "a1", "agent", "--no-mesh", "--node-name", "a1", "--data-dir", filepath.Join(dir, "a1"),
		"--join", gossip, "--gossip-addr", "127.0.0.1:0", "--agent-addr", aAgent,
		"--dns-addr", aDNS, "--no-host-dns", "--lb-http-addr", aLBHTTP, "--lb-https-addr", "",
		"--lb-admin-addr", aLBAdmin, "--lb-appid-addr", loop(), "--lb-bind", "127.0.0.1",
		"--no-docker", "--cpus", "2", "--mem", "1024", "--ports", freePortRange(t, 20))
	c := api.NewClient(apiAddr)
	waitLeader(t, ctx, c)

	def := fmt.Sprintf(`{"cmd": "echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 300", "instances": 1, "cpus": 0.1, "mem": 16,
	  "portDefinitions": [{"port": 0}], "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "promtool.example"}}`, pidDir)
	if _, err := c.PutApp(ctx, "/promtool", []byte(def), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = c.DeleteApp(ctx, "/promtool", true)
		_ = wantRunning(ctx, c, "/promtool", 0)
	})
	eventually(t, 60*time.Second, "the app running", func() error { return wantRunning(ctx, c, "/promtool", 1) })

	// A DNS query and an lb request, so their labelled series exist.
	eventually(t, 20*time.Second, "promtool.marathon.pcm from the agent's DNS", func() error {
		m := new(mdns.Msg)
		m.SetQuestion("promtool.marathon.pcm.", mdns.TypeA)
		r, _, err := new(mdns.Client).Exchange(m, aDNS)
		if err != nil || len(r.Answer) == 0 {
			return fmt.Errorf("%v %v", r, err)
		}
		return nil
	})
	req, _ := http.NewRequest("GET", "http://"+aLBHTTP+"/", nil)
	req.Host = "nobody.example"
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}

	for _, u := range []string{"http://" + apiAddr + "/metrics", "http://" + magent + "/metrics",
		"http://" + aAgent + "/metrics", "http://" + mLBAdmin + "/metrics", "http://" + aLBAdmin + "/metrics"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte("# TYPE ")) {
			t.Fatalf("%s: %d\n%s", u, resp.StatusCode, tail(string(body), 2000))
		}
		cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("promtool check metrics on %s: %v\n%s", u, err, out)
		}
		t.Logf("%s: %d lines checked", u, bytes.Count(body, []byte("\n")))
	}
	for _, want := range []string{"weft_dns_", "weft_lb_"} {
		resp, err := http.Get("http://" + aAgent + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the agent node's /metrics has no %s series", want)
		}
	}
}
