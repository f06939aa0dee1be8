package dns

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func ptr[T any](v T) *T { return &v }

// vals copies what each of ps points at.
func vals[T any](ps []*T) []T {
	out := make([]T, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

func node(id, name, role, site, addr, overlay string) api.Node {
	n := api.Node{ID: id, Name: name, Role: role, Site: site, Status: "alive", Address: addr, OverlayIP: overlay}
	if overlay != "" {
		ip := netip.MustParseAddr(overlay)
		n.OverlayBlock = netip.PrefixFrom(ip, 24).Masked().String()
	}
	if role != api.RoleAgent {
		n.API = addr + ":8080"
	}
	if role != api.RoleMaster {
		n.AgentAPI = addr + ":5051"
	}
	return n
}

func hostApp(id string, ports ...api.PortDefinition) api.App {
	return api.App{ID: id, Instances: 1, PortDefinitions: ports}
}

func task(id, appID, agent string, ports ...int) api.Task {
	return api.Task{ID: id, AppID: appID, SlaveID: agent, State: api.TaskRunning, Ports: ports, Framework: "marathon"}
}

const (
	agentA = "20261122-000000-0000000000-5050-1111-S1"
	agentB = "20261122-000000-0000000000-5050-1111-S2"
	agentC = "20261122-000000-0000000000-5050-1111-S3"
)

// baseNodes: one master+agent at site a, two agents at sites a and b, all
// on the overlay.
func baseNodes() []api.Node {
	return []api.Node{
		node(agentA, "m1", api.RoleBoth, "a", "192.168.1.10", "10.47.1.1"),
		node(agentB, "edge1", api.RoleAgent, "a", "192.168.1.11", "10.47.2.1"),
		node(agentC, "cloud1", api.RoleAgent, "b", "203.0.113.7", "10.47.3.1"),
	}
}

func goldenStates() map[string]*api.State {
	states := map[string]*api.State{}

	// 1. One app at the root, host networking, two tasks.
	states["01-host-app"] = &api.State{
		Index: 10, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(hostApp("/biserver", api.PortDefinition{Port: 10000, Protocol: "tcp"}))},
		Tasks: []*api.Task{
			ptr(task("biserver.a1", "/biserver", agentA, 31005)),
			ptr(task("biserver.b2", "/biserver", agentC, 31009)),
		},
	}

	// 2. An app in a group with a named tcp port and a udp port (the
	// reference's whereisbot example): legacy dotted names appear too.
	states["02-group-named-ports"] = &api.State{
		Index: 11, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(hostApp("/ssk2/whereisbot",
			api.PortDefinition{Port: 10001, Protocol: "tcp", Name: "http"},
			api.PortDefinition{Port: 10002, Protocol: "udp"}))},
		Tasks: []*api.Task{ptr(task("ssk2_whereisbot.c3", "/ssk2/whereisbot", agentC, 31001, 31002))},
	}

	// 3. Docker BRIDGE: the task reports a 172.17 address, which must never
	// be answered; the agent's overlay address is.
	bridge := api.App{ID: "/web", Instances: 1, Container: &api.Container{Type: "DOCKER",
		Docker:       &api.Docker{Image: "nginx", Network: "BRIDGE"},
		PortMappings: []api.PortMapping{{ContainerPort: 80, HostPort: ptr(0), Name: "http", Protocol: "tcp"}}}}
	bt := task("web.x1", "/web", agentB, 31500)
	bt.IPAddresses = []api.IPAddress{{IPAddress: "172.17.0.5", Protocol: "IPv4"}}
	states["03-bridge"] = &api.State{Index: 12, Leader: "192.168.1.10:8080", Nodes: baseNodes(), Apps: []*api.App{ptr(bridge)}, Tasks: []*api.Task{ptr(bt)}}

	// 4. A container on the overlay: its own address, container ports, PTR.
	ov := api.App{ID: "/db/pg", Instances: 1, Networks: []api.Network{{Mode: "container", Name: "weft"}},
		Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "postgres"},
			PortMappings: []api.PortMapping{{ContainerPort: 5432, Name: "pg", Protocol: "tcp"}}}}
	ot := task("db_pg.o1", "/db/pg", agentC)
	ot.IPAddresses = []api.IPAddress{{IPAddress: "10.47.3.2", Protocol: "IPv4"}}
	states["04-overlay-container"] = &api.State{Index: 13, Leader: "192.168.1.10:8080", Nodes: baseNodes(), Apps: []*api.App{ptr(ov)}, Tasks: []*api.Task{ptr(ot)}}

	// 5. Health checks: one of three tasks failing is left out of the
	// shared names (its canonical names stay); one with no results yet too.
	hc := hostApp("/api", api.PortDefinition{Port: 10010, Protocol: "tcp", Name: "http"})
	hc.HealthChecks = []api.HealthCheck{{Protocol: "HTTP", Path: "/health"}}
	h1 := task("api.h1", "/api", agentA, 31100)
	h1.HealthCheckResults = []api.HealthCheckResult{{Alive: true}}
	h2 := task("api.h2", "/api", agentB, 31101)
	h2.HealthCheckResults = []api.HealthCheckResult{{Alive: false, ConsecutiveFailures: 3}}
	h3 := task("api.h3", "/api", agentC, 31102)
	states["05-unhealthy"] = &api.State{Index: 14, Leader: "192.168.1.10:8080", Nodes: baseNodes(), Apps: []*api.App{ptr(hc)}, Tasks: []*api.Task{ptr(h1), ptr(h2), ptr(h3)}}

	// 6. Every task unhealthy: all are answered.
	u1 := task("api.u1", "/api", agentA, 31200)
	u1.HealthCheckResults = []api.HealthCheckResult{{Alive: false}}
	u2 := task("api.u2", "/api", agentC, 31201)
	u2.HealthCheckResults = []api.HealthCheckResult{{Alive: false}}
	states["06-all-unhealthy"] = &api.State{Index: 15, Leader: "192.168.1.10:8080", Nodes: baseNodes(), Apps: []*api.App{ptr(hc)}, Tasks: []*api.Task{ptr(u1), ptr(u2)}}

	// 7. Sites: tasks carry their agent's site.
	s1 := task("cache.s1", "/cache", agentA, 31300)
	s1.Site = "a"
	s2 := task("cache.s2", "/cache", agentB, 31301)
	s2.Site = "a"
	s3 := task("cache.s3", "/cache", agentC, 31302)
	s3.Site = "b"
	states["07-sites"] = &api.State{Index: 16, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(hostApp("/cache", api.PortDefinition{Port: 10020}))}, Tasks: []*api.Task{ptr(s1), ptr(s2), ptr(s3)}}

	// 8. Several frameworks: a Marathon app and a running Chronos job task.
	ch := api.Task{ID: "ct:1732233600000:0:nightly-report:", Name: "nightly-report", SlaveID: agentB, State: api.TaskRunning, Framework: "chronos", Ports: []int{31400}}
	states["08-frameworks"] = &api.State{Index: 17, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps:  []*api.App{ptr(hostApp("/biserver", api.PortDefinition{Port: 10000}))},
		Tasks: []*api.Task{ptr(task("biserver.f1", "/biserver", agentA, 31005)), ptr(ch)}}

	// 9. Only running tasks; a task on an agent that is not (yet) a known
	// node uses task.host; a deleted app's task has no DiscoveryInfo.
	k1 := task("job.k1", "/worker", agentA, 31600)
	k1.State = api.TaskStaging
	k2 := task("job.k2", "/worker", agentB, 31601)
	k2.State = api.TaskKilled
	k3 := task("job.k3", "/worker", "unknown-agent-S9", 31602)
	k3.Host = "198.51.100.9"
	k4 := task("orphan.k4", "/orphan", agentB, 31603)
	states["09-states-and-orphans"] = &api.State{Index: 18, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(hostApp("/worker", api.PortDefinition{Port: 10030}))}, Tasks: []*api.Task{ptr(k1), ptr(k2), ptr(k3), ptr(k4)}}

	// 10. Three masters (HA) without the mesh: host addresses; a failed
	// agent gets no slave record.
	ha := []api.Node{
		node("m-1", "master-1", api.RoleMaster, "a", "192.168.1.21", ""),
		node("m-2", "master-2", api.RoleMaster, "a", "192.168.1.22", ""),
		node("m-3", "master-3", api.RoleMaster, "b", "203.0.113.23", ""),
		node("a-1-S1", "agent-1", api.RoleAgent, "a", "192.168.1.31", ""),
		node("a-2-S2", "agent-2", api.RoleAgent, "b", "203.0.113.32", ""),
	}
	ha[4].Status = "failed"
	states["10-ha-masters-no-mesh"] = &api.State{Index: 19, Leader: "192.168.1.22:8080", Nodes: ha}

	// 11. Names that need sanitising: long app ids, upper case, underscores.
	long := hostApp("/Prod_Team/"+strings.Repeat("very-long-service-name-", 4)+"x", api.PortDefinition{Port: 10040, Name: "Admin_Port"})
	states["11-sanitising"] = &api.State{Index: 20, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(long)}, Tasks: []*api.Task{ptr(task("long.l1", long.ID, agentA, 31700))}}

	// 12. Empty cluster with no leader: only the zone apex.
	states["12-empty"] = &api.State{}

	// 13. Bridge app with two mappings, one udp and one tcp+udp, legacy
	// docker.portMappings.
	b2 := api.App{ID: "/dns/relay", Instances: 1, Container: &api.Container{Type: "DOCKER",
		Docker: &api.Docker{Image: "relay", Network: "BRIDGE", PortMappings: []api.PortMapping{
			{ContainerPort: 53, HostPort: ptr(0), Protocol: "udp", Name: "dns"},
			{ContainerPort: 9000, HostPort: ptr(0), Protocol: "udp,tcp"}}}}}
	states["13-bridge-protocols"] = &api.State{Index: 21, Leader: "192.168.1.10:8080", Nodes: baseNodes(),
		Apps: []*api.App{ptr(b2)}, Tasks: []*api.Task{ptr(task("dns_relay.r1", "/dns/relay", agentC, 31800, 31801))}}
	// 14. A container network with IPv6 task addresses: AAAA records.
	v6 := api.App{ID: "/v6svc", Instances: 1, Networks: []api.Network{{Mode: "container", Name: "v6net"}},
		Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "svc"},
			PortMappings: []api.PortMapping{{ContainerPort: 8080, Name: "http", Protocol: "tcp"}}}}
	vt := task("v6svc.v1", "/v6svc", agentB)
	vt.IPAddresses = []api.IPAddress{{IPAddress: "fd00:47::5", Protocol: "IPv6"}}
	states["14-ipv6-container"] = &api.State{Index: 22, Leader: "192.168.1.10:8080", Nodes: baseNodes(), Apps: []*api.App{ptr(v6)}, Tasks: []*api.Task{ptr(vt)}}
	return states
}

func TestGoldenRecords(t *testing.T) {
	cfg := DefaultRecordConfig()
	cfg.Serial = 1732233600
	cfg.NSAddrs = []netip.Addr{netip.MustParseAddr("10.47.1.1")}
	states := goldenStates()
	if len(states) < 10 {
		t.Fatalf("want at least 10 golden states, have %d", len(states))
	}
	for name, st := range states {
		t.Run(name, func(t *testing.T) {
			got := BuildRecords(st, cfg).ZoneText()
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./dns -run TestGoldenRecords -update)", err)
			}
			if got != string(want) {
				t.Errorf("records differ from %s:\n%s", path, lineDiff(string(want), got))
			}
			// Every golden line must parse as a zone-file record.
			for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
				if _, err := mdns.NewRR(l); err != nil {
					t.Errorf("line %q does not parse: %v", l, err)
				}
			}
		})
	}
}

// lineDiff lists lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w := map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	g := map[string]bool{}
	var sb strings.Builder
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
		if !w[l] {
			sb.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			sb.WriteString("- " + l + "\n")
		}
	}
	return sb.String()
}

// The rules the golden files encode, asserted directly so a careless
// -update cannot hide a regression.
func TestRecordRules(t *testing.T) {
	cfg := DefaultRecordConfig()
	states := goldenStates()
	has := func(st string, line string) bool {
		return strings.Contains(BuildRecords(states[st], cfg).ZoneText(), line+"\n")
	}
	must := func(st, line string) {
		t.Helper()
		if !has(st, line) {
			t.Errorf("%s: missing %q", st, line)
		}
	}
	mustNot := func(st, substr string) {
		t.Helper()
		if strings.Contains(BuildRecords(states[st], cfg).ZoneText(), substr) {
			t.Errorf("%s: unexpected %q", st, substr)
		}
	}
	h := TaskHash("ssk2_whereisbot.c3")
	must("02-group-named-ports", "whereisbot-ssk2.marathon.pcm. 5 IN A 10.47.3.1")
	must("02-group-named-ports", "whereisbot.ssk2.marathon.pcm. 5 IN A 10.47.3.1")
	must("02-group-named-ports", "_http._whereisbot-ssk2._tcp.marathon.pcm. 5 IN SRV 0 1 31001 whereisbot-ssk2-"+h+"-s3.marathon.pcm.")
	must("02-group-named-ports", "_whereisbot-ssk2._udp.marathon.pcm. 5 IN SRV 0 1 31002 whereisbot-ssk2-"+h+"-s3.marathon.pcm.")
	must("02-group-named-ports", "_whereisbot-ssk2._tcp.marathon.slave.pcm. 5 IN SRV 0 1 31002 whereisbot-ssk2-"+h+"-s3.marathon.slave.pcm.")
	mustNot("02-group-named-ports", "_whereisbot-ssk2._udp.marathon.pcm. 5 IN SRV 0 1 31001")
	mustNot("03-bridge", "172.17.0.5")
	must("03-bridge", "web.marathon.pcm. 5 IN A 10.47.2.1")
	must("04-overlay-container", "pg-db.marathon.pcm. 5 IN A 10.47.3.2")
	must("04-overlay-container", "pg-db.marathon.slave.pcm. 5 IN A 10.47.3.1")
	must("04-overlay-container", "2.3.47.10.in-addr.arpa. 5 IN PTR pg-db-"+TaskHash("db_pg.o1")+"-s3.marathon.pcm.")
	must("05-unhealthy", "api.marathon.pcm. 5 IN A 10.47.1.1")
	mustNot("05-unhealthy", "api.marathon.pcm. 5 IN A 10.47.2.1")
	mustNot("05-unhealthy", "api.marathon.pcm. 5 IN A 10.47.3.1")
	must("05-unhealthy", "api-"+TaskHash("api.h2")+"-s2.marathon.pcm. 5 IN A 10.47.2.1")
	must("06-all-unhealthy", "api.marathon.pcm. 5 IN A 10.47.1.1")
	must("06-all-unhealthy", "api.marathon.pcm. 5 IN A 10.47.3.1")
	must("08-frameworks", "nightly-report.chronos.pcm. 5 IN A 10.47.2.1")
	must("08-frameworks", "chronostasknightly-report.chronos.pcm. 5 IN A 10.47.2.1")
	must("08-frameworks", "_framework._tcp.marathon.pcm. 5 IN SRV 0 1 8080 marathon.pcm.")
	must("09-states-and-orphans", "worker.marathon.pcm. 5 IN A 198.51.100.9")
	mustNot("09-states-and-orphans", "31600")
	mustNot("09-states-and-orphans", "31601")
	must("09-states-and-orphans", "_orphan._udp.marathon.pcm. 5 IN SRV 0 1 31603 orphan-"+TaskHash("orphan.k4")+"-s2.marathon.slave.pcm.")
	must("10-ha-masters-no-mesh", "leader.pcm. 5 IN A 192.168.1.22")
	must("10-ha-masters-no-mesh", "master1.pcm. 5 IN A 192.168.1.22")
	must("10-ha-masters-no-mesh", "master2.pcm. 5 IN A 203.0.113.23")
	must("10-ha-masters-no-mesh", "_leader._udp.pcm. 5 IN SRV 0 1 8080 leader.pcm.")
	must("10-ha-masters-no-mesh", "slave.pcm. 5 IN A 192.168.1.31")
	mustNot("10-ha-masters-no-mesh", "slave.pcm. 5 IN A 203.0.113.32")
	must("01-host-app", "m1.node.pcm. 5 IN A 10.47.1.1")
	must("01-host-app", "1.1.47.10.in-addr.arpa. 5 IN PTR m1.node.pcm.")
	must("01-host-app", "pcm. 5 IN SOA ns1.pcm. root.ns1.pcm. 0 60 600 86400 5")
	must("12-empty", "pcm. 5 IN NS ns1.pcm.")
	must("14-ipv6-container", "v6svc.marathon.pcm. 5 IN AAAA fd00:47::5")
	must("14-ipv6-container", "v6svc.marathon.slave.pcm. 5 IN A 10.47.2.1")
	must("13-bridge-protocols", "_relay-dns._tcp.marathon.pcm. 5 IN SRV 0 1 31801 relay-dns-"+TaskHash("dns_relay.r1")+"-s3.marathon.pcm.")
	must("13-bridge-protocols", "_dns._relay-dns._udp.marathon.pcm. 5 IN SRV 0 1 31800 relay-dns-"+TaskHash("dns_relay.r1")+"-s3.marathon.pcm.")
}
