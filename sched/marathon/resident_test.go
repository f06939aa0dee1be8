package marathon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestVolumesAtSubmit(t *testing.T) {
	e := newEnv(t)
	pv := func(cp, persistent string) string {
		return `{"cmd":"x","container":{"type":"MESOS","volumes":[{"containerPath":"` + cp + `","mode":"RW","persistent":` + persistent + `}]}`
	}
	ext := func(typ, external string) string {
		return `{"cmd":"x","container":{"type":"` + typ + `","docker":{"image":"busybox"},"volumes":[{"containerPath":"/data","mode":"RW","external":` + external + `}]}}`
	}
	for _, c := range []struct {
		name, body, wantPath string
	}{
		{"mount disk", pv("data", `{"type":"mount","size":10}`) + `}`, "/container/volumes(0)/persistent/type"},
		{"absolute containerPath", pv("/data", `{"size":10}`) + `}`, "/container/volumes(0)/containerPath"},
		{"nested containerPath", pv("var/data", `{"size":10}`) + `}`, "/container/volumes(0)/containerPath"},
		{"no size", pv("data", `{"type":"root"}`) + `}`, "/container/volumes(0)/persistent/size"},
		{"huge size", pv("data", `{"size":1e308}`) + `}`, "/container/volumes(0)/persistent/size"},
		{"path constraints", pv("data", `{"size":10,"constraints":[["path","LIKE","/mnt/ssd-.+"]]}`) + `}`, "/container/volumes(0)/persistent/constraints"},
		{"over capacity", pv("data", `{"size":10}`) + `,"upgradeStrategy":{"minimumHealthCapacity":0.5,"maximumOverCapacity":1}}`, "/upgradeStrategy/maximumOverCapacity"},
		{"full health capacity", pv("data", `{"size":10}`) + `,"upgradeStrategy":{"minimumHealthCapacity":1,"maximumOverCapacity":0}}`, "/upgradeStrategy/minimumHealthCapacity"},
		{"task lost behaviour", pv("data", `{"size":10}`) + `,"residency":{"taskLostBehavior":"FORGET"}}`, "/residency/taskLostBehavior"},
		{"residency alone", `{"cmd":"x","residency":{"taskLostBehavior":"WAIT_FOREVER"}}`, "/residency"},
		{"rexray", ext("DOCKER", `{"name":"v1","provider":"dvdi","options":{"dvdi/driver":"rexray"}}`), "/container/volumes(0)/external/options"},
		{"other provider", ext("DOCKER", `{"name":"v1","provider":"csi"}`), "/container/volumes(0)/external/provider"},
		{"external size", ext("DOCKER", `{"name":"v1","provider":"dvdi","size":100}`), "/container/volumes(0)/external/size"},
		{"external on MESOS", ext("MESOS", `{"name":"v1","provider":"dvdi"}`), "/container/volumes(0)/external"},
		{"external name", ext("DOCKER", `{"name":"../x","provider":"dvdi"}`), "/container/volumes(0)/external/name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("PUT", "/v2/apps/vol/refused", c.body)
			if r.Status != 422 || !strings.Contains(string(r.Body), `"path":"`+c.wantPath+`"`) {
				t.Fatalf("want 422 naming %s, got %d %s", c.wantPath, r.Status, r.Body)
			}
		})
	}

	// Accepted: Marathon's documented MySQL example (a persistent volume
	// and a host path naming it), and a Docker named volume.
	mysql := `{"id":"/mysql","cpus":1,"mem":512,"disk":0,"instances":1,"networks":[{"mode":"container/bridge"}],
		"container":{"type":"DOCKER","volumes":[{"containerPath":"mysqldata","mode":"RW","persistent":{"type":"root","size":1000}},
			{"containerPath":"/var/lib/mysql","hostPath":"mysqldata","mode":"RW"}],
			"docker":{"image":"mysql","forcePullImage":false},
			"portMappings":[{"containerPort":3306,"hostPort":0,"servicePort":10000,"protocol":"tcp"}]},
		"env":{"MYSQL_USER":"wordpress"},"upgradeStrategy":{"minimumHealthCapacity":0,"maximumOverCapacity":0}}`
	if r := e.do("POST", "/v2/apps", mysql); r.Status != 201 {
		t.Fatalf("mysql example: %d %s", r.Status, r.Body)
	}
	if r := e.do("PUT", "/v2/apps/named", ext("DOCKER", `{"name":"pgdata","provider":"dvdi","options":{"dvdi/driver":"local"}}`)); r.Status != 201 {
		t.Fatalf("local named volume: %d %s", r.Status, r.Body)
	}
	// A resident app without an upgrade strategy or residency gets
	// Marathon's defaults for resident apps.
	if r := e.do("PUT", "/v2/apps/db", pv("data", `{"size":10}`)+`}`); r.Status != 201 {
		t.Fatalf("resident app: %d %s", r.Status, r.Body)
	}
	var got struct {
		App struct {
			UpgradeStrategy api.UpgradeStrategy `json:"upgradeStrategy"`
			Residency       api.Residency       `json:"residency"`
		} `json:"app"`
	}
	e.do("GET", "/v2/apps/db", "").json(t, &got)
	if us := got.App.UpgradeStrategy; us.MinimumHealthCapacity != 0.5 || us.MaximumOverCapacity != 0 {
		t.Fatalf("upgradeStrategy %+v, want 0.5 and 0", us)
	}
	if r := got.App.Residency; r.TaskLostBehavior != "WAIT_FOREVER" || r.RelaunchEscalationTimeoutSeconds != 3600 {
		t.Fatalf("residency %+v, want WAIT_FOREVER and 3600", r)
	}
}

// TestResidentPlacement: a resident instance reserves its volume's disk on
// the agent it lands on, goes back there after its task ends, waits for
// that agent rather than land elsewhere, and keeps the reservation when
// scaled to 0 until wipe=true.
func TestResidentPlacement(t *testing.T) {
	e := newEnv(t)
	if r := e.do("PUT", "/v2/apps/db", `{"cmd":"x","cpus":0.1,"mem":16,"instances":1,
		"container":{"type":"MESOS","volumes":[{"containerPath":"data","mode":"RW","persistent":{"size":300}}]}}`); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	round := func(offers ...api.Offer) []sched.TaskRecord {
		t.Helper()
		res := e.f.ResourceOffers(context.Background(), offers)
		if len(res.Ops) > 0 {
			if _, err := e.m.st.Apply(context.Background(), res.Ops); err != nil {
				t.Fatal(err)
			}
		}
		return e.commit(res, offers)
	}
	small := offer("a1", "h1", 1, 1024)
	small.Resources.Disk = 200 // less than the volume
	if got := round(small); len(got) != 0 {
		t.Fatalf("a new reservation needs the volume's disk: launched %+v", got)
	}
	got := round(offer("a2", "h2", 1, 1024))
	if len(got) != 1 || got[0].Task.SlaveID != "a2" {
		t.Fatalf("want one launch on a2, got %+v", got)
	}
	first := got[0]
	if len(first.Spec.LocalVolumes) != 1 || first.Spec.LocalVolumes[0].Size != 300 ||
		!strings.HasPrefix(first.Spec.LocalVolumes[0].PersistenceID, "db#data#") ||
		len(first.Task.LocalVolumes) != 1 {
		t.Fatalf("launch carries no local volume: spec %+v task %+v", first.Spec.LocalVolumes, first.Task.LocalVolumes)
	}
	rs := reservationsOf(e.m.st, "/db")
	if len(rs) != 1 || rs[0].AgentID != "a2" || rs[0].TaskID != first.Task.ID || rs[0].Disk() != 300 {
		t.Fatalf("reservations %+v", rs)
	}

	// The task fails: the next one waits for a2 and gets the same volume.
	e.setState(first.Task.ID, api.TaskFailed)
	e.reconcile()
	e.f.resetDelay("/db")
	if got := round(offer("a1", "h1", 4, 4096)); len(got) != 0 {
		t.Fatalf("the resident instance left its volume's agent: %+v", got)
	}
	e.f.resetDelay("/db")
	got = round(offer("a1", "h1", 4, 4096), offer("a2", "h2", 1, 1024))
	if len(got) != 1 || got[0].Task.SlaveID != "a2" || got[0].Spec.LocalVolumes[0].PersistenceID != first.Spec.LocalVolumes[0].PersistenceID {
		t.Fatalf("want the relaunch on a2 with the same volume, got %+v", got)
	}
	if rs := reservationsOf(e.m.st, "/db"); len(rs) != 1 || rs[0].TaskID != got[0].Task.ID {
		t.Fatalf("reservations after the relaunch %+v", rs)
	}

	// Scale to 0: the task goes, the reservation stays and is listed.
	if r := e.do("PUT", "/v2/apps/db?force=true", `{"instances":0}`); r.Status != 200 {
		t.Fatalf("scale: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	for _, rec := range e.tasks("/db") {
		if rec.Goal == api.GoalKill && !api.Terminal(rec.Task.State) {
			e.setState(rec.Task.ID, api.TaskKilled)
		}
	}
	e.reconcile()
	var listed struct {
		Tasks []map[string]json.RawMessage `json:"tasks"`
	}
	e.do("GET", "/v2/apps/db/tasks", "").json(t, &listed)
	if len(listed.Tasks) != 1 || listed.Tasks[0]["state"] != nil || string(listed.Tasks[0]["slaveId"]) != `"a2"` || listed.Tasks[0]["localVolumes"] == nil {
		t.Fatalf("want one suspended task with its volume, got %s", e.do("GET", "/v2/apps/db/tasks", "").Body)
	}
	var id string
	_ = json.Unmarshal(listed.Tasks[0]["id"], &id)
	if r := e.do("DELETE", "/v2/apps/db/tasks/"+id, ""); r.Status != 409 {
		t.Fatalf("DELETE of a suspended task without wipe: want 409, got %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/v2/apps/db/tasks/"+id+"?wipe=true", ""); r.Status != 200 {
		t.Fatalf("wipe: %d %s", r.Status, r.Body)
	}
	if rs := reservationsOf(e.m.st, "/db"); len(rs) != 0 {
		t.Fatalf("reservations after wipe %+v", rs)
	}
}

// TestReservationReleasedWithTheApp: deleting a resident app releases its
// reservations.
func TestReservationReleasedWithTheApp(t *testing.T) {
	e := newEnv(t)
	if r := e.do("PUT", "/v2/apps/db", `{"cmd":"x","cpus":0.1,"mem":16,"instances":1,
		"container":{"type":"MESOS","volumes":[{"containerPath":"data","persistent":{"size":10}}]}}`); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	res := e.f.ResourceOffers(context.Background(), offers)
	if _, err := e.m.st.Apply(context.Background(), res.Ops); err != nil {
		t.Fatal(err)
	}
	e.commit(res, offers)
	if err := e.f.releaseReservations(context.Background(), e.m.st); err != nil {
		t.Fatal(err)
	}
	if rs := reservationsOf(e.m.st, "/db"); len(rs) != 1 {
		t.Fatalf("a live app's reservation released: %+v", rs)
	}
	if r := e.do("DELETE", "/v2/apps/db?force=true", ""); r.Status != 200 {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	if err := e.f.releaseReservations(context.Background(), e.m.st); err != nil {
		t.Fatal(err)
	}
	if rs := reservationsOf(e.m.st, "/db"); len(rs) != 0 {
		t.Fatalf("reservations of a deleted app: %+v", rs)
	}
}
