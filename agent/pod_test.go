package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// A pod of two command containers: they share an ephemeral volume (each
// sees it at its own relative mountPath in its own sandbox), and when one
// exits the instance ends with its exit and the other is stopped.
func TestPodOfCommandContainers(t *testing.T) {
	dir := t.TempDir()
	pe, err := NewProcessExecutor(DefaultProcessConfig(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	ex := NewPodExecutor(nil, pe)
	sandbox := filepath.Join(dir, "sandbox")
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := api.TaskSpec{Pod: &api.PodTaskSpec{
		Volumes: map[string]string{"v1": ""},
		Containers: []api.PodTaskContainer{
			{Name: "ct1", Shell: `echo "the time is now" > ./jdef-v1/clock; while ! test -e ./jdef-v1/seen; do sleep 0.05; done; exit 3`,
				Mounts: []api.PodVolumeMount{{Name: "v1", MountPath: "jdef-v1"}}},
			{Name: "ct2", Shell: `while ! test -s ./etc/clock; do sleep 0.05; done; cat ./etc/clock; touch ./etc/seen; exec sleep 60`,
				Mounts: []api.PodVolumeMount{{Name: "v1", MountPath: "etc"}}},
		}}}
	if !ex.Handles(spec) || ex.Handles(api.TaskSpec{}) {
		t.Fatal("Handles: a pod spec and only a pod spec")
	}
	l := Launch{Task: api.Task{ID: "pod.1"}, Spec: spec, Sandbox: sandbox, Env: map[string]string{"PATH": os.Getenv("PATH")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := ex.Start(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Done():
	case <-ctx.Done():
		_ = h.Stop(context.Background(), 0)
		t.Fatal("the instance did not end when ct1 exited")
	}
	ex1 := h.Exit()
	if ex1.Code != 3 || !strings.HasPrefix(ex1.Message, "container ct1: ") {
		t.Fatalf("instance exit %+v, want ct1's exit 3", ex1)
	}
	out, _ := os.ReadFile(filepath.Join(sandbox, "containers", "ct2", "stdout"))
	if string(out) != "the time is now\n" {
		t.Fatalf("ct2 read %q from the shared volume", out)
	}
	ph := h.(*podHandle)
	select {
	case <-ph.parts[1].Done():
	default:
		t.Fatal("ct2 still runs after the instance ended")
	}
	// Nothing left for Cleanup to keep: ct2's record went with it.
	recs, _ := pe.records()
	if len(recs) != 0 {
		t.Fatalf("process records left: %+v", recs)
	}
}

// podAgentConfig is testConfig with a pod executor over a process executor
// whose records are in dir (the same dir across an agent restart).
func podAgentConfig(t *testing.T, m *fakeMaster, dir string) Config {
	cfg := testConfig(t, m, dir)
	pe, err := NewProcessExecutor(DefaultProcessConfig(filepath.Join(dir, "process")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Executors = []Executor{NewPodExecutor(nil, pe), pe}
	return cfg
}

// An agent restart re-adopts every container of a pod instance, not only
// the first: the restarted agent still watches the second one (its death
// ends the instance, naming it, and stops the first) and stops both when
// the instance is killed.
func TestPodReadoptedWholeAfterAgentRestart(t *testing.T) {
	for _, end := range []string{"second container dies", "instance killed"} {
		t.Run(end, func(t *testing.T) {
			m := newFakeMaster(t)
			dir := t.TempDir()
			cfg := podAgentConfig(t, m, dir)
			cfg.StopTasksOnExit = false
			_, stop1 := startAgent(t, cfg)
			asg := api.Assignment{Task: api.Task{ID: "pod.1", AppID: "/pod"}, Goal: api.GoalRun,
				Spec: api.TaskSpec{Pod: &api.PodTaskSpec{Containers: []api.PodTaskContainer{
					{Name: "ct1", Shell: `echo $$ > pid; exec sleep 1000`},
					{Name: "ct2", Shell: `echo $$ > pid; exec sleep 1000`},
				}}}}
			m.set(asg)
			sandbox := filepath.Join(dir, "sandboxes", "pod.1")
			pid1 := readPid(t, filepath.Join(sandbox, "pid"))
			pid2 := readPid(t, filepath.Join(sandbox, "containers", "ct2", "pid"))
			t.Cleanup(func() { killGroup(pid1, syscall.SIGKILL); killGroup(pid2, syscall.SIGKILL) })
			waitState(t, m, "pod.1", api.TaskRunning)
			stop1()
			if groupGone(pid1) || groupGone(pid2) {
				t.Fatal("the instance stopped with the agent although StopTasksOnExit is false")
			}

			cfg = podAgentConfig(t, m, dir) // new executors on the same state, as after a restart
			a2, _ := startAgent(t, cfg)
			eventually(t, 10*time.Second, "instance re-adopted", func() bool {
				ts := a2.Tasks()
				return len(ts) == 1 && ts[0].ID == "pod.1" && ts[0].Pid == pid1
			})
			if st, ok := m.last("pod.1", api.TaskLost); ok {
				t.Fatalf("a re-adopted instance was reported lost: %+v", st)
			}
			if end == "instance killed" {
				m.setGoal("pod.1", api.GoalKill)
				waitState(t, m, "pod.1", api.TaskKilled)
			} else {
				killGroup(pid2, syscall.SIGKILL)
				st := waitState(t, m, "pod.1", api.TaskFailed)
				if !strings.Contains(st.Message, "container ct2") {
					t.Errorf("the instance ended with %q; want it to name container ct2", st.Message)
				}
			}
			eventually(t, 10*time.Second, "both containers' processes gone", func() bool {
				return groupGone(pid1) && groupGone(pid2)
			})
		})
	}
}
