package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ETL as Chronos users run it, on the real binary with a separate master
// and agent: a dependency chain, retries, and a master restart in the
// middle of a run that neither loses nor repeats it.
func TestChronosChainRetriesAndMasterRestart(t *testing.T) {
	cl := startCluster(t, agentSpec{name: "a1", site: "london"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out := filepath.Join(cl.dir, "out")
	mkdirs(t, out)
	log := filepath.Join(out, "order")

	put := func(def string, dependent bool) {
		t.Helper()
		if err := cl.c.PutJobJSON(ctx, []byte(def), dependent); err != nil {
			t.Fatalf("submitting %s: %v", def, err)
		}
	}
	// extract runs once, now; transform and load follow it.
	put(fmt.Sprintf(`{"name":"extract","command":"echo extract >> %s","schedule":"R1//PT1H","epsilon":"PT5M","cpus":0.1,"mem":16,"owner":"etl@example.com"}`, log), false)
	put(fmt.Sprintf(`{"name":"transform","command":"echo transform >> %s","parents":["extract"],"cpus":0.1,"mem":16}`, log), true)
	put(fmt.Sprintf(`{"name":"load","command":"echo load >> %s","parents":["transform"],"cpus":0.1,"mem":16}`, log), true)
	eventually(t, 60*time.Second, "extract, transform and load each succeeded once", func() error {
		for _, name := range []string{"extract", "transform", "load"} {
			j, err := cl.c.Job(ctx, name)
			if err != nil {
				return err
			}
			if j.SuccessCount != 1 {
				return fmt.Errorf("%s: successCount %d", name, j.SuccessCount)
			}
		}
		return nil
	})
	b, _ := os.ReadFile(log)
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "extract,transform,load" {
		t.Fatalf("runs in order %v, want extract,transform,load", got)
	}

	// A job that fails twice, then succeeds: two retries.
	count := filepath.Join(out, "count")
	put(fmt.Sprintf(`{"name":"flaky","command":"n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s; [ $n -ge 3 ]","schedule":"R1//PT1H","retries":2,"cpus":0.1,"mem":16}`, count), false)
	eventually(t, 60*time.Second, "flaky succeeded on its third attempt", func() error {
		j, err := cl.c.Job(ctx, "flaky")
		if err != nil {
			return err
		}
		if j.SuccessCount != 1 {
			return fmt.Errorf("successCount %d, errorCount %d", j.SuccessCount, j.ErrorCount)
		}
		return nil
	})
	if b, _ := os.ReadFile(count); strings.TrimSpace(string(b)) != "3" {
		t.Fatalf("flaky ran %q times, want 3", strings.TrimSpace(string(b)))
	}
	runs, err := cl.c.JobRuns(ctx, "flaky")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Attempt != 3 || runs[0].State != "succeeded" {
		t.Fatalf("flaky's ledger: %+v; want one succeeded run on attempt 3", runs)
	}

	// A run in flight survives a master restart: it finishes once.
	done := filepath.Join(out, "long")
	put(fmt.Sprintf(`{"name":"long","command":"sleep 4; echo done >> %s","schedule":"R0//PT1H","cpus":0.1,"mem":16}`, done), false)
	if err := cl.c.RunJob(ctx, "long", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "long is running", func() error {
		runs, err := cl.c.JobRuns(ctx, "long")
		if err != nil {
			return err
		}
		if len(runs) == 0 || runs[len(runs)-1].State != "running" {
			return fmt.Errorf("runs %+v", runs)
		}
		return nil
	})
	if !cl.master.stop(20 * time.Second) {
		t.Fatal("master did not stop on SIGINT")
	}
	cl.master = startWeft(t, "m1-again", cl.margs...)
	waitLeader(t, ctx, cl.c)
	eventually(t, 60*time.Second, "long succeeded once after the restart", func() error {
		j, err := cl.c.Job(ctx, "long")
		if err != nil {
			return err
		}
		if j.SuccessCount != 1 {
			return fmt.Errorf("successCount %d errorCount %d", j.SuccessCount, j.ErrorCount)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a duplicate would have started by now
	b, _ = os.ReadFile(done)
	if n := strings.Count(string(b), "done"); n != 1 {
		t.Fatalf("long's command ran %d times across the master restart, want 1", n)
	}
	runs, _ = cl.c.JobRuns(ctx, "long")
	if len(runs) != 1 || runs[0].State != "succeeded" {
		t.Fatalf("long's ledger after the restart: %+v", runs)
	}
}
