package dns

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Version is reported by /v1/version; cmd/weft may set it at start.
var Version = "dev"

// Handler serves the Mesos-DNS HTTP API: /v1/version, /v1/config,
// /v1/hosts/{host}, /v1/services/{service}, /v1/enumerate and /v1/axfr,
// with Mesos-DNS's shapes (ports as strings, a one-element list of empty
// strings when nothing matches).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"Service": "Mesos-DNS", "URL": "https://github.com/weftnet/weft", "Version": "weft-" + Version})
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.configView())
	})
	mux.HandleFunc("GET /v1/hosts/{host}", func(w http.ResponseWriter, r *http.Request) {
		t := s.table.Load()
		name := mdns.Fqdn(strings.ToLower(r.PathValue("host")))
		type host struct {
			Host string `json:"host"`
			IP   string `json:"ip"`
		}
		out := []host{}
		for _, typ := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			rs, _ := t.Lookup(name, typ)
			for _, rec := range rs {
				out = append(out, host{rec.Name, rec.IP.String()})
			}
		}
		if len(out) == 0 {
			out = append(out, host{})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /v1/hosts/{host}/ports", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not implemented", http.StatusNotImplemented)
	})
	mux.HandleFunc("GET /v1/services/{service}", func(w http.ResponseWriter, r *http.Request) {
		t := s.table.Load()
		name := mdns.Fqdn(strings.ToLower(r.PathValue("service")))
		type svc struct {
			Service string `json:"service"`
			Host    string `json:"host"`
			IP      string `json:"ip"`
			Port    string `json:"port"`
		}
		out := []svc{}
		rs, _ := t.Lookup(name, mdns.TypeSRV)
		for _, rec := range rs {
			ip := ""
			if as, _ := t.Lookup(rec.Target, mdns.TypeA); len(as) > 0 {
				ip = as[0].IP.String()
			} else if as, _ := t.Lookup(rec.Target, mdns.TypeAAAA); len(as) > 0 {
				ip = as[0].IP.String()
			}
			out = append(out, svc{rec.Name, rec.Target, ip, strconv.Itoa(int(rec.Port))})
		}
		if len(out) == 0 {
			out = append(out, svc{})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /v1/enumerate", func(w http.ResponseWriter, r *http.Request) {
		fws := s.table.Load().Enumerate()
		if fws == nil {
			fws = []*EnumFramework{}
		}
		writeJSON(w, map[string]any{"frameworks": fws})
	})
	mux.HandleFunc("GET /v1/axfr", func(w http.ResponseWriter, r *http.Request) {
		t := s.table.Load()
		recs := map[string]map[string][]string{"As": {}, "AAAAs": {}, "SRVs": {}}
		for _, rec := range t.Records() {
			var k string
			switch rec.Type {
			case mdns.TypeA:
				k = "As"
			case mdns.TypeAAAA:
				k = "AAAAs"
			case mdns.TypeSRV:
				k = "SRVs"
			default:
				continue
			}
			recs[k][rec.Name] = append(recs[k][rec.Name], rec.Value())
		}
		writeJSON(w, map[string]any{
			"TTL":            t.cfg.TTL,
			"Serial":         t.cfg.Serial,
			"RefreshSeconds": int(s.cfg.ResyncEvery.Seconds()),
			"Mname":          t.cfg.SOAMname,
			"Rname":          t.cfg.SOARname,
			"Domain":         s.cfg.Domain,
			"Records":        recs,
		})
	})
	return mux
}

// configView is /v1/config: Mesos-DNS's Config struct as Mesos-DNS encodes
// it (records/config.go: Go field names, and HttpPort, DnsOn, HttpOn), with
// weft's effective settings where weft has one and, for the settings weft
// keeps without honouring, what --dns-config gave or Mesos-DNS's default.
// No other key: a strict client fails on one Mesos-DNS never sends. The
// Mesos credentials' secret is never shown (Mesos-DNS shows it).
func (s *Server) configView() map[string]any {
	rc := s.table.Load().cfg
	k := s.cfg.MesosDNS
	listener, port := "", 0
	if len(s.addrs) > 0 {
		h, p, _ := net.SplitHostPort(s.addrs[0])
		listener = h
		port, _ = strconv.Atoi(p)
	}
	httpListener, httpPort := "", 0
	if a := s.HTTPAddr(); a != "" {
		h, p, _ := net.SplitHostPort(a)
		httpListener = h
		httpPort, _ = strconv.Atoi(p)
	}
	ipSources := k.IPSources
	if ipSources == nil {
		// weft's rule (doc.go): the task's own address where usable, else the agent's.
		ipSources = []string{"netinfo", "mesos", "host"}
	}
	zoneResolvers := k.ZoneResolvers
	if zoneResolvers == nil {
		zoneResolvers = map[string][]string{}
	}
	resolvers := s.fwd.upstreams
	if resolvers == nil {
		resolvers = []string{}
	}
	masters := k.Masters
	if masters == nil {
		masters = []string{}
	}
	zkTimeout, stateTimeout := k.ZkDetectionTimeout, k.StateTimeoutSeconds
	if zkTimeout == 0 {
		zkTimeout = 30
	}
	if stateTimeout == 0 {
		stateTimeout = 300
	}
	return map[string]any{
		"RefreshSeconds":         int(s.cfg.ResyncEvery.Seconds()),
		"Port":                   port,
		"Timeout":                int(s.cfg.ForwardTimeout.Round(time.Second).Seconds()),
		"StateTimeoutSeconds":    stateTimeout,
		"ZkDetectionTimeout":     zkTimeout,
		"HttpPort":               httpPort,
		"TTL":                    rc.TTL,
		"SRVRecordDefaultWeight": rc.SRVWeight,
		"SOASerial":              rc.Serial,
		"SOARefresh":             rc.SOARefresh,
		"SOARetry":               rc.SOARetry,
		"SOAExpire":              rc.SOAExpire,
		"SOAMinttl":              rc.TTL,
		"SOAMname":               rc.SOAMname,
		"SOARname":               rc.SOARname,
		"Masters":                masters,
		"ZoneResolvers":          zoneResolvers,
		"Resolvers":              resolvers,
		"IPSources":              ipSources,
		"Zk":                     k.Zk,
		"Domain":                 rc.Domain,
		"File":                   k.File,
		"Listener":               listener,
		"HTTPListener":           httpListener,
		"RecurseOn":              s.cfg.Forward,
		"DnsOn":                  true,
		"HttpOn":                 s.httpLn != nil,
		"ExternalOn":             s.cfg.Forward,
		"EnforceRFC952":          rc.EnforceRFC952,
		"SetTruncateBit":         true,
		"EnumerationOn":          true,
		"MesosHTTPSOn":           k.MesosHTTPSOn,
		"CACertFile":             k.CACertFile,
		"CertFile":               k.CertFile,
		"KeyFile":                k.KeyFile,
		"MesosCredentials":       map[string]string{"principal": k.MesosPrincipal, "secret": ""},
		"IAMConfigFile":          k.IAMConfigFile,
		"MesosAuthentication":    k.MesosAuthentication,
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
