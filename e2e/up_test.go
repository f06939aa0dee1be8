package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// upArgs returns `weft up` arguments with every listener on a free loopback
// port, so tests run side by side.
func upArgs(t *testing.T, dataDir string, apiPort int) []string {
	return []string{"up",
		"--data-dir", dataDir,
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--agent-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0",
		"--dns-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--lb-http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--lb-admin-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--lb-appid-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--ports", freePortRange(t, 50), // below the ephemeral range freePort draws from
	}
}

// The [foundation] story: PUT an app, see it RUNNING, scale it to 3, kill
// one task's process and see it replaced, restart weft, and see the app and
// its tasks back.
func TestUpRunsAndKeepsMarathonApps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pidDir := filepath.Join(dir, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		t.Fatal(err)
	}
	apiPort := freePort(t)
	args := upArgs(t, filepath.Join(dir, "data"), apiPort)
	weft := startWeft(t, "up", args...)
	c := api.NewClient(fmt.Sprintf("127.0.0.1:%d", apiPort))

	waitLeader(t, ctx, c)

	// A second weft on the same data dir is refused at once, naming the
	// first, instead of hanging on raft's lock or sharing its sandboxes.
	second := exec.CommandContext(ctx, testbin.Weft(t), upArgs(t, filepath.Join(dir, "data"), freePort(t))...)
	out, err := second.CombinedOutput()
	if code := second.ProcessState.ExitCode(); err == nil || code != 1 ||
		!strings.Contains(string(out), fmt.Sprintf("in use by another weft process (pid %d)", weft.cmd.Process.Pid)) {
		t.Fatalf("second weft up on the same data dir: exit %d, %v, output:\n%s", code, err, out)
	}

	events, err := c.Events(ctx, api.EventStatusUpdate)
	if err != nil {
		t.Fatal(err)
	}

	// Each task writes its pid where the test can find it, then becomes a
	// long-lived process with that pid.
	def := fmt.Sprintf(`{"id":"/ssk2/whereisbot","cmd":"echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600","cpus":0.1,"mem":32,"instances":1,"env":{"GREETING":"hi"},"labels":{"team":"bi"}}`, pidDir)
	res, err := c.PutApp(ctx, "/ssk2/whereisbot", []byte(def), false)
	if err != nil {
		t.Fatalf("PUT app: %v", err)
	}
	if res.DeploymentID == "" {
		t.Fatalf("PUT answered no deploymentId: %+v", res)
	}
	eventually(t, 30*time.Second, "one task running", func() error { return wantRunning(ctx, c, "/ssk2/whereisbot", 1) })

	// The task's RUNNING shows on /v2/events.
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream closed")
			}
			seen = strings.Contains(string(ev.Data), api.TaskRunning) && strings.Contains(string(ev.Data), "/ssk2/whereisbot")
		case <-deadline:
			t.Fatal("no status_update_event with TASK_RUNNING for /ssk2/whereisbot")
		}
	}

	// Scale to 3 with a partial PUT, as the Marathon UI does.
	if _, err := c.PutApp(ctx, "/ssk2/whereisbot", []byte(`{"instances":3}`), false); err != nil {
		t.Fatalf("scale: %v", err)
	}
	eventually(t, 30*time.Second, "three tasks running", func() error { return wantRunning(ctx, c, "/ssk2/whereisbot", 3) })
	app, err := c.App(ctx, "/ssk2/whereisbot")
	if err != nil {
		t.Fatal(err)
	}
	if app.Instances != 3 || app.Env["GREETING"].Value != "hi" || app.Labels["team"] != "bi" {
		t.Fatalf("app after scaling lost fields: instances=%d env=%v labels=%v", app.Instances, app.Env, app.Labels)
	}

	// Kill one task's process: it is replaced by a new task.
	before, _ := runningTasks(ctx, c, "/ssk2/whereisbot")
	victim := before[0]
	pid := readPid(t, pidDir, victim.ID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing task %s (pid %d): %v", victim.ID, pid, err)
	}
	eventually(t, 30*time.Second, "killed task replaced", func() error {
		ts, err := runningTasks(ctx, c, "/ssk2/whereisbot")
		if err != nil {
			return err
		}
		for _, tk := range ts {
			if tk.ID == victim.ID {
				return fmt.Errorf("task %s still listed as running", victim.ID)
			}
		}
		if len(ts) != 3 {
			return fmt.Errorf("%d running, want 3", len(ts))
		}
		return nil
	})

	// Ctrl-C stops weft and the tasks it ran; then start again on the same
	// data dir. A task is RUNNING once its shell has started, which may be
	// before the shell wrote its pid file, so read every pid first: a task
	// stopped before it wrote one would leave nothing to check.
	old, _ := runningTasks(ctx, c, "/ssk2/whereisbot")
	pids := make(map[string]int, len(old))
	for _, tk := range old {
		pids[tk.ID] = readPid(t, pidDir, tk.ID)
	}
	if !weft.stop(20 * time.Second) {
		t.Fatal("weft up did not stop within 20s of Ctrl-C")
	}
	for _, tk := range old {
		pid := pids[tk.ID]
		eventually(t, 10*time.Second, "task process gone after Ctrl-C", func() error {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("process %d of task %s still runs", pid, tk.ID)
			}
			return nil
		})
	}
	startWeft(t, "up-again", args...)
	waitLeader(t, ctx, c)
	app, err = c.App(ctx, "/ssk2/whereisbot")
	if err != nil {
		t.Fatalf("app after restart: %v", err)
	}
	if app.Instances != 3 || app.Labels["team"] != "bi" {
		t.Fatalf("app after restart: instances=%d labels=%v", app.Instances, app.Labels)
	}
	// Right after the restart the master still shows the old tasks as
	// RUNNING until the agent reports them LOST; what counts is three live
	// processes behind three RUNNING tasks.
	eventually(t, 60*time.Second, "tasks running again after restart", func() error {
		if err := wantRunning(ctx, c, "/ssk2/whereisbot", 3); err != nil {
			return err
		}
		ts, _ := runningTasks(ctx, c, "/ssk2/whereisbot")
		for _, tk := range ts {
			b, err := os.ReadFile(filepath.Join(pidDir, tk.ID+".pid"))
			if err != nil {
				return fmt.Errorf("task %s has no pid file yet", tk.ID)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if syscall.Kill(pid, 0) != nil {
				return fmt.Errorf("task %s is listed RUNNING but its process %d is gone", tk.ID, pid)
			}
		}
		return nil
	})
}

func readPid(t *testing.T, dir, taskID string) int {
	t.Helper()
	var pid int
	eventually(t, 10*time.Second, "pid file of "+taskID, func() error {
		b, err := os.ReadFile(filepath.Join(dir, taskID+".pid"))
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return pid
}
