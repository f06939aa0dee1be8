package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh/meshtest"
)

// TestTaskLogsFollowAcrossSites follows a task's stdout with `weft task
// logs -f` in the aws master's namespace while the task runs on the london
// agent: the master reads the agent's sandbox over the overlay with mutual
// TLS, and lines the task writes after the follow began reach the client.
// A finished task's log (all of it, through `weft task logs` without -f)
// ends the command.
func TestTaskLogsFollowAcrossSites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startTwoSites(t, ctx, []string{"--no-docker", "--agent-addr", "0.0.0.0:5051"}, nil)
	weft := testbin.Weft(t)
	def := `{"id":"/etl/ticker","cmd":"i=0; while [ $i -lt 100000 ]; do echo tick $i; echo err $i >&2; i=$((i+1)); sleep 0.2; done","cpus":0.1,"mem":16,"instances":1}`
	if code, b, err := hostAPI(ctx, s.m1h, "PUT", s.api+"/v2/apps/etl/ticker", []byte(def)); err != nil || code/100 != 2 {
		t.Fatalf("PUT /v2/apps/etl/ticker: %d %s %v", code, b, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, _ = hostAPI(c, s.m1h, "DELETE", s.api+"/v2/apps/etl/ticker?force=true", nil)
		time.Sleep(2 * time.Second)
	})
	var taskID string
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		code, b, err := hostAPI(ctx, s.m1h, "GET", s.api+"/v2/apps/etl/ticker/tasks", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("tasks: %d %v", code, err)
		}
		var ts struct {
			Tasks []struct{ ID, Host, State string }
		}
		if err := json.Unmarshal(b, &ts); err != nil {
			return err
		}
		if len(ts.Tasks) != 1 || ts.Tasks[0].State != "TASK_RUNNING" {
			return fmt.Errorf("not running yet: %s", b)
		}
		taskID = ts.Tasks[0].ID
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- m1:\n%s\n--- a1:\n%s", err, s.m1.p.Output(), s.a1.p.Output())
	}
	tick := regexp.MustCompile(`tick (\d+)\n`)
	lastTick := func(out string) int {
		ms := tick.FindAllStringSubmatch(out, -1)
		if len(ms) == 0 {
			return -1
		}
		n, _ := strconv.Atoi(ms[len(ms)-1][1])
		return n
	}
	// What the task has written so far, without -f: the command ends.
	var before int
	if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
		out, err := s.m1h.Exec(ctx, weft, "--api", s.api, "task", "logs", taskID)
		if err != nil {
			return fmt.Errorf("weft task logs: %v %s", err, out)
		}
		if !strings.HasPrefix(string(out), "tick 0\n") {
			return fmt.Errorf("log does not start at tick 0: %q", tail(string(out), 200))
		}
		before = lastTick(string(out))
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- m1:\n%s", err, s.m1.p.Output())
	}
	out, err := s.m1h.Exec(ctx, weft, "--api", s.api, "task", "logs", "--stderr", taskID)
	if err != nil || !strings.HasPrefix(string(out), "err 0\n") {
		t.Fatalf("weft task logs --stderr: %v %q", err, tail(string(out), 200))
	}
	f := s.m1h.Start(weft, "--api", s.api, "task", "logs", "-f", taskID)
	want := before + 10 // written ≥ 2 s after the follow began
	if err := meshtest.Eventually(ctx, 30*time.Second, func() error {
		if got := lastTick(f.Output()); got < want {
			return fmt.Errorf("following: last line tick %d, want tick %d", got, want)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- follower:\n%s\n--- m1:\n%s", err, tail(f.Output(), 1000), s.m1.p.Output())
	}
	select {
	case <-f.Done():
		t.Fatalf("the follower ended while the task runs: %v\n%s", f.Err(), tail(f.Output(), 1000))
	default:
	}
	// Every line once, in order, from tick 0.
	for i, m := range tick.FindAllStringSubmatch(f.Output(), -1) {
		if m[1] != strconv.Itoa(i) {
			t.Fatalf("line %d of the follow is tick %s\n%s", i, m[1], tail(f.Output(), 1000))
		}
	}
	// The app removed: the task is killed, and the follow ends by itself.
	if code, b, err := hostAPI(ctx, s.m1h, "DELETE", s.api+"/v2/apps/etl/ticker?force=true", nil); err != nil || code/100 != 2 {
		t.Fatalf("DELETE: %d %s %v", code, b, err)
	}
	select {
	case <-f.Done():
		if err := f.Err(); err != nil {
			t.Fatalf("the follower ended with %v\n%s", err, tail(f.Output(), 1000))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the follower did not end after the task was killed\n%s", tail(f.Output(), 1000))
	}
	// An unknown task is a clear error.
	if out, err := s.m1h.Exec(ctx, weft, "--api", s.api, "task", "logs", "nope.1"); err == nil || !strings.Contains(string(out), "no task nope.1") {
		t.Fatalf("unknown task: %v %s", err, out)
	}
}
