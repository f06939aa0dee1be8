package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/chronos"
)

// TestJobCommands runs `weft job add|list|run|history|remove` in-process
// against a real master with the chronos framework (no agent: runs stay
// queued, which is what history shows).
func TestJobCommands(t *testing.T) {
	mc := sched.DefaultMasterConfig()
	mc.Store.Dir = ""
	mc.Members = sched.NewStaticMembers()
	mc.Frameworks = []sched.Framework{chronos.New(chronos.DefaultConfig())}
	srv := httptest.NewUnstartedServer(nil)
	mc.APIAdvertise = srv.Listener.Addr().String()
	m, err := sched.NewMaster(mc)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = m.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); srv.Close(); <-done })
	for deadline := time.Now().Add(5 * time.Second); !m.Store().IsLeader(); {
		if time.Now().After(deadline) {
			t.Fatal("master never led")
		}
		time.Sleep(10 * time.Millisecond)
	}

	weft := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := newApp()
		app.Writer, app.ErrWriter = &out, &out
		err := app.RunContext(context.Background(), append([]string{"weft", "--api", srv.URL}, args...))
		return out.String(), err
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "etl.json")
	os.WriteFile(file, []byte(`[
  {"name":"extract","command":"extract.sh","schedule":"R/2026-11-22T02:00:00Z/PT24H","scheduleTimeZone":"Europe/Berlin"},
  {"name":"load","command":"load.sh","parents":["extract"]}
]`), 0o644)
	if out, err := weft("job", "add", file); err != nil || !strings.Contains(out, "job load saved (after extract)") {
		t.Fatalf("add: %v\n%s", err, out)
	}
	j, err := api.NewClient(srv.URL).Job(ctx, "extract")
	if err != nil || !j.Shell || j.Cpus != 0.1 {
		t.Fatalf("the definition lost Chronos's defaults: %+v %v", j, err)
	}
	out, err := weft("job", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "extract", "R/2026-11-22T02:00:00Z/PT24H (Europe/Berlin)", "load", "after extract", "fresh"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}
	if out, err := weft("job", "run", "load", "--arguments", "--day=1"); err != nil || !strings.Contains(out, "queued") {
		t.Fatalf("run: %v\n%s", err, out)
	}
	out, err = weft("job", "history", "load")
	if err != nil || !strings.Contains(out, "manual") || !strings.Contains(out, "queued") {
		t.Fatalf("history: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"name":"x","command":"true","parents":["ghost"]}`), 0o644)
	if out, err := weft("job", "add", bad); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("an unknown parent was accepted: %v\n%s", err, out)
	}
	if _, err := weft("job", "remove", "load"); err != nil {
		t.Fatal(err)
	}
	if _, err := weft("job", "history", "load"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("history of a removed job: %v", err)
	}
}
