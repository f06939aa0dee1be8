package dns

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func getJSON(t *testing.T, h http.Handler, path string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if out != nil && rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
	}
	return rec.Code
}

func TestHTTPAPI(t *testing.T) {
	s := startServer(t, func(c *Config) { c.HTTPListen = "127.0.0.1:0" })
	s.SetState(goldenStates()["02-group-named-ports"])
	h := s.Handler()

	var ver map[string]string
	getJSON(t, h, "/v1/version", &ver)
	if ver["Service"] != "Mesos-DNS" {
		t.Errorf("version %v", ver)
	}
	var cfg map[string]any
	getJSON(t, h, "/v1/config", &cfg)
	if cfg["Domain"] != "pcm" || cfg["TTL"] != float64(5) {
		t.Errorf("config %v", cfg)
	}
	var hosts []map[string]string
	getJSON(t, h, "/v1/hosts/whereisbot-ssk2.marathon.pcm", &hosts)
	if len(hosts) != 1 || hosts[0]["ip"] != "10.47.3.1" || hosts[0]["host"] != "whereisbot-ssk2.marathon.pcm." {
		t.Errorf("hosts %v", hosts)
	}
	getJSON(t, h, "/v1/hosts/nope.marathon.pcm", &hosts)
	if len(hosts) != 1 || hosts[0]["host"] != "" || hosts[0]["ip"] != "" {
		t.Errorf("empty hosts shape %v", hosts)
	}
	var svcs []map[string]string
	getJSON(t, h, "/v1/services/_http._whereisbot-ssk2._tcp.marathon.pcm.", &svcs)
	if len(svcs) != 1 || svcs[0]["port"] != "31001" || svcs[0]["ip"] != "10.47.3.1" ||
		!strings.HasPrefix(svcs[0]["host"], "whereisbot-ssk2-") {
		t.Errorf("services %v", svcs)
	}
	getJSON(t, h, "/v1/services/_nope._tcp.marathon.pcm.", &svcs)
	if len(svcs) != 1 || svcs[0]["service"] != "" || svcs[0]["port"] != "" {
		t.Errorf("empty services shape %v", svcs)
	}
	var enum struct {
		Frameworks []struct {
			Name  string
			Tasks []struct {
				ID      string
				Records []map[string]string
			}
		}
	}
	getJSON(t, h, "/v1/enumerate", &enum)
	if len(enum.Frameworks) != 1 || enum.Frameworks[0].Name != "marathon" || len(enum.Frameworks[0].Tasks) != 1 ||
		len(enum.Frameworks[0].Tasks[0].Records) == 0 {
		t.Errorf("enumerate %+v", enum)
	}
	var axfr struct {
		Domain  string
		Records map[string]map[string][]string
	}
	getJSON(t, h, "/v1/axfr", &axfr)
	if axfr.Domain != "pcm" || len(axfr.Records["As"]["whereisbot-ssk2.marathon.pcm."]) != 1 || len(axfr.Records["SRVs"]) == 0 {
		t.Errorf("axfr %+v", axfr)
	}
	if code := getJSON(t, h, "/v1/hosts/x.pcm/ports", nil); code != http.StatusNotImplemented {
		t.Errorf("/ports: %d", code)
	}
	// And over the real listener.
	resp, err := http.Get("http://" + s.HTTPAddr() + "/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "Mesos-DNS") {
		t.Errorf("listener: %s", b)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	up := upstream(t)
	s := startServer(t, func(c *Config) { c.Registry = reg; c.Forward = true; c.Upstreams = []string{up} })
	s.SetState(goldenStates()["01-host-app"])
	ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0)
	ask(t, s, "udp", "biserver.marathon.pcm.", mdns.TypeA, 0)
	ask(t, s, "udp", "nope.marathon.pcm.", mdns.TypeA, 0)
	ask(t, s, "udp", "_biserver._tcp.marathon.pcm.", mdns.TypeSRV, 0)
	ask(t, s, "udp", "example.com.", mdns.TypeA, 0)
	waitFor(t, 2*time.Second, "metrics counted", func() bool {
		return value(s.m.queries.WithLabelValues("A", "NOERROR")) == 3 // 2 local + 1 forwarded
	})
	if v := value(s.m.queries.WithLabelValues("A", "NXDOMAIN")); v != 1 {
		t.Errorf("A NXDOMAIN = %v", v)
	}
	if v := value(s.m.queries.WithLabelValues("SRV", "NOERROR")); v != 1 {
		t.Errorf("SRV NOERROR = %v", v)
	}
	if v := value(s.m.forwards.WithLabelValues("ok")); v != 1 {
		t.Errorf("forwards ok = %v", v)
	}
	// The latency is observed once the answer is written: wait for it.
	waitFor(t, 2*time.Second, "a latency histogram with the 5 queries", func() bool {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "weft_dns_query_duration_seconds" {
				return f.GetMetric()[0].GetHistogram().GetSampleCount() >= 5
			}
		}
		return false
	})
}

func TestLoadMesosDNSConfig(t *testing.T) {
	cfg, notes, err := LoadMesosDNSConfig([]byte(`{
	  "zk": "zk://10.0.0.1:2181/mesos", "masters": ["10.0.0.1:5050"], "refreshSeconds": 60, "ttl": 60, "domain": "Mesos",
	  "port": 5353, "resolvers": ["10.0.0.2", "10.0.0.3:5300"], "timeout": 5, "listener": "10.0.0.9",
	  "httpon": true, "httpport": 8123, "externalon": false, "SOAMname": "ns1.mesos", "SOARname": "root@ns1.mesos",
	  "SOARefresh": 61, "SOARetry": 601, "SOAExpire": 86401, "srvRecordDefaultWeight": 2, "IPSources": ["host", "netinfo"],
	  "mesosCredentials": {"principal": "dns", "secret": "s3cret"}, "enforceRFC952": true, "frobnicate": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != "mesos" || cfg.TTL != 60 || cfg.ResyncEvery != 30*time.Second || cfg.ForwardTimeout != 2*time.Second ||
		cfg.Forward || cfg.Listen[0] != "10.0.0.9:5353" || cfg.HTTPListen != "0.0.0.0:8123" ||
		strings.Join(cfg.Upstreams, ",") != "10.0.0.2:53,10.0.0.3:5300" || cfg.Records.SOAMname != "ns1.mesos" ||
		cfg.Records.SOARname != "root.ns1.mesos" || cfg.Records.SOARefresh != 61 || cfg.Records.SRVWeight != 2 ||
		!cfg.Records.EnforceRFC952 || !cfg.Records.HostAddressOnly {
		t.Errorf("config %+v", cfg)
	}
	if k := cfg.MesosDNS; k.Zk != "zk://10.0.0.1:2181/mesos" || len(k.Masters) != 1 || k.MesosPrincipal != "dns" ||
		strings.Join(k.IPSources, ",") != "host,netinfo" {
		t.Errorf("kept %+v", k)
	}
	want := []string{"frobnicate ignored: not a Mesos-DNS setting",
		"masters kept but not honoured: weft reads state from its own master API",
		"mesosCredentials kept but not honoured: weft reads state from its own master API (the secret is not kept)",
		"zk kept but not honoured: weft reads state from its own master API"}
	if strings.Join(notes, "\n") != strings.Join(want, "\n") {
		t.Errorf("notes\n%s\nwant\n%s", strings.Join(notes, "\n"), strings.Join(want, "\n"))
	}
	for in, msg := range map[string]string{
		`[1]`:                               "expected a JSON object",
		`{"ttl": "60"}`:                     `"ttl" must be a JSON number`,
		`{"ttl": -1}`:                       "ttl -1 is out of range",
		`{"port": 70000}`:                   "port 70000 is not a port",
		`{"listener": "eth0"}`:              `listener "eth0" is not an IP address`,
		`{"resolvers": ["dns.google"]}`:     `resolver "dns.google" is not an IP address`,
		`{"domain": "bad domain"}`:          `domain "bad domain" is not a valid domain name`,
		`{"IPSources": ["mesos", "magic"]}`: `unknown source "magic"`,
		`{"dnson": false, "httpon": false}`: "both false",
		`{"refreshSeconds": 0}`:             "refreshSeconds 0 must be positive",
		`{"resolvers": "8.8.8.8"}`:          `"resolvers" must be a JSON array`,
		`{"mesosCredentials": "user:pass"}`: `"mesosCredentials" must be a JSON object`,
		`{"SOARefresh": -5}`:                `"SOARefresh" must be a JSON number`,
		`{"IPSources": []}`:                 "IPSources is empty",
		`{"httpListener": "localhost"}`:     `httpListener "localhost" is not an IP address`,
		`{"srvRecordDefaultWeight": 70000}`: `"srvRecordDefaultWeight" must be a JSON number`,
		`{"timeout": 0}`:                    "timeout 0 must be positive",
		`{"dnson": false}`:                  "dnson false is not supported",
		`{"resolvers": ["10.0.0.1:99999"]}`: "invalid port",
		`{"domain": "-x.mesos"}`:            "not a valid domain name",
		`{"enforceRFC952": "yes"}`:          `"enforceRFC952" must be a JSON boolean`,
		`{"masters": "10.0.0.1:5050"}`:      `"masters" must be a JSON array`,
		`{"zoneResolvers": ["10.0.0.1"]}`:   `"zoneResolvers" must be a JSON object`,
		`{"httpport": 0}`:                   "httpport 0 is not a port",
		`{"SOAMname": 1}`:                   `"SOAMname" must be a JSON string`,
		`{"externalon": "true"}`:            `"externalon" must be a JSON boolean`,
		`{"stateTimeoutSeconds": "300"}`:    `"stateTimeoutSeconds" must be a JSON number`,
		`{"IPSources": "host"}`:             `"IPSources" must be a JSON array`,
	} {
		_, _, err := LoadMesosDNSConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.HasPrefix(err.Error(), "Mesos-DNS config: ") {
			t.Errorf("%s: error %v, want one containing %q", in, err, msg)
		}
	}
	// IPSources with "host" first answers the agent's address for a task
	// that has its own overlay address.
	st := goldenStates()["04-overlay-container"]
	rc := DefaultRecordConfig()
	if rs, _ := BuildRecords(st, rc).Lookup("pg-db.marathon.pcm.", mdns.TypeA); len(rs) != 1 || rs[0].IP.String() != "10.47.3.2" {
		t.Fatalf("default: %v", rs)
	}
	rc.HostAddressOnly = true
	if rs, _ := BuildRecords(st, rc).Lookup("pg-db.marathon.pcm.", mdns.TypeA); len(rs) != 1 || rs[0].IP.String() != "10.47.3.1" {
		t.Errorf("IPSources host first: %v", rs)
	}
}

// upstreamConfigKeys are the keys of Mesos-DNS's GET /v1/config: its
// records.Config encoded by encoding/json (records/config.go).
var upstreamConfigKeys = []string{"RefreshSeconds", "Port", "Timeout", "StateTimeoutSeconds", "ZkDetectionTimeout",
	"HttpPort", "TTL", "SRVRecordDefaultWeight", "SOASerial", "SOARefresh", "SOARetry", "SOAExpire", "SOAMinttl",
	"SOAMname", "SOARname", "Masters", "ZoneResolvers", "Resolvers", "IPSources", "Zk", "Domain", "File", "Listener",
	"HTTPListener", "RecurseOn", "DnsOn", "HttpOn", "ExternalOn", "EnforceRFC952", "SetTruncateBit", "EnumerationOn",
	"MesosHTTPSOn", "CACertFile", "CertFile", "KeyFile", "MesosCredentials", "IAMConfigFile", "MesosAuthentication"}

// /v1/config has Mesos-DNS's key set, no more and no fewer, with the
// effective values and what a Mesos-DNS config.json gave; never a secret.
func TestHTTPConfigKeys(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.HTTPListen = "127.0.0.1:0"
		c.MesosDNS.File = "/etc/mesos-dns/config.json"
		if err := ApplyMesosDNSConfig(c, []byte(`{"zk": "zk://10.0.0.1:2181/mesos", "domain": "mesos", "ttl": 30,
		  "mesosCredentials": {"principal": "dns", "secret": "s3cret"}, "SOARname": "admin.mesos", "IPSources": ["mesos", "host"]}`)); err != nil {
			t.Fatal(err)
		}
		c.Listen = []string{"127.0.0.1:0"}
		c.HTTPListen = "127.0.0.1:0"
	})
	s.SetState(goldenStates()["01-host-app"])
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/config", nil))
	var got map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range upstreamConfigKeys {
		if _, ok := got[k]; !ok {
			t.Errorf("/v1/config lacks Mesos-DNS's key %q", k)
		}
		delete(got, k)
	}
	for k := range got {
		t.Errorf("/v1/config has key %q, which Mesos-DNS never sends", k)
	}
	var cfg map[string]any
	getJSON(t, s.Handler(), "/v1/config", &cfg)
	_, port, _ := net.SplitHostPort(s.Addrs()[0])
	if cfg["Domain"] != "mesos" || cfg["TTL"] != float64(30) || cfg["SOAMinttl"] != float64(30) ||
		cfg["Zk"] != "zk://10.0.0.1:2181/mesos" || cfg["File"] != "/etc/mesos-dns/config.json" ||
		cfg["SOARname"] != "admin.mesos." || cfg["Listener"] != "127.0.0.1" || fmt.Sprint(cfg["Port"]) != port ||
		cfg["HttpOn"] != true || cfg["HTTPListener"] != "127.0.0.1" || cfg["ZkDetectionTimeout"] != float64(30) ||
		fmt.Sprint(cfg["IPSources"]) != "[mesos host]" {
		t.Errorf("config %v", cfg)
	}
	if strings.Contains(rec.Body.String(), "s3cret") {
		t.Error("/v1/config shows the Mesos credentials' secret")
	}
}

func TestRegisterResolvedManualLine(t *testing.T) {
	if _, err := RegisterResolved(context.Background(), "weft0", "pcm", "nonsense"); err == nil {
		t.Error("no error for an address without a port")
	}
	if resolvedRunning() {
		t.Skip("systemd-resolved runs here; not changing the host's resolver in a unit test")
	}
	line, err := RegisterResolved(context.Background(), "weft0", "pcm", "10.47.1.1:53")
	if err != nil || !strings.Contains(line, "nameserver 10.47.1.1") {
		t.Errorf("line %q err %v", line, err)
	}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
