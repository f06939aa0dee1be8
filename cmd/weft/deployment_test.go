package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// `weft deployment watch` exits 0 only for a deployment that succeeded:
// an unknown id (the "null" a CI job passes on after a 409), a rolled-back
// deployment and one superseded by a forced change all fail; one that
// succeeded before the watch began still succeeds.
func TestDeploymentWatchFailsUnlessItSucceeded(t *testing.T) {
	cm := startCLIMaster(t)
	weft := cm.weft
	c := api.NewClient(cm.url)
	dir := t.TempDir()
	add := func(def string) string {
		t.Helper()
		f := filepath.Join(dir, "app.json")
		if err := os.WriteFile(f, []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := weft("app", "add", f)
		if err != nil {
			t.Fatalf("add: %v\n%s", err, out)
		}
		return regexp.MustCompile(`deployment ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	}
	wantFail := func(id, msg string) {
		t.Helper()
		out, err := weft("deployment", "watch", "--timeout", "10s", id)
		if err == nil || !strings.Contains(err.Error(), msg) || strings.Contains(out, "succeeded") {
			t.Fatalf("watch %s: want an error containing %q, got %v\n%s", id, msg, err, out)
		}
	}
	wantFail("null", `no deployment "null"`)
	wantFail("5f4c6f1e-0000-4000-8000-000000000000", "no deployment")

	// Nothing runs the tasks: deployments stay open until something ends them.
	rolled := add(`{"id":"/ci/web","cmd":"sleep 1000","cpus":0.1,"mem":16}`)
	if _, err := c.Do(context.Background(), "DELETE", "/v2/deployments/"+rolled, nil, nil); err != nil {
		t.Fatalf("roll back: %v", err)
	}
	wantFail(rolled, "failed: rolled back")

	first := add(`{"id":"/ci/api","cmd":"sleep 1000","cpus":0.1,"mem":16}`)
	if _, err := c.PutApp(context.Background(), "/ci/api", []byte(`{"instances":2}`), true); err != nil {
		t.Fatalf("forced update: %v", err)
	}
	wantFail(first, "failed: canceled by a forced change")

	// A deployment that ended before the watch began: its outcome is kept.
	actx, stop := context.WithCancel(cm.ctx)
	defer stop()
	go runTestAgent(actx, c, "agent-1")
	done := add(`{"id":"/ci/fast","cmd":"sleep 1000","cpus":0.1,"mem":16}`)
	for i := 0; ; i++ {
		deps, err := c.Deployments(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		running := false
		for _, d := range deps {
			running = running || d.ID == done
		}
		if !running {
			break
		}
		if i > 200 {
			t.Fatal("deployment never finished")
		}
		sleepShort()
	}
	if out, err := weft("deployment", "watch", "--timeout", "10s", done); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("watch of a finished deployment: %v\n%s", err, out)
	}
}

func sleepShort() { time.Sleep(50 * time.Millisecond) }
