package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

// A pod of two Docker containers on `weft up`: the relay container reaches
// the backend container on 127.0.0.1:8080 (one network namespace), the pod
// is found by its DNS name (the SRV record of its endpoint) and reached
// through the lb's service port; killing one container ends the instance,
// which is replaced as a unit.
func TestPodTwoContainersShareLocalhostDNSAndLB(t *testing.T) {
	image := scratchImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	apiPort := freePort(t)
	args := upArgs(t, filepath.Join(dir, "data"), apiPort)
	dnsAddr := args[slices.Index(args, "--dns-addr")+1]
	startWeft(t, "up", args...)
	c := api.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort))
	waitLeader(t, ctx, c)
	eventually(t, 60*time.Second, "an agent with the docker capability", func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if slices.Contains(n.Capabilities, "docker") {
				return nil
			}
		}
		return fmt.Errorf("nodes: %+v", nodes)
	})

	sp := freeServicePort(t)
	pod := fmt.Sprintf(`{"id":"/podshop","labels":{"HAPROXY_GROUP":"external","HAPROXY_1_PORT":"%d"},
	  "networks":[{"mode":"container/bridge"}],
	  "containers":[
	    {"name":"backend","image":{"kind":"DOCKER","id":%q},"resources":{"cpus":0.1,"mem":32},
	     "endpoints":[{"name":"web","containerPort":8080,"hostPort":0}],
	     "healthCheck":{"http":{"endpoint":"web","path":"/"},"gracePeriodSeconds":30,"intervalSeconds":1,"timeoutSeconds":1,"maxConsecutiveFailures":3,"delaySeconds":0}},
	    {"name":"relay","image":{"kind":"DOCKER","id":%q},"resources":{"cpus":0.1,"mem":32},
	     "exec":{"command":{"argv":["-relay",":9090","http://127.0.0.1:8080/"]}},
	     "endpoints":[{"name":"relay","containerPort":9090,"hostPort":0}]}]}`, sp, image, image)
	if _, err := c.Do(ctx, "POST", "/v2/pods", []byte(pod), nil); err != nil {
		t.Fatalf("POST /v2/pods: %v", err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = c.Do(dctx, "DELETE", "/v2/pods/podshop", nil, nil)
	})

	stable := func() (api.PodInstanceStatus, error) {
		var s api.PodStatus
		if _, err := c.Do(ctx, "GET", "/v2/pods/podshop::status", nil, &s); err != nil {
			return api.PodInstanceStatus{}, err
		}
		if s.Status != "STABLE" || len(s.Instances) != 1 {
			return api.PodInstanceStatus{}, fmt.Errorf("status %s with %d instances: %+v", s.Status, len(s.Instances), s.Instances)
		}
		return s.Instances[0], nil
	}
	var inst api.PodInstanceStatus
	eventually(t, 90*time.Second, "one STABLE (healthy) instance", func() (err error) {
		inst, err = stable()
		return err
	})
	relayPort := inst.Containers[1].Endpoints[0].AllocatedHostPort
	want := fmt.Sprintf("relay %s.relay: %s.backend\n", inst.ID, inst.ID)

	get := func(addr string) (string, error) {
		cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("%s: %d %s", addr, resp.StatusCode, b)
		}
		return string(b), err
	}
	// The relay container reaches the backend on 127.0.0.1 of their
	// shared namespace (the relay has no health check: it may take a
	// moment to listen).
	eventually(t, 15*time.Second, "the relay reaching the backend", func() error {
		if got, err := get(fmt.Sprintf("127.0.0.1:%d", relayPort)); err != nil || got != want {
			return fmt.Errorf("the relay endpoint answers %q (%v), want %q", got, err, want)
		}
		return nil
	})

	// DNS: the endpoint's SRV record names the relay's host port, and the
	// pod's A record the agent.
	query := func(name string, typ uint16) ([]mdns.RR, error) {
		m := new(mdns.Msg)
		m.SetQuestion(name, typ)
		in, err := mdns.Exchange(m, dnsAddr)
		if err != nil {
			return nil, err
		}
		return in.Answer, nil
	}
	eventually(t, 15*time.Second, "the pod's DNS records", func() error {
		srv, err := query("_relay._podshop._tcp.marathon.pcm.", mdns.TypeSRV)
		if err != nil || len(srv) != 1 || int(srv[0].(*mdns.SRV).Port) != relayPort {
			return fmt.Errorf("SRV _relay._podshop._tcp.marathon.pcm: %v %v (want port %d)", srv, err, relayPort)
		}
		a, err := query("podshop.marathon.pcm.", mdns.TypeA)
		if err != nil || len(a) != 1 {
			return fmt.Errorf("A podshop.marathon.pcm: %v %v", a, err)
		}
		if got, err := get(fmt.Sprintf("%s:%d", a[0].(*mdns.A).A, srv[0].(*mdns.SRV).Port)); err != nil || got != want {
			return fmt.Errorf("the address DNS gives answers %q (%v)", got, err)
		}
		return nil
	})

	// lb: the relay endpoint's service port (HAPROXY_1_PORT).
	eventually(t, 15*time.Second, "the pod through the lb", func() error {
		got, err := get(fmt.Sprintf("127.0.0.1:%d", sp))
		if err != nil || got != want {
			return fmt.Errorf("lb service port %d answers %q (%v), want %q", sp, got, err, want)
		}
		return nil
	})

	// One container dies: the whole instance is replaced.
	name := "weft-" + inst.ID + ".relay"
	if out, err := exec.Command("docker", "kill", name).CombinedOutput(); err != nil {
		t.Fatalf("docker kill %s: %v %s", name, err, out)
	}
	eventually(t, 90*time.Second, "a new STABLE instance", func() error {
		n, err := stable()
		if err != nil {
			return err
		}
		if n.ID == inst.ID {
			return fmt.Errorf("still the killed instance %s", inst.ID)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the old instance's containers gone", func() error {
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "name=weft-"+inst.ID).Output()
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("containers left: %s", s)
		}
		return nil
	})
}

// Marathon's documented pod with an ephemeral volume (pods.md), as
// published: two command containers, one writing the time into the
// volume, the other reading it at its own mount path, on the real binary.
func TestPodDocumentedEphemeralVolume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	apiPort := freePort(t)
	dataDir := filepath.Join(dir, "data")
	startWeft(t, "up", upArgs(t, dataDir, apiPort)...)
	c := api.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort))
	waitLeader(t, ctx, c)
	pod := `{
  "id": "/with-ephemeral-vol",
  "scaling": { "kind": "fixed", "instances": 1 },
  "containers": [
    {
      "name": "ct1",
      "resources": {
        "cpus": 0.1,
        "mem": 32
      },
      "exec": { "command": { "shell": "while true; do echo the current time is $(date) > ./jdef-v1/clock; sleep 1; done" } },
      "volumeMounts": [
        {
          "name": "v1",
          "mountPath": "jdef-v1"
        }
      ]
    },
    {
      "name": "ct2",
      "resources": {
        "cpus": 0.1,
        "mem": 32
      },
      "exec": { "command": { "shell": "while true; do cat ./etc/clock; sleep 1; done" } },
      "volumeMounts": [
        {
          "name": "v1",
          "mountPath": "etc"
        }
      ]
    }
  ],
  "networks": [
    { "mode": "host" }
  ],
  "volumes": [
    { "name": "v1" }
  ]
}`
	if _, err := c.Do(ctx, "POST", "/v2/pods", []byte(pod), nil); err != nil {
		t.Fatalf("POST /v2/pods: %v", err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = c.Do(dctx, "DELETE", "/v2/pods/with-ephemeral-vol", nil, nil)
	})
	eventually(t, 60*time.Second, "one STABLE instance", func() error {
		var s api.PodStatus
		if _, err := c.Do(ctx, "GET", "/v2/pods/with-ephemeral-vol::status", nil, &s); err != nil {
			return err
		}
		if s.Status != "STABLE" || len(s.Instances) != 1 || len(s.Instances[0].Containers) != 2 {
			return fmt.Errorf("status %s, %d instances", s.Status, len(s.Instances))
		}
		return nil
	})
	eventually(t, 30*time.Second, "ct2 printing what ct1 writes", func() error {
		files, _ := filepath.Glob(filepath.Join(dataDir, "*", "sandboxes", "*", "containers", "ct2", "stdout"))
		if len(files) != 1 {
			files, _ = filepath.Glob(filepath.Join(dataDir, "*", "*", "sandboxes", "*", "containers", "ct2", "stdout"))
		}
		if len(files) != 1 {
			return fmt.Errorf("ct2's stdout: %v", files)
		}
		b, _ := os.ReadFile(files[0])
		if n := strings.Count(string(b), "the current time is "); n < 2 {
			return fmt.Errorf("ct2 printed %q", b)
		}
		return nil
	})
	if _, err := c.Do(ctx, "DELETE", "/v2/pods/with-ephemeral-vol", nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the instance killed", func() error {
		tasks, err := runningTasks(ctx, c, "/with-ephemeral-vol")
		if err != nil {
			return err
		}
		if len(tasks) > 0 {
			return fmt.Errorf("%d tasks still running", len(tasks))
		}
		var s api.PodStatus
		if _, err := c.Do(ctx, "GET", "/v2/pods/with-ephemeral-vol::status", nil, &s); api.StatusCode(err) != 404 {
			return fmt.Errorf("status after delete: %v", err)
		}
		return nil
	})
}
