package lb

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// parseStats reads HAProxy's CSV statistics the way marathon-lb's zdd.py
// does: the heading without "# " and its trailing comma names the
// columns, and each row's last field (empty, after the trailing comma) is
// dropped. A row whose field count then differs from the heading's fails
// the test, as it makes zdd.py crash.
func parseStats(t *testing.T, csv string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(csv, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") || !strings.HasSuffix(lines[0], ",") {
		t.Fatalf("stats heading must start with %q and end with a comma:\n%s", "# ", csv)
	}
	cols := strings.Split(strings.TrimSuffix(strings.TrimPrefix(lines[0], "# "), ","), ",")
	var out []map[string]string
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if f[len(f)-1] != "" || len(f)-1 != len(cols) {
			t.Fatalf("stats row has %d fields and no trailing comma, want %d and one:\n%s", len(f)-1, len(cols), l)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = f[i]
		}
		out = append(out, row)
	}
	return out
}

// statsRow is the row of proxy px and server sv, or nil.
func statsRow(t *testing.T, csv, px, sv string) map[string]string {
	t.Helper()
	for _, r := range parseStats(t, csv) {
		if r["pxname"] == px && r["svname"] == sv {
			return r
		}
	}
	return nil
}

// The CSV has HAProxy's columns in HAProxy's order, the ones zdd.py and
// HAProxy exporters read where HAProxy has them.
func TestStatsColumnsAreHAProxys(t *testing.T) {
	want := "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck"
	if got := strings.Join(statColumns[:21], ","); got != want {
		t.Fatalf("first columns %s, want %s", got, want)
	}
	idx := map[string]int{}
	for i, c := range statColumns {
		idx[c] = i
	}
	for c, i := range map[string]int{"pid": 26, "iid": 27, "sid": 28, "lbtot": 30, "type": 32, "req_tot": 48, "ttime": 61, "addr": 73, "mode": 75} {
		if idx[c] != i {
			t.Errorf("column %s at %d, want %d (HAProxy's position)", c, idx[c], i)
		}
	}
	r := statRow{pxname: "web_10000", svname: "10_0_6_25_31184", status: "MAINT", kind: 2, addr: "10.0.6.25:31184", mode: "http", active: 2}
	line := r.csvLine(4, 1)
	if !strings.HasPrefix(line, "web_10000,10_0_6_25_31184,0,0,2,") || !strings.HasSuffix(line, ",\n") {
		t.Fatalf("server row %q", line)
	}
	if n := strings.Count(line, ","); n != len(statColumns) {
		t.Fatalf("server row has %d commas, want %d", n, len(statColumns))
	}
	if got := serverName("10.0.6.25", "10.0.6.25", 31184); got != "10_0_6_25_31184" {
		t.Errorf("server name %s", got)
	}
	if got := serverName("agent-1.example.com", "10.47.1.2", 31000); got != "agent-1_example_com_10_47_1_2_31000" {
		t.Errorf("server name with a host name %s", got)
	}
}

// A plain zdd deploy (no HAPROXY_DEPLOYMENT_NEW_INSTANCES) keeps the new
// colour's TARGET_INSTANCES serving, as marathon-lb does: with 2 old and 2
// healthy new tasks and a target of 3, one old task drains, not two.
func TestZDDTargetInstancesKeptServing(t *testing.T) {
	blue := &api.App{ID: "/web-blue", Instances: 2, Labels: map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "web",
		"HAPROXY_DEPLOYMENT_STARTED_AT": "2026-11-01T10:00:00"}}
	green := &api.App{ID: "/web-green", Instances: 2, Labels: map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "web",
		"HAPROXY_DEPLOYMENT_STARTED_AT": "2026-11-02T10:00:00", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3"}}
	tasks := map[string][]*api.Task{
		"/web-blue":  {{ID: "web-blue.1"}, {ID: "web-blue.2"}},
		"/web-green": {{ID: "web-green.1"}, {ID: "web-green.2"}},
	}
	_, _, draining, problems := mergeDeploymentGroups([]*api.App{blue, green}, tasks)
	if len(problems) != 0 || len(draining) != 1 || !draining["web-blue.1"] {
		t.Fatalf("draining %v (problems %v), want web-blue.1 alone", draining, problems)
	}
}

// marathon-lb's per-port map templates (HAPROXY_{n}_MAP_*) are ignored
// with the same warning as the other template labels, not silently.
func TestMapTemplateLabelsWarn(t *testing.T) {
	st := &api.State{Apps: []*api.App{{ID: "/web", Instances: 1, PortDefinitions: []api.PortDefinition{{Port: 10050}},
		Labels: map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example.com",
			"HAPROXY_0_MAP_HTTP_FRONTEND_ACL": "x", "HAPROXY_0_MAP_HTTP_FRONTEND_ACL_ONLY": "x",
			"HAPROXY_0_MAP_HTTP_FRONTEND_ACL_WITH_PATH": "x", "HAPROXY_0_MAP_HTTPS_FRONTEND_ACL": "x"}}}}
	_, problems := BuildTable(st, TableConfig{Groups: []string{"external"}})
	var msg string
	for _, p := range problems {
		if p.AppID == "/web" && strings.Contains(p.Message, "ignored") {
			msg = p.Message
		}
	}
	for _, l := range []string{"HAPROXY_0_MAP_HTTP_FRONTEND_ACL", "HAPROXY_0_MAP_HTTP_FRONTEND_ACL_ONLY",
		"HAPROXY_0_MAP_HTTP_FRONTEND_ACL_WITH_PATH", "HAPROXY_0_MAP_HTTPS_FRONTEND_ACL"} {
		if !strings.Contains(msg, l+",") && !strings.HasSuffix(msg, l) {
			t.Errorf("no warning for %s: %q", l, msg)
		}
	}
}
