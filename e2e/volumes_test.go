package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// TestResidentTaskKeepsItsVolume: an app with a local persistent volume
// reserves disk on one agent; its task's file survives kill -9 of the task,
// a restart of the agent (with the task killed while the agent was down)
// and a restart of the master (the same), and every relaunch lands on the
// same agent with the same volume. Scaling to 0 keeps the reservation;
// wipe=true releases it.
func TestResidentTaskKeepsItsVolume(t *testing.T) {
	cl := startCluster(t, agentSpec{name: "a1", site: "london"}, agentSpec{name: "a2", site: "london"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const id = "/bi/db"
	// Each run appends a line to data/runs; the first one also writes
	// data/first, which must never be written again.
	cmd := fmt.Sprintf(`echo $$ > %s/$MESOS_TASK_ID.pid; [ -f data/first ] || echo $MESOS_TASK_ID > data/first; echo $MESOS_TASK_ID >> data/runs; exec sleep 600`, cl.pidDir)
	def := fmt.Sprintf(`{"id":%q,"cmd":%q,"cpus":0.1,"mem":16,"instances":1,"backoffSeconds":0.2,
		"container":{"type":"MESOS","volumes":[{"containerPath":"data","mode":"RW","persistent":{"type":"root","size":64}}]},
		"residency":{"taskLostBehavior":"WAIT_FOREVER"}}`, id, cmd)
	if _, err := cl.c.PutApp(ctx, id, []byte(def), false); err != nil {
		t.Fatal(err)
	}
	var first api.Task
	eventually(t, 30*time.Second, "the resident task running", func() error {
		ts, err := runningTasks(ctx, cl.c, id)
		if err != nil || len(ts) != 1 {
			return fmt.Errorf("%d running (%v)", len(ts), err)
		}
		first = ts[0]
		return nil
	})
	agent := first.SlaveID
	// Marathon's task JSON: localVolumes with the persistence id.
	var listed struct {
		Tasks []api.Task `json:"tasks"`
	}
	if _, err := cl.c.Do(ctx, "GET", "/v2/apps"+id+"/tasks", nil, &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Tasks) != 1 || len(listed.Tasks[0].LocalVolumes) != 1 || listed.Tasks[0].LocalVolumes[0].ContainerPath != "data" {
		t.Fatalf("/v2/apps%s/tasks: want one task with localVolumes [data], got %+v", id, listed.Tasks)
	}
	pid := listed.Tasks[0].LocalVolumes[0].PersistenceID
	if !strings.HasPrefix(pid, "bi_db#data#") {
		t.Fatalf("persistenceId %q, want bi_db#data#<uuid>", pid)
	}
	volDir := filepath.Join(cl.dir, agent, "agent", "volumes", pid)
	// The reservation's disk counts as used on its agent.
	nodes, err := cl.c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == agent && n.Used.Disk < 64 {
			t.Fatalf("agent %s: used disk %g, want at least the volume's 64", agent, n.Used.Disk)
		}
	}

	runs := func() []string {
		b, _ := os.ReadFile(filepath.Join(volDir, "runs"))
		return strings.Fields(string(b))
	}
	waitRelaunch := func(what string, prev string, wantRuns int) api.Task {
		t.Helper()
		var got api.Task
		eventually(t, 60*time.Second, what, func() error {
			ts, err := runningTasks(ctx, cl.c, id)
			if err != nil || len(ts) != 1 {
				return fmt.Errorf("%d running (%v)", len(ts), err)
			}
			if ts[0].ID == prev {
				return fmt.Errorf("still the old task %s", prev)
			}
			if n := len(runs()); n != wantRuns {
				return fmt.Errorf("%d runs in the volume, want %d", n, wantRuns)
			}
			got = ts[0]
			return nil
		})
		if got.SlaveID != agent {
			t.Fatalf("%s: relaunched on %s, want %s (where the volume is)", what, got.SlaveID, agent)
		}
		b, _ := os.ReadFile(filepath.Join(volDir, "first"))
		if strings.TrimSpace(string(b)) != first.ID {
			t.Fatalf("%s: data/first is %q, want %q (the data of the first run)", what, b, first.ID)
		}
		return got
	}
	killTask := func(tk api.Task) {
		t.Helper()
		if err := syscall.Kill(readPid(t, cl.pidDir, tk.ID), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the first run in the volume", func() error {
		if n := len(runs()); n != 1 {
			return fmt.Errorf("%d runs", n)
		}
		return nil
	})

	// 1. kill -9 of the task.
	killTask(first)
	cur := waitRelaunch("relaunch after kill -9 of the task", first.ID, 2)

	// 2. The agent stops (kill -9), its task is killed while it is down,
	// and it comes back: the other agent never gets the instance.
	if err := cl.agents[agent].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-cl.agents[agent].done
	killTask(cur)
	time.Sleep(3 * time.Second)
	if ts, _ := runningTasks(ctx, cl.c, id); len(ts) == 1 && ts[0].SlaveID != agent {
		t.Fatalf("the resident instance moved to %s while its agent was down", ts[0].SlaveID)
	}
	cl.restartAgent(agent)
	cur = waitRelaunch("relaunch after an agent restart", cur.ID, 3)

	// 3. The master stops, the task is killed meanwhile, the master starts
	// again from its raft state.
	if !cl.master.stop(20 * time.Second) {
		t.Fatal("master did not stop on SIGINT")
	}
	killTask(cur)
	cl.master = startWeft(t, "m1-again", cl.margs...)
	waitLeader(t, ctx, cl.c)
	cur = waitRelaunch("relaunch after a master restart", cur.ID, 4)

	// Scale to 0: the reservation stays, listed as a task with its volume
	// and no state; wipe=true releases it.
	if _, err := cl.c.Do(ctx, "PUT", "/v2/apps"+id+"?force=true", map[string]any{"instances": 0}, nil); err != nil {
		t.Fatal(err)
	}
	var suspended struct {
		Tasks []map[string]any `json:"tasks"`
	}
	eventually(t, 30*time.Second, "a suspended resident task after scaling to 0", func() error {
		suspended.Tasks = nil // a fresh decode: json merges into the maps of a reused slice
		if _, err := cl.c.Do(ctx, "GET", "/v2/apps"+id+"/tasks", nil, &suspended); err != nil {
			return err
		}
		if len(suspended.Tasks) != 1 || suspended.Tasks[0]["state"] != nil || suspended.Tasks[0]["slaveId"] != agent {
			return fmt.Errorf("tasks %v", suspended.Tasks)
		}
		return nil
	})
	tid, _ := suspended.Tasks[0]["id"].(string)
	if _, err := cl.c.Do(ctx, "DELETE", "/v2/apps"+id+"/tasks/"+tid+"?wipe=true", nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reservation released", func() error {
		suspended.Tasks = nil
		if _, err := cl.c.Do(ctx, "GET", "/v2/apps"+id+"/tasks", nil, &suspended); err != nil {
			return err
		}
		if len(suspended.Tasks) != 0 {
			return fmt.Errorf("tasks %v", suspended.Tasks)
		}
		nodes, err := cl.c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.ID == agent && n.Used.Disk >= 64 {
				return fmt.Errorf("agent %s still has %g MiB used", agent, n.Used.Disk)
			}
		}
		return nil
	})
	if len(runs()) != 4 {
		t.Fatalf("the volume's data went with the reservation: %v", runs())
	}
}
