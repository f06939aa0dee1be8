package marathon

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestCanonicalID(t *testing.T) {
	cases := []struct {
		raw, base, want string
		problem         string
	}{
		{"/ssk2/whereisbot", "/", "/ssk2/whereisbot", ""},
		{"whereisbot", "/ssk2", "/ssk2/whereisbot", ""},
		{"../other", "/ssk2/sub", "/ssk2/other", ""},
		{"/a/./b", "/", "/a/b", ""},
		{"/a//b/", "/", "/a/b", ""},
		{"/my.app-1", "/", "/my.app-1", ""},
		{"/Bad_ID", "/", "/Bad_ID", msgIDPattern},
		{"/a/-b", "/", "/a/-b", msgIDPattern},
		{"/a/b-", "/", "/a/b-", msgIDPattern},
		{"/a/..", "/", "/", msgIDReserved},
		{"/x/restart", "/", "/x/restart", msgIDReserved},
		{"/x/tasks", "/", "/x/tasks", msgIDReserved},
		{"/", "/", "/", msgIDEmpty},
		{"..", "/", "/", msgIDReserved},
	}
	for _, c := range cases {
		got, probs := canonicalID(c.raw, c.base)
		if got != c.want {
			t.Errorf("canonicalID(%q, %q) = %q, want %q", c.raw, c.base, got, c.want)
		}
		p := ""
		if len(probs) > 0 {
			p = probs[0]
		}
		if p != c.problem {
			t.Errorf("canonicalID(%q) problem %q, want %q", c.raw, p, c.problem)
		}
	}
	if got := taskIDPrefix("/ssk2/whereisbot"); got != "ssk2_whereisbot" {
		t.Errorf("task id prefix %q", got)
	}
}

func TestConstraints(t *testing.T) {
	h := func(host, site string, attrs ...string) facts {
		m := map[string]string{}
		for i := 0; i+1 < len(attrs); i += 2 {
			m[attrs[i]] = attrs[i+1]
		}
		return facts{Host: host, Site: site, Attrs: m}
	}
	all := []facts{h("h1", "berlin", "rack", "r1"), h("h2", "berlin", "rack", "r2"), h("h3", "paris"), h("h4", "tokyo", "rack", "r1")}
	cases := []struct {
		name   string
		c      []string
		cand   facts
		placed []facts
		want   bool
	}{
		{"unique free host", []string{"hostname", "UNIQUE"}, all[0], []facts{all[1]}, true},
		{"unique taken host", []string{"hostname", "UNIQUE"}, all[0], []facts{all[0]}, false},
		{"unique site", []string{"@region", "UNIQUE"}, all[1], []facts{all[0]}, false},
		{"cluster value", []string{"rack", "CLUSTER", "r1"}, all[0], nil, true},
		{"cluster other value", []string{"rack", "CLUSTER", "r1"}, all[1], nil, false},
		{"cluster first placement", []string{"site", "CLUSTER"}, all[2], []facts{all[0]}, false},
		{"is", []string{"site", "IS", "paris"}, all[2], nil, true},
		{"is not", []string{"site", "IS", "paris"}, all[0], nil, false},
		{"like", []string{"hostname", "LIKE", "h[12]"}, all[1], nil, true},
		{"like is a full match", []string{"hostname", "LIKE", "h"}, all[1], nil, false},
		{"unlike", []string{"hostname", "UNLIKE", "h[12]"}, all[2], nil, true},
		{"unlike match", []string{"hostname", "UNLIKE", "h[12]"}, all[0], nil, false},
		{"max per under", []string{"rack", "MAX_PER", "2"}, all[0], []facts{all[3]}, true},
		{"max per reached", []string{"rack", "MAX_PER", "2"}, all[0], []facts{all[3], all[0]}, false},
		{"group by least loaded", []string{"site", "GROUP_BY"}, all[2], []facts{all[0]}, true},
		{"group by most loaded", []string{"site", "GROUP_BY"}, all[0], []facts{all[0]}, false},
		{"group by even", []string{"site", "GROUP_BY", "3"}, all[0], []facts{all[0], all[2], all[3]}, true},
		{"missing attribute: LIKE fails", []string{"rack", "LIKE", ".*"}, all[2], nil, false},
		{"missing attribute: UNIQUE fails", []string{"rack", "UNIQUE"}, all[2], nil, false},
		{"missing attribute: UNLIKE matches", []string{"rack", "UNLIKE", "r1"}, all[2], nil, true},
	}
	for _, c := range cases {
		if got := meetsConstraint(c.c, c.cand, c.placed, all); got != c.want {
			t.Errorf("%s: %v on %s = %v, want %v", c.name, c.c, c.cand.Host, got, c.want)
		}
	}
	// GROUP_BY site over the sites spreads evenly: place 6 one by one.
	var placed []facts
	count := map[string]int{}
	for i := 0; i < 6; i++ {
		for _, cand := range all {
			if meetsConstraint([]string{"site", "GROUP_BY"}, cand, placed, all) {
				placed = append(placed, cand)
				count[cand.Site]++
				break
			}
		}
	}
	if count["berlin"] != 2 || count["paris"] != 2 || count["tokyo"] != 2 {
		t.Errorf("GROUP_BY site spread %v", count)
	}
}

func TestConstraintValidation(t *testing.T) {
	cases := map[string]string{
		`hostname,UNIQUE`:        "",
		`hostname,UNIQUE,x`:      "Value specified but not used",
		`rack,CLUSTER`:           "Missing value",
		`rack,GROUP_BY,x`:        "Value was specified but is not a number",
		`rack,GROUP_BY,3`:        "",
		`rack,MAX_PER`:           "Value was not specified or is not a number",
		`rack,LIKE`:              "A regular expression value must be provided",
		`rack,LIKE,[`:            "'[' is not a valid regular expression",
		`rack,IS`:                "Missing value",
		`rack,NEAR,x`:            msgConstraintOp,
		`rack`:                   msgConstraintLen,
		`,UNIQUE`:                "Missing field and operator",
		`rack,UNLIKE,r[0-9]+`:    "",
		`rack,MAX_PER,2`:         "",
		`hostname,CLUSTER,node1`: "",
	}
	for in, want := range cases {
		if got := constraintProblem(strings.Split(in, ",")); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		accepted []string
		role     string
		want     bool
	}{
		{nil, "*", true},
		{nil, "slave_public", false},
		{[]string{"slave_public"}, "slave_public", true},
		{[]string{"slave_public"}, "*", false},
		{[]string{"*", "slave_public"}, "*", true},
		{nil, "", true},
	}
	for _, c := range cases {
		if got := roleAccepted(c.accepted, c.role); got != c.want {
			t.Errorf("roleAccepted(%v, %q) = %v", c.accepted, c.role, got)
		}
	}
}

func TestPickPorts(t *testing.T) {
	r := []api.PortRange{{Begin: 31000, End: 31002}, {Begin: 32000, End: 32000}}
	cases := []struct {
		req  []int
		busy []int
		want []int
		ok   bool
	}{
		{[]int{0}, nil, []int{31000}, true},
		{[]int{0, 0}, []int{31000}, []int{31001, 31002}, true},
		{[]int{0, 0, 0}, []int{31001}, []int{31000, 31002, 32000}, true},
		{[]int{0, 0, 0, 0, 0}, nil, nil, false},
		{[]int{32000, 0}, nil, []int{32000, 31000}, true},
		{[]int{8080}, nil, nil, false},
		{[]int{31001}, []int{31001}, nil, false},
		{nil, nil, []int{}, true},
	}
	for _, c := range cases {
		busy := map[int]bool{}
		for _, b := range c.busy {
			busy[b] = true
		}
		got, ok := pickPorts(c.req, r, busy)
		if ok != c.ok || (ok && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("pickPorts(%v, busy %v) = %v %v, want %v %v", c.req, c.busy, got, ok, c.want, c.ok)
		}
	}
}

func TestServicePorts(t *testing.T) {
	app := &api.App{ID: "/a", PortDefinitions: []api.PortDefinition{{Port: 0}, {Port: 0}, {Port: 15000}}}
	used := map[int]string{10000: "/b", 10002: "/c"}
	if d := assignServicePorts(app, used, nil, nil, 10000, 20000); d != nil {
		t.Fatal(d)
	}
	if got := servicePorts(app); !reflect.DeepEqual(got, []int{10001, 10003, 15000}) || !reflect.DeepEqual(app.Ports, got) {
		t.Fatalf("service ports %v ports %v", got, app.Ports)
	}
	// An update keeps its ports.
	upd := &api.App{ID: "/a", PortDefinitions: []api.PortDefinition{{Port: 0}}}
	assignServicePorts(upd, used, nil, []int{10003}, 10000, 20000)
	if upd.PortDefinitions[0].Port != 10003 {
		t.Fatalf("update must keep its service port: %v", upd.PortDefinitions)
	}
	conflict := &api.App{ID: "/d", PortDefinitions: []api.PortDefinition{{Port: 10002}}}
	d := assignServicePorts(conflict, used, nil, nil, 10000, 20000)
	if len(d) != 1 || d[0].Path != "/portDefinitions(0)/port" || !strings.Contains(d[0].Errors[0], "in use by app /c") {
		t.Fatalf("conflict: %+v", d)
	}
	full := &api.App{ID: "/e", PortDefinitions: []api.PortDefinition{{Port: 0}}}
	if d := assignServicePorts(full, map[int]string{10000: "/x"}, nil, nil, 10000, 10000); len(d) != 1 {
		t.Fatalf("exhausted range must be reported: %+v", d)
	}
	// Reserved ports (weft up's lb vhost frontend) are skipped by the
	// allocator, refused when asked for, and moved off on update.
	reserved := map[int]string{10001: "weft's lb HTTP frontend"}
	skip := &api.App{ID: "/f", PortDefinitions: []api.PortDefinition{{Port: 0}, {Port: 0}}}
	if d := assignServicePorts(skip, map[int]string{10000: "/x"}, reserved, nil, 10000, 20000); d != nil {
		t.Fatal(d)
	}
	if got := servicePorts(skip); !reflect.DeepEqual(got, []int{10002, 10003}) {
		t.Fatalf("reserved port allocated: %v", got)
	}
	ask := &api.App{ID: "/g", PortDefinitions: []api.PortDefinition{{Port: 10001}}}
	if d := assignServicePorts(ask, nil, reserved, nil, 10000, 20000); len(d) != 1 || !strings.Contains(d[0].Errors[0], "reserved: weft's lb HTTP frontend") {
		t.Fatalf("explicit reserved port must be refused: %+v", d)
	}
	moved := &api.App{ID: "/h", PortDefinitions: []api.PortDefinition{{Port: 0}}}
	if d := assignServicePorts(moved, nil, reserved, []int{10001}, 10000, 20000); d != nil || moved.PortDefinitions[0].Port != 10000 {
		t.Fatalf("an update must move off a reserved port: %v %+v", moved.PortDefinitions, d)
	}
}

func TestBackoff(t *testing.T) {
	app := &api.App{BackoffSeconds: 1, BackoffFactor: 1.15, MaxLaunchDelaySeconds: 300}
	var d time.Duration
	want := []time.Duration{time.Second, 1150 * time.Millisecond, 1322500 * time.Microsecond}
	for i, w := range want {
		d = nextBackoff(d, app)
		if d != w {
			t.Fatalf("step %d: %v, want %v", i, d, w)
		}
	}
	for i := 0; i < 100; i++ {
		d = nextBackoff(d, app)
	}
	if d != 300*time.Second {
		t.Fatalf("capped at maxLaunchDelaySeconds: %v", d)
	}
	for _, s := range []string{api.TaskFailed, api.TaskFinished, api.TaskError} {
		if !growsBackoff(s) {
			t.Errorf("%s must grow the backoff", s)
		}
	}
	for _, s := range []string{api.TaskKilled, api.TaskLost} {
		if growsBackoff(s) {
			t.Errorf("%s must not grow the backoff", s)
		}
	}
}

func TestSelectKills(t *testing.T) {
	mk := func(id, state, staged string) *sched.TaskRecord {
		return &sched.TaskRecord{Task: api.Task{ID: id, State: state, StagedAt: staged}}
	}
	ts := []*sched.TaskRecord{
		mk("old", api.TaskRunning, "2026-01-01T00:00:00.000Z"),
		mk("mid", api.TaskRunning, "2026-01-02T00:00:00.000Z"),
		mk("young", api.TaskRunning, "2026-01-03T00:00:00.000Z"),
		mk("staging", api.TaskStaging, "2026-01-01T12:00:00.000Z"),
	}
	ids := func(rs []*sched.TaskRecord) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.Task.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids(selectKills(ts, 2, "YOUNGEST_FIRST")); got != "staging,young" {
		t.Errorf("YOUNGEST_FIRST: %s", got)
	}
	if got := ids(selectKills(ts, 2, "OLDEST_FIRST")); got != "staging,old" {
		t.Errorf("OLDEST_FIRST: %s", got)
	}
	if got := selectKills(ts, 0, "YOUNGEST_FIRST"); got != nil {
		t.Errorf("n=0: %v", got)
	}
}

func TestUpgradeStep(t *testing.T) {
	us := func(min, max float64) api.UpgradeStrategy {
		return api.UpgradeStrategy{MinimumHealthCapacity: min, MaximumOverCapacity: max}
	}
	cases := []struct {
		name                                  string
		n, newA, oldA, newUp, oldUp, oldNotUp int
		s                                     api.UpgradeStrategy
		launch, kill                          int
	}{
		{"1/1 starts all new", 3, 0, 3, 0, 3, 0, us(1, 1), 3, 0},
		{"1/1 waits for new", 3, 3, 3, 2, 3, 0, us(1, 1), 0, 2},
		{"1/1 all new up kills all old", 3, 3, 3, 3, 3, 0, us(1, 1), 0, 3},
		{"0.5/0 kills half first", 4, 0, 4, 0, 4, 0, us(0.5, 0), 0, 2},
		{"0.5/0 then launches", 4, 0, 2, 0, 2, 0, us(0.5, 0), 2, 0},
		{"0.5/0 new up kills rest", 4, 2, 2, 2, 2, 0, us(0.5, 0), 0, 2},
		{"1/0 one at a time", 2, 0, 2, 0, 2, 0, us(1, 0), 0, 1},
		{"1/0 waits while the new one starts", 3, 1, 2, 0, 2, 0, us(1, 0), 0, 0},
		{"1/0 next one once the new is up", 3, 1, 2, 1, 2, 0, us(1, 0), 0, 1},
		{"0.5/0 waits while the new one starts", 3, 1, 2, 0, 2, 0, us(0.5, 0), 0, 0},
		{"0.5/0 kills an old one once the new is up", 3, 1, 2, 1, 2, 0, us(0.5, 0), 0, 1},
		{"not-up old go first", 2, 0, 2, 0, 1, 1, us(1, 1), 2, 1},
		{"0/0 kills all", 2, 0, 2, 0, 2, 0, us(0, 0), 0, 2},
	}
	for _, c := range cases {
		l, k := upgradeStep(c.n, c.newA, c.oldA, c.newUp, c.oldUp, c.oldNotUp, c.s)
		if l != c.launch || k != c.kill {
			t.Errorf("%s: launch %d kill %d, want %d %d", c.name, l, k, c.launch, c.kill)
		}
		// Never below minimum health when killing up old tasks.
		minH, _ := upgradeBounds(c.n, c.s)
		upKilled := k - c.oldNotUp
		if upKilled < 0 {
			upKilled = 0
		}
		if upKilled > 0 && c.newUp < c.n && c.newUp+c.oldUp-upKilled < minH && !(c.s.MinimumHealthCapacity == 1 && c.s.MaximumOverCapacity == 0) {
			t.Errorf("%s: drops below minimum health %d", c.name, minH)
		}
	}
}

func TestBuildPlan(t *testing.T) {
	db := &api.App{ID: "/db", Version: "v1"}
	web := &api.App{ID: "/web", Version: "v1", Dependencies: []string{"/db"}}
	lb := &api.App{ID: "/lb", Version: "v1", Dependencies: []string{"/web"}}
	old := &api.App{ID: "/old", Version: "v0"}
	d := buildPlan("d1", "v1", []change{{To: lb}, {To: web}, {To: db}, {From: old}})
	var got []string
	for _, s := range d.Steps {
		var acts []string
		for _, a := range s.Actions {
			acts = append(acts, a.Action+" "+a.App)
		}
		got = append(got, strings.Join(acts, "+"))
	}
	want := []string{"StartApplication /db", "StartApplication /web", "StartApplication /lb", "StopApplication /old"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %v, want %v", got, want)
	}
	if d.TotalSteps != 4 || d.CurrentStep != 1 || d.CurrentActions[0].App != "/db" {
		t.Fatalf("plan header %+v", d)
	}
	scaled := *db
	scaled.Instances = 3
	scaled.VersionInfo = &api.VersionInfo{LastConfigChangeAt: "v1"}
	db.VersionInfo = &api.VersionInfo{LastConfigChangeAt: "v1"}
	if a := (change{From: db, To: &scaled}).action(); a != ActionScale {
		t.Errorf("scale action %s", a)
	}
	changed := scaled
	changed.VersionInfo = &api.VersionInfo{LastConfigChangeAt: "v2"}
	if a := (change{From: db, To: &changed}).action(); a != ActionRestart {
		t.Errorf("config change action %s", a)
	}
}

func TestTaskEnvDocker(t *testing.T) {
	hp := 0
	app := &api.App{ID: "/web", Version: "v", Cpus: 1, Mem: 128, Labels: map[string]string{"HAPROXY_0_VHOST": "x.pcm", "big": strings.Repeat("x", 600)},
		Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "nginx:1"},
			PortMappings: []api.PortMapping{{ContainerPort: 80, HostPort: &hp, Name: "web"}, {ContainerPort: 9000}}}}
	env := taskEnv(app, "web.1", []int{31005})
	want := map[string]string{"PORT0": "31005", "PORT_WEB": "31005", "PORT_80": "31005", "PORTS": "31005",
		"MARATHON_APP_DOCKER_IMAGE": "nginx:1", "MARATHON_APP_LABELS": "HAPROXY_0_VHOST",
		"MARATHON_APP_LABEL_HAPROXY_0_VHOST": "x.pcm", "MARATHON_APP_RESOURCE_CPUS": "1.0", "MARATHON_APP_RESOURCE_DISK": "0.0"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["PORT_9000"]; ok {
		t.Error("a mapping without a host port has no PORT_ variable")
	}
	if _, ok := env["MARATHON_APP_LABEL_BIG"]; ok {
		t.Error("labels over 512 bytes are left out")
	}
}

// appConstraints, which keeps counts as tasks are placed, decides as
// meetsConstraint does when it recounts the placed agents for every
// candidate: random agents, constraints and placements.
func TestAppConstraintsMatchMeetsConstraint(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 1))
	sites := []string{"a", "b", "c", ""}
	racks := []string{"r1", "r2", ""}
	agent := func(i int) facts {
		f := facts{Host: fmt.Sprintf("h%d", rng.IntN(8)), Site: sites[rng.IntN(len(sites))], Attrs: map[string]string{}}
		if r := racks[rng.IntN(len(racks))]; r != "" {
			f.Attrs["rack"] = r
		}
		return f
	}
	constraints := [][]string{
		{"hostname", "UNIQUE"}, {"site", "GROUP_BY"}, {"site", "GROUP_BY", "5"}, {"rack", "GROUP_BY"},
		{"rack", "MAX_PER", "2"}, {"rack", "MAX_PER", "x"}, {"site", "CLUSTER"}, {"rack", "CLUSTER", "r1"},
		{"hostname", "LIKE", "h[0-3]"}, {"rack", "UNLIKE", "r2"}, {"site", "IS", "b"}, {"hostname", "NOPE"}, {"hostname"},
	}
	for round := 0; round < 300; round++ {
		cs := [][]string{constraints[rng.IntN(len(constraints))]}
		if rng.IntN(3) == 0 {
			cs = append(cs, constraints[rng.IntN(len(constraints))])
		}
		var placed, current, groups []facts
		for i := rng.IntN(6); i > 0; i-- {
			f := agent(i)
			placed = append(placed, f)
			if rng.IntN(2) == 0 {
				current = append(current, f)
			}
		}
		for i := rng.IntN(10); i > 0; i-- {
			groups = append(groups, agent(i))
		}
		acs := newAppConstraints(cs, placed, current, groups)
		for step := 0; step < 20; step++ {
			cand := agent(step)
			want := true
			for _, c := range cs {
				ok := false
				if len(c) >= 2 && c[1] == "GROUP_BY" {
					ok = meetsConstraint(c, cand, current, append(append([]facts(nil), groups...), current...))
				} else {
					ok = meetsConstraint(c, cand, placed, nil)
				}
				want = want && ok
			}
			if got := acs.meet(cand); got != want {
				t.Fatalf("round %d step %d: %v on %+v (placed %v, current %v, groups %v) = %v, want %v", round, step, cs, cand, placed, current, groups, got, want)
			}
			if want {
				acs.placed(cand)
				placed = append(placed, cand)
				current = append(current, cand)
			}
		}
	}
}
