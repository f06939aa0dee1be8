package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// TestProcessTaskMemoryLimit: on `weft up` as root, a process task with
// mem 32 that allocates 200 MB is killed by the kernel and reported as
// Mesos reports it: TASK_FAILED with "Memory limit exceeded" on
// /v2/events and in the app's lastTaskFailure. A task within its limit
// keeps running, and its usage and limits come back through the master
// (GET /v1/tasks/{id}/stats, `weft app tasks --stats`). The node shows its
// cgroup capability in `weft node list`.
func TestProcessTaskMemoryLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroup limits need root")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skip("no /sys/fs/cgroup")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	apiPort := freePort(t)
	startWeft(t, "up", upArgs(t, filepath.Join(dir, "data"), apiPort)...)
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	c := api.NewClient(addr)
	waitLeader(t, ctx, c)

	var nodes struct{ Nodes []api.Node }
	eventually(t, 30*time.Second, "the agent's capabilities", func() error {
		if _, err := c.Do(ctx, "GET", "/v1/nodes", nil, &nodes); err != nil {
			return err
		}
		for _, n := range nodes.Nodes {
			if slices.Contains(n.Capabilities, "cgroups-v1") || slices.Contains(n.Capabilities, "cgroups-v2") {
				return nil
			}
		}
		return fmt.Errorf("no node with a cgroups capability: %+v", nodes)
	})
	out, err := exec.CommandContext(ctx, testbin.Weft(t), "--api", addr, "node", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cgroups-v") {
		t.Fatalf("weft node list does not show the cgroups capability: %v\n%s", err, out)
	}

	events, err := c.Events(ctx, api.EventStatusUpdate)
	if err != nil {
		t.Fatal(err)
	}
	// tail keeps a line without a newline whole: 200 MB of zeros.
	hog := `{"id":"/limits/hog","cmd":"head -c 209715200 /dev/zero | tail; sleep 600","cpus":0.1,"mem":32,"instances":1,"backoffSeconds":60}`
	calm := `{"id":"/limits/calm","cmd":"exec sleep 600","cpus":0.5,"mem":32,"instances":1}`
	for id, def := range map[string]string{"/limits/hog": hog, "/limits/calm": calm} {
		if _, err := c.PutApp(ctx, id, []byte(def), false); err != nil {
			t.Fatalf("PUT %s: %v", id, err)
		}
	}
	deadline := time.After(60 * time.Second)
	for seen := false; !seen; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream closed")
			}
			var e struct{ AppID, TaskStatus, Message string }
			_ = json.Unmarshal(ev.Data, &e)
			if e.AppID == "/limits/hog" && e.TaskStatus == api.TaskFailed {
				if !strings.Contains(e.Message, "Memory limit exceeded: Requested: 32MB") {
					t.Fatalf("the hog failed with %q, want Mesos's memory limitation message", e.Message)
				}
				seen = true
			}
		case <-deadline:
			t.Fatal("no TASK_FAILED status_update_event for /limits/hog")
		}
	}
	var info struct {
		App struct {
			LastTaskFailure *api.TaskFailure `json:"lastTaskFailure"`
		} `json:"app"`
	}
	eventually(t, 10*time.Second, "the hog's lastTaskFailure", func() error {
		if _, err := c.Do(ctx, "GET", "/v2/apps/limits/hog", nil, &info); err != nil {
			return err
		}
		f := info.App.LastTaskFailure
		if f == nil || f.State != api.TaskFailed || !strings.Contains(f.Message, "Memory limit exceeded") {
			return fmt.Errorf("lastTaskFailure %+v", f)
		}
		return nil
	})

	eventually(t, 30*time.Second, "calm running", func() error { return wantRunning(ctx, c, "/limits/calm", 1) })
	ts, _ := runningTasks(ctx, c, "/limits/calm")
	st, err := c.TaskStats(ctx, ts[0].ID)
	if err != nil {
		t.Fatalf("GET /v1/tasks/%s/stats: %v", ts[0].ID, err)
	}
	if st.Statistics.MemLimitBytes != 32<<20 || st.Statistics.CpusLimit != 0.5 || st.Statistics.MemTotalBytes == 0 {
		t.Fatalf("calm's stats %+v: want a 32 MB limit, 0.5 cpus and some memory", st.Statistics)
	}
	out, err = exec.CommandContext(ctx, testbin.Weft(t), "--api", addr, "app", "tasks", "--stats", "/limits/calm").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MEM_LIMIT_MB") || !strings.Contains(string(out), "32.0") || !strings.Contains(string(out), "0.50") {
		t.Fatalf("weft app tasks --stats: %v\n%s", err, out)
	}
	// A plain Marathon task answer carries no usage keys (Marathon sends none).
	var raw map[string][]map[string]any
	if _, err := c.Do(ctx, "GET", "/v2/apps/limits/calm/tasks", nil, &raw); err != nil {
		t.Fatal(err)
	}
	for k := range raw["tasks"][0] {
		if strings.Contains(strings.ToLower(k), "stat") && k != "state" {
			t.Errorf("/v2/apps/{id}/tasks carries %q, a key Marathon never sends", k)
		}
	}
	time.Sleep(time.Second)
	if err := wantRunning(ctx, c, "/limits/calm", 1); err != nil {
		t.Fatalf("the task within its limit did not keep running: %v", err)
	}
	if tsa, _ := runningTasks(ctx, c, "/limits/calm"); len(tsa) != 1 || tsa[0].ID != ts[0].ID {
		t.Fatalf("calm was replaced: %+v, was %s", tsa, ts[0].ID)
	}
}
