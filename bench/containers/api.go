package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/docker/docker/client"
	"github.com/vishvananda/netns"
)

// apiLatency runs the real `weft up` in a private network namespace (its
// loopback ports collide with nothing) and measures, n times, from the PUT
// of a one-instance Docker app to the task being TASK_RUNNING in the API.
func apiLatency(n int, img string, cli *client.Client) ([]time.Duration, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("needs root for a network namespace")
	}
	dir, err := os.MkdirTemp("", "weft-bench-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	weft := filepath.Join(dir, "weft")
	if out, err := exec.Command("go", "build", "-o", weft, "./cmd/weft").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building weft: %v: %s", err, out)
	}
	ns := "weft-bench-" + randHex()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("lo up: %v: %s", err, out)
	}
	node := "bench-" + randHex()
	defer removeAll(cli, node)
	var logs bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns, weft, "up", "--node-name", node,
		"--data-dir", filepath.Join(dir, "data"), "--api-addr", "127.0.0.1:8080")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	c := nsClient("/run/netns/" + ns)
	base := "http://127.0.0.1:8080"
	if err := waitFor(60*time.Second, func() error {
		resp, err := c.Get(base + "/v1/state")
		if err != nil {
			return err
		}
		resp.Body.Close()
		var nodes struct {
			Nodes []struct {
				Capabilities []string `json:"capabilities"`
			} `json:"nodes"`
		}
		resp, err = c.Get(base + "/v1/nodes")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&nodes)
		for _, nd := range nodes.Nodes {
			for _, cp := range nd.Capabilities {
				if cp == "docker" {
					return nil
				}
			}
		}
		return fmt.Errorf("no agent with the docker capability yet")
	}); err != nil {
		return nil, fmt.Errorf("weft up did not come up: %v\n%s", err, logs.String())
	}
	var out []time.Duration
	for i := 0; i <= n; i++ { // the first one warms up
		id := fmt.Sprintf("/bench-latency-%d", i)
		app := map[string]any{
			"id": id, "instances": 1, "cpus": 0.1, "mem": 32, "args": []string{"serve", "127.0.0.1:0"},
			"container": map[string]any{"type": "DOCKER", "docker": map[string]any{"image": img}},
			"networks":  []map[string]string{{"mode": "host"}},
		}
		body, _ := json.Marshal(app)
		var t0 time.Time
		err := waitFor(30*time.Second, func() error { // 503 until the frameworks run
			req, _ := http.NewRequest(http.MethodPut, base+"/v2/apps"+id, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			t0 = time.Now()
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				return fmt.Errorf("PUT %s: %s", id, resp.Status)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = waitFor(60*time.Second, func() error {
			resp, err := c.Get(base + "/v2/apps" + id + "/tasks")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var ts struct {
				Tasks []struct {
					State string `json:"state"`
				} `json:"tasks"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&ts); err != nil {
				return err
			}
			for _, t := range ts.Tasks {
				if t.State == "TASK_RUNNING" {
					return nil
				}
			}
			return fmt.Errorf("not running")
		})
		if err != nil {
			return nil, fmt.Errorf("%s never ran: %v\n%s", id, err, tail(logs.String(), 2000))
		}
		if i > 0 {
			out = append(out, time.Since(t0))
		}
		req, _ := http.NewRequest(http.MethodDelete, base+"/v2/apps"+id, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	return out, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func waitFor(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nsClient is an HTTP client whose connections start in a network namespace.
func nsClient(path string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			h, err := netns.GetFromPath(path)
			if err != nil {
				ch <- res{err: err}
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				ch <- res{err: err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 4}}
}
