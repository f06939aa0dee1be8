package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

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
