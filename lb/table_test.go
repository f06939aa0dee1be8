package lb

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func intp(i int) *int    { return &i }
func boolp(b bool) *bool { return &b }

// hostApp is a host-networked app with the given service ports.
func hostApp(id, version string, labels map[string]string, ports ...int) api.App {
	a := api.App{ID: id, Version: version, Labels: labels, Instances: 1}
	for _, p := range ports {
		a.PortDefinitions = append(a.PortDefinitions, api.PortDefinition{Port: p})
	}
	return a
}

func runningTask(id, app, node string, ports ...int) api.Task {
	return api.Task{ID: id, AppID: app, Host: node, SlaveID: "agent-" + node, State: api.TaskRunning, Ports: ports}
}

func nodes() []api.Node {
	return []api.Node{
		{ID: "agent-n1", Name: "n1", Site: "paris", Address: "192.168.1.1", OverlayIP: "10.47.1.1"},
		{ID: "agent-n2", Name: "n2", Site: "paris", Address: "192.168.1.2:7946"},
		{ID: "agent-n3", Name: "n3", Site: "tokyo", Address: "192.168.2.3", OverlayIP: "10.47.2.3"},
	}
}

func alive(t api.Task, ok bool) api.Task {
	t.HealthCheckResults = []api.HealthCheckResult{{Alive: ok, TaskID: t.ID}}
	return t
}

func TestBuildTableGolden(t *testing.T) {
	all := TableConfig{Groups: []string{"*"}, Site: "paris"}
	ext := TableConfig{Groups: []string{"external"}, Site: "paris"}
	cases := []struct {
		name string
		cfg  TableConfig
		st   api.State
	}{
		{"groups", ext, api.State{Index: 7, Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/web", "2026-01-01T00:00:00.000Z", map[string]string{"HAPROXY_GROUP": "external"}, 10001)),
			ptr(hostApp("/internal", "2026-01-01T00:00:00.000Z", map[string]string{"HAPROXY_GROUP": "internal"}, 10002)),
			ptr(hostApp("/nogroup", "2026-01-01T00:00:00.000Z", nil, 10003)),
			ptr(hostApp("/mixed", "2026-01-01T00:00:00.000Z", map[string]string{"HAPROXY_GROUP": "internal", "HAPROXY_1_GROUP": "internal,external"}, 10004, 10005)),
		}, Tasks: []*api.Task{
			ptr(runningTask("web.1", "/web", "n1", 31001)),
			ptr(runningTask("internal.1", "/internal", "n1", 31002)),
			ptr(runningTask("mixed.1", "/mixed", "n2", 31004, 31005)),
		}}},
		{"wildcard-group", TableConfig{Groups: []string{"*"}}, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/a/b/c", "v1", nil, 10010)),
			ptr(hostApp("/x", "v1", map[string]string{"HAPROXY_GROUP": "whatever"}, 10011)),
		}, Tasks: []*api.Task{ptr(runningTask("c.1", "/a/b/c", "n3", 31010)), ptr(runningTask("x.1", "/x", "n1", 31011))}}},
		{"vhosts-and-paths", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/site", "v1", map[string]string{"HAPROXY_0_VHOST": "Biserver.Example.com, www.example.com"}, 10020)),
			ptr(hostApp("/api", "v1", map[string]string{"HAPROXY_0_VHOST": "biserver.example.com", "HAPROXY_0_PATH": "/api /v2"}, 10021)),
			ptr(hostApp("/api-admin", "v1", map[string]string{"HAPROXY_0_VHOST": "biserver.example.com", "HAPROXY_0_PATH": "/api/admin", "HAPROXY_0_BACKEND_WEIGHT": "5"}, 10022)),
			ptr(hostApp("/pathonly", "v1", map[string]string{"HAPROXY_0_PATH": "/p"}, 10023)),
		}, Tasks: []*api.Task{
			ptr(runningTask("site.1", "/site", "n1", 31020)), ptr(runningTask("site.2", "/site", "n2", 31020)),
			ptr(runningTask("api.1", "/api", "n1", 31021)), ptr(runningTask("admin.1", "/api-admin", "n2", 31022)),
			ptr(runningTask("p.1", "/pathonly", "n2", 31023)),
		}}},
		{"modes-forced-by-health-checks", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(func() api.App {
				a := hostApp("/checked", "v1", nil, 10030, 10031, 10032)
				a.HealthChecks = []api.HealthCheck{{Protocol: "MESOS_HTTP", PortIndex: intp(1), Path: "/health"}, {Protocol: "TCP", PortIndex: intp(2)}}
				return a
			}()),
			ptr(func() api.App {
				a := hostApp("/forcedtcp", "v1", map[string]string{"HAPROXY_0_MODE": "tcp"}, 10033)
				a.HealthChecks = []api.HealthCheck{{Protocol: "HTTP", Path: "/"}}
				return a
			}()),
			ptr(hostApp("/explicit", "v1", map[string]string{"HAPROXY_0_MODE": "HTTP", "HAPROXY_0_BALANCE": "leastconn", "HAPROXY_1_BALANCE": "source"}, 10034, 10035)),
			ptr(hostApp("/vhost-tcp", "v1", map[string]string{"HAPROXY_0_VHOST": "t.example.com", "HAPROXY_0_MODE": "tcp"}, 10036)),
		}, Tasks: []*api.Task{
			ptr(alive(runningTask("checked.1", "/checked", "n1", 31030, 31031, 31032), true)),
			ptr(alive(runningTask("forcedtcp.1", "/forcedtcp", "n1", 31033), true)),
			ptr(runningTask("explicit.1", "/explicit", "n2", 31034, 31035)),
		}}},
		{"bad-labels", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/badport", "v1", map[string]string{"HAPROXY_0_PORT": "http", "HAPROXY_1_VHOST": "ok.example.com"}, 10040, 10041)),
			ptr(hostApp("/badmode", "v1", map[string]string{"HAPROXY_0_MODE": "udp", "HAPROXY_1_BALANCE": "random"}, 10042, 10043)),
			ptr(hostApp("/badvhost", "v1", map[string]string{"HAPROXY_0_VHOST": "bad host!.com"}, 10044)),
			ptr(hostApp("/badacl", "v1", map[string]string{"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 nonsense"}, 10045)),
			ptr(hostApp("/badauth", "v1", map[string]string{"HAPROXY_0_AUTH": "onlyrealm"}, 10046)),
			ptr(hostApp("/badpath", "v1", map[string]string{"HAPROXY_0_VHOST": "p.example.com", "HAPROXY_0_PATH": "nope"}, 10047)),
			ptr(hostApp("/templates", "v1", map[string]string{"HAPROXY_0_FRONTEND_HEAD": "x", "HAPROXY_0_BACKEND_SERVER_OPTIONS": "y", "HAPROXY_1_HTTP_FRONTEND_ACL_WITH_PATH": "z", "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": "/r"}, 10048, 10049)),
			ptr(hostApp("/unallocated", "v1", nil, 0)),
		}, Tasks: []*api.Task{
			ptr(runningTask("badport.1", "/badport", "n1", 31040, 31041)),
			ptr(runningTask("badmode.1", "/badmode", "n1", 31042, 31043)),
			ptr(runningTask("templates.1", "/templates", "n1", 31048, 31049)),
		}}},
		{"port-conflicts", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/newer", "2026-11-02T00:00:00.000Z", nil, 10050)),
			ptr(hostApp("/older", "2026-11-01T00:00:00.000Z", nil, 10050)),
			ptr(hostApp("/override", "2026-10-01T00:00:00.000Z", map[string]string{"HAPROXY_0_PORT": "10051"}, 10052)),
			ptr(hostApp("/claims-override", "2026-11-03T00:00:00.000Z", nil, 10051)),
		}, Tasks: []*api.Task{
			ptr(runningTask("newer.1", "/newer", "n1", 31050)), ptr(runningTask("older.1", "/older", "n2", 31051)),
			ptr(runningTask("override.1", "/override", "n2", 31052)),
		}}},
		{"container-vs-host-networking", all, api.State{Nodes: nodes(), Apps: []*api.App{
			{ID: "/bridge", Version: "v1", Container: &api.Container{Type: "DOCKER",
				PortMappings: []api.PortMapping{{ContainerPort: 80, HostPort: intp(0), ServicePort: 10060}}},
				Networks: []api.Network{{Mode: "container/bridge"}}},
			{ID: "/overlay", Version: "v1", Container: &api.Container{Type: "DOCKER",
				PortMappings: []api.PortMapping{{ContainerPort: 8080, ServicePort: 10061}, {ContainerPort: 9090, ServicePort: 10062}}},
				Networks: []api.Network{{Mode: "container", Name: "weft"}}},
			{ID: "/legacy-user", Version: "v1", Container: &api.Container{Type: "DOCKER",
				Docker: &api.Docker{Network: "USER", PortMappings: []api.PortMapping{{ContainerPort: 5000, ServicePort: 10063}}}}},
			{ID: "/ippertask", Version: "v1", PortDefinitions: []api.PortDefinition{{Port: 10064}},
				IPAddress: &api.IPAddressSpec{NetworkName: "weft"}},
			ptr(hostApp("/host", "v1", nil, 10065)),
		}, Tasks: []*api.Task{
			ptr(runningTask("bridge.1", "/bridge", "n1", 31060)),
			ptr(func() api.Task {
				t := runningTask("overlay.1", "/overlay", "n1")
				t.IPAddresses = []api.IPAddress{{IPAddress: "10.47.1.17", Protocol: "IPv4"}}
				return t
			}()),
			ptr(runningTask("overlay.noip", "/overlay", "n2")),
			ptr(func() api.Task {
				t := runningTask("legacy.1", "/legacy-user", "n2")
				t.IPAddresses = []api.IPAddress{{IPAddress: "10.47.2.9", Protocol: "IPv4"}}
				return t
			}()),
			ptr(func() api.Task {
				t := runningTask("ippt.1", "/ippertask", "n2")
				t.IPAddresses = []api.IPAddress{{IPAddress: "10.47.2.10", Protocol: "IPv4"}}
				return t
			}()),
			ptr(runningTask("host.1", "/host", "n2", 31065)),
			ptr(runningTask("host.unknown-node", "/host", "elsewhere.example", 31066)),
		}}},
		{"unhealthy-and-not-ready", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(func() api.App {
				a := hostApp("/hc", "v1", nil, 10070)
				a.HealthChecks = []api.HealthCheck{{Protocol: "TCP"}}
				return a
			}()),
			ptr(hostApp("/ready", "v1", nil, 10071)),
		}, Tasks: []*api.Task{
			ptr(alive(runningTask("hc.healthy", "/hc", "n1", 31070), true)),
			ptr(alive(runningTask("hc.unhealthy", "/hc", "n2", 31070), false)),
			ptr(runningTask("hc.noresults", "/hc", "n1", 31071)),
			ptr(func() api.Task {
				t := alive(runningTask("hc.staging", "/hc", "n1", 31072), true)
				t.State = api.TaskStaging
				return t
			}()),
			ptr(func() api.Task { t := runningTask("ready.yes", "/ready", "n1", 31073); t.Ready = boolp(true); return t }()),
			ptr(func() api.Task { t := runningTask("ready.no", "/ready", "n2", 31074); t.Ready = boolp(false); return t }()),
			ptr(func() api.Task {
				t := runningTask("ready.killed", "/ready", "n2", 31075)
				t.State = api.TaskKilled
				return t
			}()),
			ptr(func() api.Task {
				t := runningTask("ready.unreachable", "/ready", "n2", 31076)
				t.State = api.TaskUnreachable
				return t
			}()),
		}}},
		{"sites", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/both", "v1", nil, 10080)),
			ptr(hostApp("/remote-only", "v1", nil, 10081)),
		}, Tasks: []*api.Task{
			ptr(runningTask("both.tokyo", "/both", "n3", 31080)),
			ptr(runningTask("both.paris", "/both", "n1", 31080)),
			ptr(runningTask("remote.tokyo", "/remote-only", "n3", 31081)),
			ptr(func() api.Task {
				t := runningTask("remote.tasksite", "/remote-only", "n1", 31082)
				t.Site = "berlin"
				return t
			}()),
		}}},
		{"session-and-security", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/secure", "v1", map[string]string{
				"HAPROXY_0_VHOST": "secure.example.com", "HAPROXY_0_STICKY": "true", "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
				"HAPROXY_0_USE_HSTS": "true", "HAPROXY_0_AUTH": "My Realm:alice:$2y$05$abcdefghijklmnopqrstuu",
				"HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 192.168.1.7"}, 10090)),
			ptr(hostApp("/tcp-with-http-labels", "v1", map[string]string{"HAPROXY_0_STICKY": "true"}, 10091)),
		}, Tasks: []*api.Task{ptr(runningTask("secure.1", "/secure", "n1", 31090)), ptr(runningTask("secure.2", "/secure", "n2", 31090))}}},
		{"appid-frontend", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/multi", "v1", map[string]string{"HAPROXY_1_MODE": "http", "HAPROXY_2_MODE": "http"}, 10100, 10101, 10102)),
			ptr(hostApp("/tcponly", "v1", nil, 10103)),
		}, Tasks: []*api.Task{ptr(runningTask("multi.1", "/multi", "n1", 31100, 31101, 31102))}}},
		{"per-port-labels", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/bound", "v1", map[string]string{"HAPROXY_0_BIND_ADDR": "10.47.1.1", "HAPROXY_1_BIND_ADDR": "*", "HAPROXY_2_BIND_ADDR": "[::1]"}, 10120, 10121, 10122)),
			ptr(hostApp("/tls", "v1", map[string]string{"HAPROXY_0_VHOST": "tls.example.com", "HAPROXY_0_SSL_CERT": "/etc/ssl/tls.pem", "HAPROXY_1_SSL_CERT": "/etc/ssl/tcp.pem"}, 10123, 10124)),
			ptr(hostApp("/rewritten", "v1", map[string]string{"HAPROXY_0_VHOST": "r.example.com", "HAPROXY_0_PATH": "/api",
				"HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/api", "HAPROXY_0_HTTP_BACKEND_REDIR": "/app/"}, 10125)),
			ptr(hostApp("/tcp-rewrite", "v1", map[string]string{"HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": "/x"}, 10126)),
			ptr(hostApp("/redir-no-vhost", "v1", map[string]string{"HAPROXY_0_MODE": "http", "HAPROXY_0_HTTP_BACKEND_REDIR": "/x"}, 10127)),
			ptr(hostApp("/bad-per-port", "v1", map[string]string{"HAPROXY_0_BIND_ADDR": "eth0", "HAPROXY_1_SSL_CERT": " ",
				"HAPROXY_2_VHOST": "b.example.com", "HAPROXY_2_HTTP_BACKEND_PROXYPASS_PATH": "api", "HAPROXY_3_VHOST": "c.example.com",
				"HAPROXY_3_HTTP_BACKEND_REDIR": "a b"}, 10128, 10129, 10130, 10131)),
		}, Tasks: []*api.Task{
			ptr(runningTask("bound.1", "/bound", "n1", 31120, 31121, 31122)), ptr(runningTask("tls.1", "/tls", "n1", 31123, 31124)),
			ptr(runningTask("rw.1", "/rewritten", "n2", 31125)), ptr(runningTask("bad.1", "/bad-per-port", "n2", 31128, 31129, 31130, 31131)),
		}}},
		{"blue-green-deploy", all, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(func() api.App {
				a := hostApp("/web-blue", "2026-11-01T10:00:00.000Z", map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "web",
					"HAPROXY_DEPLOYMENT_COLOUR": "blue", "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-11-01T10:00:00.000000",
					"HAPROXY_DEPLOYMENT_ALT_PORT": "10141", "HAPROXY_0_PORT": "10140", "HAPROXY_0_VHOST": "web.example.com",
					"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3"}, 10140)
				a.Instances = 3
				a.HealthChecks = []api.HealthCheck{{Protocol: "MESOS_HTTP", Path: "/"}}
				return a
			}()),
			ptr(func() api.App {
				a := hostApp("/web-green", "2026-11-02T10:00:00.000Z", map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "web",
					"HAPROXY_DEPLOYMENT_COLOUR": "green", "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-11-02T10:00:00.123456",
					"HAPROXY_DEPLOYMENT_ALT_PORT": "10141", "HAPROXY_0_PORT": "10140", "HAPROXY_0_VHOST": "green-only.example.com",
					"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3", "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "1"}, 10141)
				a.Instances = 2
				a.HealthChecks = []api.HealthCheck{{Protocol: "MESOS_HTTP", Path: "/"}}
				return a
			}()),
			ptr(hostApp("/solo-blue", "v1", map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "/apps/solo", "HAPROXY_0_MODE": "http"}, 10142)),
			ptr(hostApp("/odd-a", "v1", map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "odd", "HAPROXY_DEPLOYMENT_STARTED_AT": "yesterday"}, 10143)),
			ptr(hostApp("/odd-b", "v2", map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "odd", "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-01-01T00:00:00Z",
				"HAPROXY_DEPLOYMENT_NEW_INSTANCES": "1", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "many"}, 10144)),
		}, Tasks: []*api.Task{
			ptr(alive(runningTask("web-blue.3", "/web-blue", "n1", 31003), true)),
			ptr(alive(runningTask("web-blue.1", "/web-blue", "n1", 31001), true)),
			ptr(alive(runningTask("web-blue.2", "/web-blue", "n2", 31002), true)),
			ptr(alive(runningTask("web-green.1", "/web-green", "n2", 32001), true)),
			ptr(alive(runningTask("web-green.2", "/web-green", "n1", 32002), false)),
			ptr(runningTask("solo.1", "/solo-blue", "n1", 31142)),
			ptr(runningTask("odd-a.1", "/odd-a", "n1", 31143)), ptr(runningTask("odd-b.1", "/odd-b", "n2", 31144)),
		}}},
		{"strict-mode", TableConfig{Groups: []string{"*"}, StrictMode: true}, api.State{Nodes: nodes(), Apps: []*api.App{
			ptr(hostApp("/on", "v1", map[string]string{"HAPROXY_0_ENABLED": "true"}, 10110, 10111)),
		}, Tasks: []*api.Task{ptr(runningTask("on.1", "/on", "n1", 31110, 31111))}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := c.st
			table, problems := BuildTable(&st, c.cfg)
			if len(problems) != len(table.Problems) {
				t.Fatalf("returned %d problems, table holds %d", len(problems), len(table.Problems))
			}
			var buf bytes.Buffer
			table.WriteConfig(&buf)
			path := filepath.Join("testdata", "table", c.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run go test ./lb -run Golden -update to create it): %v", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("table differs from %s (rerun with -update after checking):\n%s", path, lineDiff(string(want), got))
			}
			// Pure: building again gives the same text.
			again, _ := BuildTable(&st, c.cfg)
			var buf2 bytes.Buffer
			again.WriteConfig(&buf2)
			if buf2.String() != buf.String() {
				t.Errorf("BuildTable is not deterministic")
			}
		})
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("- " + wl + "\n+ " + gl + "\n")
		}
	}
	return b.String()
}

func TestTemplateLabelsWarnOncePerApp(t *testing.T) {
	st := api.State{Apps: []*api.App{ptr(hostApp("/t", "v1", map[string]string{
		"HAPROXY_0_FRONTEND_HEAD": "a", "HAPROXY_0_BACKEND_HEAD": "b", "HAPROXY_1_HTTPS_FRONTEND_ACL": "c",
		"HAPROXY_0_VHOST": "t.example.com"}, 10000, 10001))}}
	table, problems := BuildTable(&st, TableConfig{Groups: []string{"*"}})
	if len(problems) != 1 {
		t.Fatalf("want one warning for the app, got %v", problems)
	}
	if !strings.Contains(problems[0].Message, "HAPROXY_0_BACKEND_HEAD") || problems[0].AppID != "/t" {
		t.Errorf("warning does not name the labels and the app: %s", problems[0])
	}
	if len(table.Services) != 2 || table.VHosts["t.example.com"] == nil {
		t.Errorf("the honoured labels must still apply: %+v", table.Services)
	}
}

// TestServerIDMatchesMarathonLB: sticky cookies issued by marathon-lb stay
// valid after moving to weft (values computed with marathon-lb's Python).
func TestServerIDMatchesMarathonLB(t *testing.T) {
	for _, c := range []struct {
		host, ip string
		port     int
		want     string
	}{
		{"agent-1.example.com", "10.0.0.5", 31005, "46f014cc96"},
		{"10.0.0.5", "10.0.0.5", 31005, "041d351362"},
	} {
		if got := serverID(serverName(c.host, c.ip, c.port)); got != c.want {
			t.Errorf("serverID(%s, %s, %d) = %s, want %s", c.host, c.ip, c.port, got, c.want)
		}
	}
}
