package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestPrepareLocalVolumes(t *testing.T) {
	dir, sb := t.TempDir(), t.TempDir()
	vols := []api.LocalVolumeSpec{{ContainerPath: "data", PersistenceID: "db#data#1", Size: 10}}
	got, err := prepareLocalVolumes(vols, filepath.Join(dir, "volumes"), sb, -1, -1, true)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "volumes", "db#data#1")
	if got["data"] != want {
		t.Fatalf("dirs %v, want data → %s", got, want)
	}
	if err := os.WriteFile(filepath.Join(sb, "data", "f"), []byte("kept"), 0o644); err != nil {
		t.Fatalf("writing through the sandbox link: %v", err)
	}
	// A second launch (a new sandbox) sees the same data.
	sb2 := t.TempDir()
	if _, err := prepareLocalVolumes(vols, filepath.Join(dir, "volumes"), sb2, -1, -1, true); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(sb2, "data", "f")); err != nil || string(b) != "kept" {
		t.Fatalf("relaunch sees %q, %v; want kept", b, err)
	}
	for _, bad := range []api.LocalVolumeSpec{
		{ContainerPath: "../x", PersistenceID: "p"},
		{ContainerPath: "data", PersistenceID: ".."},
		{ContainerPath: "", PersistenceID: "p"},
	} {
		if _, err := prepareLocalVolumes([]api.LocalVolumeSpec{bad}, filepath.Join(dir, "volumes"), sb, -1, -1, true); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestPlanDockerVolumes(t *testing.T) {
	cmd := "run"
	ext, _ := json.Marshal(api.ExternalVolume{Name: "pgdata", Provider: "dvdi", Options: map[string]string{"dvdi/driver": "local"}})
	l := Launch{
		Task: api.Task{ID: "db.1", AppID: "/db"},
		Spec: api.TaskSpec{
			Cmd: &cmd,
			Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "db:1"}, Volumes: []api.Volume{
				{ContainerPath: "mysqldata", Mode: "RW", Persistent: json.RawMessage(`{"size":10}`)},
				{ContainerPath: "/var/lib/mysql", HostPath: "mysqldata", Mode: "RW"},
				{ContainerPath: "/pg", Mode: "RO", External: ext},
			}},
			LocalVolumes: []api.LocalVolumeSpec{{ContainerPath: "mysqldata", PersistenceID: "db#mysqldata#1", Size: 10}},
		},
		Env: map[string]string{},
	}
	o := dockerPlanOptions{AgentID: "a1", LocalVolumes: map[string]string{"mysqldata": "/var/lib/weft/agent/volumes/db#mysqldata#1"}}
	p, err := planDocker(l, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/var/lib/weft/agent/volumes/db#mysqldata#1:/mnt/mesos/sandbox/mysqldata:rw",
		"/var/lib/weft/agent/volumes/db#mysqldata#1:/var/lib/mysql",
		"pgdata:/pg:ro",
	}
	if !reflect.DeepEqual(p.Host.Binds, want) {
		t.Fatalf("binds %v, want %v", p.Host.Binds, want)
	}
	if p.Config.WorkingDir != "/mnt/mesos/sandbox" || !contains(p.Config.Env, "MESOS_SANDBOX=/mnt/mesos/sandbox") {
		t.Fatalf("workdir %q env %v: want the container's sandbox", p.Config.WorkingDir, p.Config.Env)
	}
	// Without its reservation a persistent volume is refused, by field.
	l.Spec.LocalVolumes = nil
	if _, err := planDocker(l, dockerPlanOptions{}); err == nil || !strings.Contains(err.Error(), "container.volumes[0].persistent") {
		t.Fatalf("want a refusal naming container.volumes[0].persistent, got %v", err)
	}
	// Another driver is refused.
	l.Spec.Container.Volumes = []api.Volume{{ContainerPath: "/x", External: json.RawMessage(`{"name":"v","provider":"dvdi","options":{"dvdi/driver":"rexray"}}`)}}
	if _, err := planDocker(l, dockerPlanOptions{}); err == nil || !strings.Contains(err.Error(), "container.volumes[0].external.options") {
		t.Fatalf("want a refusal naming container.volumes[0].external.options, got %v", err)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestDockerPersistentAndNamedVolumes runs two containers in turn, as a
// resident task and its relaunch: each appends to a file in its persistent
// volume (relative to the container's sandbox, its working dir) and in a
// Docker named volume of the local driver, and the second sees the first's
// lines in both.
func TestDockerPersistentAndNamedVolumes(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	volumes := t.TempDir()
	named := "weft-test-" + dkRand()
	t.Cleanup(func() { _ = cli.VolumeRemove(context.Background(), named, true) })
	ext, _ := json.Marshal(api.ExternalVolume{Name: named, Provider: "dvdi", Options: map[string]string{"dvdi/driver": "local"}})
	run := func(line string) string {
		t.Helper()
		l := dkLaunch(t, img, "append", line, "data/runs", "/ext/runs")
		l.VolumesDir = volumes
		l.Spec.Container.Volumes = []api.Volume{
			{ContainerPath: "data", Mode: "RW", Persistent: json.RawMessage(`{"size":10}`)},
			{ContainerPath: "/ext", Mode: "RW", External: ext},
		}
		l.Spec.LocalVolumes = []api.LocalVolumeSpec{{ContainerPath: "data", PersistenceID: "test-app#data#1", Size: 10, Mode: "RW"}}
		h, err := e.Start(context.Background(), l)
		if err != nil {
			t.Fatal(err)
		}
		if ex := dkWaitExit(t, h, 30*time.Second); ex.Code != 0 {
			t.Fatalf("exit %+v: %s", ex, dkSandbox(t, l, "stderr"))
		}
		dkWaitSandbox(t, l, "stdout", "/ext/runs")
		return dkSandbox(t, l, "stdout")
	}
	run("one")
	out := run("two")
	for _, want := range []string{`data/runs: "one\ntwo\n"`, `/ext/runs: "one\ntwo\n"`} {
		if !strings.Contains(out, want) {
			t.Errorf("second run printed %q, want %s", out, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(volumes, "test-app#data#1", "runs")); err != nil || string(b) != "one\ntwo\n" {
		t.Errorf("the volume's file on the agent: %q, %v", b, err)
	}
}
