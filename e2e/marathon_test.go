package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// httpdApp is an app definition running the test httpd with a health check.
func httpdApp(t *testing.T, id string, instances int, pidDir, sickDir string, extra map[string]any) []byte {
	def := map[string]any{
		"id":              id,
		"args":            []string{httpd(t), "-pids", pidDir, "-sick", sickDir},
		"cpus":            0.1,
		"mem":             32,
		"instances":       instances,
		"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
		"healthChecks": []map[string]any{{
			"protocol": "HTTP", "path": "/health", "portIndex": 0,
			"gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 1,
			"maxConsecutiveFailures": 2, "delaySeconds": 0,
		}},
	}
	for k, v := range extra {
		def[k] = v
	}
	b, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mkdirs(t *testing.T, dirs ...string) {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// healthyCount counts RUNNING tasks whose every health check is alive.
func healthyCount(app *api.AppInfo) int {
	n := 0
	for _, tk := range app.Tasks {
		if tk.State != api.TaskRunning {
			continue
		}
		if ok, known := tk.Healthy(); ok && known {
			n++
		}
	}
	return n
}

func wantHealthy(ctx context.Context, c *api.Client, id string, n int, version string) error {
	app, err := c.App(ctx, id)
	if err != nil {
		return err
	}
	h := 0
	for _, tk := range app.Tasks {
		if ok, known := tk.Healthy(); tk.State == api.TaskRunning && ok && known && (version == "" || tk.Version == version) {
			h++
		}
	}
	if h != n || len(app.Tasks) != n || len(app.Deployments) != 0 {
		var q json.RawMessage
		_, _ = c.Do(ctx, "GET", "/v2/queue", nil, &q)
		desc := []string{}
		for _, tk := range app.Tasks {
			ok, known := tk.Healthy()
			desc = append(desc, fmt.Sprintf("%s@%s %s v%s healthy=%v/%v", tk.ID, tk.SlaveID, tk.State, tk.Version, ok, known))
		}
		return fmt.Errorf("%d healthy tasks of version %q, %d tasks, %d deployments; want %d healthy, no deployment\n tasks: %s\n queue: %s",
			h, version, len(app.Tasks), len(app.Deployments), n, strings.Join(desc, "; "), q)
	}
	return nil
}

// GROUP_BY site spreads an app evenly over the sites, UNIQUE hostname puts
// one task per agent, and what cannot be placed waits visibly in the queue.
func TestMarathonConstraintsAcrossSites(t *testing.T) {
	cl := startCluster(t,
		agentSpec{name: "lon1", site: "london"}, agentSpec{name: "lon2", site: "london"},
		agentSpec{name: "aws1", site: "aws"}, agentSpec{name: "aws2", site: "aws"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	def := fmt.Sprintf(`{"id":"/etl/extract","cmd":%q,"cpus":0.1,"mem":16,"instances":4,
		"constraints":[["site","GROUP_BY"],["hostname","UNIQUE"]]}`, cl.sleepCmd())
	if _, err := cl.c.PutApp(ctx, "/etl/extract", []byte(def), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "4 tasks running", func() error { return wantRunning(ctx, cl.c, "/etl/extract", 4) })
	ts, _ := runningTasks(ctx, cl.c, "/etl/extract")
	hosts, sites := map[string]int{}, map[string]int{}
	for _, tk := range ts {
		hosts[tk.SlaveID]++
		sites[tk.Site]++
	}
	if len(hosts) != 4 || sites["london"] != 2 || sites["aws"] != 2 {
		t.Fatalf("placement: agents %v, sites %v; want 4 distinct agents, 2 per site", hosts, sites)
	}

	// A fifth UNIQUE instance has no agent left: it waits, and says why.
	if _, err := cl.c.PutApp(ctx, "/etl/extract", []byte(`{"instances":5}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "queue explains the waiting instance", func() error {
		var q struct {
			Queue []api.QueueItem `json:"queue"`
		}
		if _, err := cl.c.Do(ctx, "GET", "/v2/queue", nil, &q); err != nil {
			return err
		}
		for _, it := range q.Queue {
			if it.App.ID != "/etl/extract" || it.ProcessedOffersSummary == nil {
				continue
			}
			for _, r := range it.ProcessedOffersSummary.RejectSummaryLastOffers {
				if r.Reason == "UnfulfilledConstraint" && r.Declined > 0 {
					return nil
				}
			}
			return fmt.Errorf("queue item without UnfulfilledConstraint declines: %+v", it.ProcessedOffersSummary)
		}
		return fmt.Errorf("/etl/extract not in the queue: %+v", q.Queue)
	})
	if err := wantRunning(ctx, cl.c, "/etl/extract", 4); err != nil {
		t.Fatal(err)
	}
}

// A rolling upgrade never drops below minimumHealthCapacity; a deployment
// that cannot finish is rolled back by DELETE /v2/deployments/{id}; an
// unhealthy task is replaced.
func TestMarathonRollingUpgradeRollbackAndHealth(t *testing.T) {
	cl := startCluster(t, agentSpec{name: "a1", site: "london"}, agentSpec{name: "a2", site: "aws"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pidDir, sickDir := cl.pidDir, filepath.Join(cl.dir, "sick")
	mkdirs(t, sickDir)
	const id = "/pentaho/biserver"
	strategy := map[string]any{"upgradeStrategy": map[string]any{"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}}
	v1 := httpdApp(t, id, 3, pidDir, sickDir, mergeMaps(strategy, map[string]any{"env": map[string]string{"RELEASE": "1"}}))
	if _, err := cl.c.PutApp(ctx, id, v1, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "3 healthy tasks of v1", func() error { return wantHealthy(ctx, cl.c, id, 3, "") })
	app, _ := cl.c.App(ctx, id)
	v1Version := app.VersionInfo.LastConfigChangeAt

	// Upgrade while watching health: at least ceil(0.5*3) = 2 healthy.
	var mu sync.Mutex
	minHealthy, samples := 3, 0
	var atMin string
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			a, err := cl.c.App(ctx, id)
			if err != nil {
				continue
			}
			mu.Lock()
			samples++
			if h := healthyCount(a); h < minHealthy {
				minHealthy = h
				atMin = ""
				for _, tk := range a.Tasks {
					ok, known := tk.Healthy()
					atMin += fmt.Sprintf("\n  %s %s v%s healthy=%v/%v", tk.ID, tk.State, tk.Version, ok, known)
				}
			}
			mu.Unlock()
		}
	}()
	v2 := httpdApp(t, id, 3, pidDir, sickDir, mergeMaps(strategy, map[string]any{"env": map[string]string{"RELEASE": "2"}}))
	if _, err := cl.c.PutApp(ctx, id, v2, false); err != nil {
		t.Fatal(err)
	}
	var v2Version string
	eventually(t, 90*time.Second, "upgrade to v2 done", func() error {
		a, err := cl.c.App(ctx, id)
		if err != nil {
			return err
		}
		v2Version = a.VersionInfo.LastConfigChangeAt
		if v2Version == v1Version {
			return fmt.Errorf("version unchanged")
		}
		return wantHealthy(ctx, cl.c, id, 3, v2Version)
	})
	close(stop)
	<-watched
	mu.Lock()
	if minHealthy < 2 {
		t.Fatalf("during the upgrade only %d tasks were healthy (minimumHealthCapacity 0.5 of 3 wants 2), over %d samples; tasks then:%s", minHealthy, samples, atMin)
	}
	t.Logf("rolling upgrade: at least %d of 3 healthy over %d samples", minHealthy, samples)
	mu.Unlock()

	// v3's health check can never pass: its deployment waits; roll it back.
	bad := httpdApp(t, id, 3, pidDir, sickDir, mergeMaps(strategy, map[string]any{"env": map[string]string{"RELEASE": "3"}}))
	var badDef map[string]any
	_ = json.Unmarshal(bad, &badDef)
	badDef["healthChecks"].([]any)[0].(map[string]any)["path"] = "/never-healthy"
	bad, _ = json.Marshal(badDef)
	res, err := cl.c.PutApp(ctx, id, bad, false)
	if err != nil {
		t.Fatal(err)
	}
	// A second change while the deployment runs is refused with 409.
	if _, err := cl.c.PutApp(ctx, id, []byte(`{"instances":4}`), false); api.StatusCode(err) != 409 {
		t.Fatalf("change during a deployment: got %v, want 409", err)
	}
	time.Sleep(3 * time.Second) // let it start replacing
	var rb api.DeploymentResult
	if _, err := cl.c.Do(ctx, "DELETE", "/v2/deployments/"+res.DeploymentID, nil, &rb); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	eventually(t, 90*time.Second, "rolled back to v2's definition", func() error {
		a, err := cl.c.App(ctx, id)
		if err != nil {
			return err
		}
		if a.Env["RELEASE"].Value != "2" || a.HealthChecks[0].Path != "/health" {
			return fmt.Errorf("definition after rollback: RELEASE=%q path=%q", a.Env["RELEASE"].Value, a.HealthChecks[0].Path)
		}
		// Tasks carry the version of the config they run (Marathon's
		// lastConfigChangeAt); v2's tasks may simply be kept.
		return wantHealthy(ctx, cl.c, id, 3, a.VersionInfo.LastConfigChangeAt)
	})

	// An unhealthy task is killed and replaced.
	a, _ := cl.c.App(ctx, id)
	victim := a.Tasks[0].ID
	if err := os.WriteFile(filepath.Join(sickDir, victim), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "unhealthy task replaced", func() error {
		a, err := cl.c.App(ctx, id)
		if err != nil {
			return err
		}
		for _, tk := range a.Tasks {
			if tk.ID == victim {
				return fmt.Errorf("unhealthy task %s still there (%s)", victim, tk.State)
			}
		}
		return wantHealthy(ctx, cl.c, id, 3, "")
	})
}

// A killed agent's tasks are replaced elsewhere and not duplicated when it
// comes back; a master restart leaves running tasks alone.
func TestMarathonAgentLossAndMasterRestart(t *testing.T) {
	cl := startCluster(t, agentSpec{name: "a1", site: "london"}, agentSpec{name: "a2", site: "london"}, agentSpec{name: "a3", site: "aws"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pidDir := cl.pidDir
	const id = "/etl/loader"
	def := fmt.Sprintf(`{"id":%q,"cmd":%q,"cpus":0.1,"mem":16,"instances":6,
		"constraints":[["hostname","MAX_PER","2"]]}`, id, cl.sleepCmd())
	if _, err := cl.c.PutApp(ctx, id, []byte(def), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "6 tasks running, 2 per agent", func() error { return wantRunning(ctx, cl.c, id, 6) })
	// With MAX_PER 2 and three agents, a3 runs two. Lift the cap so they
	// can be replaced on the other two.
	if _, err := cl.c.PutApp(ctx, id, []byte(`{"constraints":[]}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "deployment of the constraint change done", func() error {
		a, err := cl.c.App(ctx, id)
		if err != nil {
			return err
		}
		if len(a.Deployments) != 0 {
			return fmt.Errorf("deployment still running")
		}
		return wantRunning(ctx, cl.c, id, 6)
	})
	ts, _ := runningTasks(ctx, cl.c, id)
	var onA3 []string
	for _, tk := range ts {
		if tk.SlaveID == "a3" {
			onA3 = append(onA3, tk.ID)
		}
	}
	if len(onA3) == 0 {
		t.Fatalf("no task on a3: %v", taskHosts(ts))
	}

	// kill -9 the agent (its tasks keep running, as on a partitioned host).
	lost := time.Now()
	if err := cl.agents["a3"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-cl.agents["a3"].done
	eventually(t, 60*time.Second, "a3's tasks replaced on a1 and a2", func() error {
		ts, err := runningTasks(ctx, cl.c, id)
		if err != nil {
			return err
		}
		live := 0
		for _, tk := range ts {
			if tk.SlaveID != "a3" {
				live++
			}
		}
		if live != 6 {
			return fmt.Errorf("%d tasks running off a3, want 6 (%v)", live, taskHosts(ts))
		}
		return nil
	})
	// The master sees a3 hang up its long poll and a3 answers no gossip
	// ping (about 1 s), then unreachableStrategy's inactiveAfterSeconds
	// (2 s) and the launch: about 3.5 s; gossip alone took 7-11 s.
	took := time.Since(lost)
	t.Logf("agent loss: tasks running elsewhere %v after kill -9", took.Round(100*time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("a3's tasks ran elsewhere %v after kill -9, want within 8 s (about 3.5 s on a quiet machine)", took.Round(100*time.Millisecond))
	}

	// a3 comes back: the tasks that were replaced are stopped there.
	cl.restartAgent("a3")
	eventually(t, 60*time.Second, "a3's replaced tasks stopped, no duplicates", func() error {
		for _, tid := range onA3 {
			if alive(readPid(t, pidDir, tid)) {
				return fmt.Errorf("replaced task %s still runs on a3", tid)
			}
		}
		ts, err := runningTasks(ctx, cl.c, id)
		if err != nil {
			return err
		}
		if len(ts) != 6 {
			return fmt.Errorf("%d running, want 6 (%v)", len(ts), taskHosts(ts))
		}
		return nil
	})

	// A graceful agent restart (Ctrl-C, back a few seconds later) replaces
	// nothing: the agent tells the master it stops on purpose, so the end
	// of its poll is not taken for its death.
	kept, _ := runningTasks(ctx, cl.c, id)
	if !cl.agents["a1"].stop(20 * time.Second) {
		t.Fatal("a1 did not stop on Ctrl-C")
	}
	time.Sleep(2 * time.Second) // taken for dead, a1's tasks would be UNREACHABLE by now
	if ts, err := runningTasks(ctx, cl.c, id); err != nil || taskIDs(ts) != taskIDs(kept) {
		t.Fatalf("2 s into a graceful restart of a1: running %v (err %v), want all 6 still", taskHosts(ts), err)
	}
	cl.restartAgent("a1")
	eventually(t, 60*time.Second, "a1 back with the same tasks", func() error {
		ts, err := runningTasks(ctx, cl.c, id)
		if err != nil {
			return err
		}
		if got, want := taskIDs(ts), taskIDs(kept); got != want {
			return fmt.Errorf("tasks across a graceful agent restart:\n before %s\n now    %s", want, got)
		}
		return nil
	})
	if a, err := cl.c.App(ctx, id); err != nil {
		t.Fatal(err)
	} else if len(a.Tasks) != 6 {
		t.Fatalf("after a graceful agent restart: %d tasks, want 6", len(a.Tasks))
	}

	// Master restart: the same tasks, the same processes.
	before, _ := runningTasks(ctx, cl.c, id)
	pids := map[string]int{}
	for _, tk := range before {
		pids[tk.ID] = readPid(t, pidDir, tk.ID)
	}
	if !cl.master.stop(20 * time.Second) {
		t.Fatal("master did not stop on SIGINT")
	}
	cl.master = startWeft(t, "m1-again", cl.margs...)
	waitLeader(t, ctx, cl.c)
	time.Sleep(5 * time.Second) // give a wrong master time to act
	after, err := runningTasks(ctx, cl.c, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := taskIDs(after), taskIDs(before); got != want {
		t.Fatalf("tasks changed across a master restart:\n before %s\n after  %s", want, got)
	}
	for tid, pid := range pids {
		if !alive(pid) {
			t.Fatalf("task %s's process %d died across a master restart", tid, pid)
		}
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func taskIDs(ts []api.Task) string {
	ids := make([]string, len(ts))
	for i, tk := range ts {
		ids[i] = tk.ID
	}
	sort.Strings(ids)
	return strings.Join(ids, " ")
}

func taskHosts(ts []api.Task) map[string]int {
	m := map[string]int{}
	for _, tk := range ts {
		m[tk.SlaveID]++
	}
	return m
}

func mergeMaps(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
