package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
