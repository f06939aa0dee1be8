package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// mesosDNSConfig is Mesos-DNS's config.json (records/config.go); JSON keys
// match case-insensitively, as they do for Mesos-DNS.
type mesosDNSConfig struct {
	RefreshSeconds         *int                `json:"refreshSeconds"`
	TTL                    *int                `json:"ttl"`
	Domain                 *string             `json:"domain"`
	Port                   *int                `json:"port"`
	Resolvers              []string            `json:"resolvers"`
	ZoneResolvers          map[string][]string `json:"zoneResolvers"`
	Timeout                *int                `json:"timeout"`
	Listener               *string             `json:"listener"`
	HTTPListener           *string             `json:"httpListener"`
	HTTPPort               *int                `json:"httpport"`
	HTTPOn                 *bool               `json:"httpon"`
	DNSOn                  *bool               `json:"dnson"`
	ExternalOn             *bool               `json:"externalon"`
	RecurseOn              *bool               `json:"recurseon"`
	SOAMname               *string             `json:"SOAMname"`
	SOARname               *string             `json:"SOARname"`
	SOARefresh             *uint32             `json:"SOARefresh"`
	SOARetry               *uint32             `json:"SOARetry"`
	SOAExpire              *uint32             `json:"SOAExpire"`
	SOAMinttl              *uint32             `json:"SOAMinttl"`
	SRVRecordDefaultWeight *uint16             `json:"srvRecordDefaultWeight"`
	EnforceRFC952          *bool               `json:"enforceRFC952"`
	SetTruncateBit         *bool               `json:"SetTruncateBit"`
	EnumerationOn          *bool               `json:"EnumerationOn"`
	IPSources              []string            `json:"IPSources"`

	// Read to be shown back in /v1/config, never used.
	Masters             []string `json:"masters"`
	Zk                  *string  `json:"zk"`
	ZkDetectionTimeout  *int     `json:"zkDetectionTimeout"`
	StateTimeoutSeconds *int     `json:"stateTimeoutSeconds"`
	MesosHTTPSOn        *bool    `json:"MesosHTTPSOn"`
	CACertFile          *string  `json:"CACertFile"`
	CertFile            *string  `json:"CertFile"`
	KeyFile             *string  `json:"KeyFile"`
	IAMConfigFile       *string  `json:"IAMConfigFile"`
	MesosAuthentication *string  `json:"mesosAuthentication"`
	MesosCredentials    *struct {
		Principal string `json:"principal"`
	} `json:"mesosCredentials"`
}

// MesosDNSKept holds the config.json settings weft reads and shows back in
// /v1/config without acting on them (weft reads its state from its own
// master API, not from Mesos masters or ZooKeeper). A zero value shows
// Mesos-DNS's defaults.
type MesosDNSKept struct {
	File                string
	Masters             []string
	Zk                  string
	ZkDetectionTimeout  int
	StateTimeoutSeconds int
	MesosHTTPSOn        bool
	CACertFile          string
	CertFile            string
	KeyFile             string
	IAMConfigFile       string
	MesosAuthentication string
	MesosPrincipal      string // the secret is never kept
	ZoneResolvers       map[string][]string
	IPSources           []string
}

// keptNotHonoured are config.json keys weft reads and keeps (shown in
// /v1/config) without acting on them, with why. LoadMesosDNSConfig warns
// about each one present.
var keptNotHonoured = map[string]string{
	"zk":                  "weft reads state from its own master API",
	"masters":             "weft reads state from its own master API",
	"zkdetectiontimeout":  "weft reads state from its own master API",
	"statetimeoutseconds": "weft reads state from its own master API",
	"mesosauthentication": "weft reads state from its own master API",
	"mesoscredentials":    "weft reads state from its own master API (the secret is not kept)",
	"mesoshttpson":        "weft reads state from its own master API",
	"cacertfile":          "weft reads state from its own master API",
	"certfile":            "weft reads state from its own master API",
	"keyfile":             "weft reads state from its own master API",
	"iamconfigfile":       "weft reads state from its own master API",
	"zoneresolvers":       "per-zone resolvers are not supported; names outside the domain go to resolvers",
	"settruncatebit":      "weft always sets TC when it truncates",
	"soaminttl":           "the SOA minimum is the TTL, as Mesos-DNS emits it",
	"enumerationon":       "/v1/enumerate and /v1/axfr are always on",
	"recurseon":           "the RA bit follows externalon",
}

// mesosDNSKeys are every key of Mesos-DNS's config.json, lower case.
var mesosDNSKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range []string{"refreshSeconds", "ttl", "domain", "port", "resolvers", "timeout", "listener",
		"httpListener", "httpport", "httpon", "dnson", "externalon", "SOAMname", "SOARname", "SOARefresh",
		"SOARetry", "SOAExpire", "SOASerial", "srvRecordDefaultWeight", "enforceRFC952", "IPSources", "File"} {
		m[strings.ToLower(k)] = true
	}
	for k := range keptNotHonoured {
		m[k] = true
	}
	return m
}()

// ipSources are the values Mesos-DNS's IPSources accepts (records/validation.go).
var ipSources = []string{"host", "mesos", "docker", "netinfo", "rkt"}

// LoadMesosDNSConfig reads a Mesos-DNS config.json into a Config that
// starts from base (DefaultConfig when zero), and returns warnings for the
// keys weft keeps without honouring and for keys Mesos-DNS does not have.
// Mesos-DNS's defaults apply to keys that are absent only where weft has no
// better one (TTL stays weft's 5 s; refresh is a push with a 30 s resync).
// A file Mesos-DNS itself would refuse (bad JSON, a value of the wrong
// type, an unknown IP source, both DNS and HTTP off, an invalid port,
// domain or resolver) is an error naming the key.
func LoadMesosDNSConfig(data []byte) (Config, []string, error) {
	cfg := DefaultConfig()
	err := ApplyMesosDNSConfig(&cfg, data)
	return cfg, cfg.MesosDNSWarnings, err
}

// ApplyMesosDNSConfig sets in cfg what a Mesos-DNS config.json says, as
// LoadMesosDNSConfig describes, and its warnings in cfg.MesosDNSWarnings.
func ApplyMesosDNSConfig(cfg *Config, data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("Mesos-DNS config: %v (expected a JSON object like Mesos-DNS's config.json)", err)
	}
	var m mesosDNSConfig
	if err := json.Unmarshal(data, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("Mesos-DNS config: %q must be a JSON %s, not %s", te.Field, jsonKind(te.Type.String()), te.Value)
		}
		return fmt.Errorf("Mesos-DNS config: %v", err)
	}
	var notes []string
	for k := range raw {
		lk := strings.ToLower(k)
		if why, ok := keptNotHonoured[lk]; ok {
			notes = append(notes, fmt.Sprintf("%s kept but not honoured: %s", k, why))
		} else if !mesosDNSKeys[lk] {
			notes = append(notes, fmt.Sprintf("%s ignored: not a Mesos-DNS setting", k))
		}
	}
	sort.Strings(notes)
	cfg.MesosDNSWarnings = notes

	if (m.DNSOn != nil && !*m.DNSOn) && (m.HTTPOn != nil && !*m.HTTPOn) {
		return fmt.Errorf("Mesos-DNS config: dnson and httpon are both false; one must be on")
	}
	if m.DNSOn != nil && !*m.DNSOn {
		return fmt.Errorf("Mesos-DNS config: dnson false is not supported: weft's DNS role serves DNS (run the node without the DNS role instead)")
	}
	if m.Domain != nil {
		d := strings.Trim(strings.ToLower(*m.Domain), ".")
		if _, ok := dnsNameOK(d); !ok {
			return fmt.Errorf("Mesos-DNS config: domain %q is not a valid domain name", *m.Domain)
		}
		cfg.Domain = d
	}
	if m.TTL != nil {
		if *m.TTL < 0 || *m.TTL > 1<<31-1 {
			return fmt.Errorf("Mesos-DNS config: ttl %d is out of range (0 to 2147483647 seconds)", *m.TTL)
		}
		if *m.TTL > 0 {
			cfg.TTL = uint32(*m.TTL)
		} else {
			notes = append(notes, fmt.Sprintf("ttl 0 not honoured: answers keep a TTL of %d s", cfg.TTL))
			cfg.MesosDNSWarnings = notes
		}
	}
	if m.RefreshSeconds != nil {
		if *m.RefreshSeconds <= 0 {
			return fmt.Errorf("Mesos-DNS config: refreshSeconds %d must be positive", *m.RefreshSeconds)
		}
		cfg.ResyncEvery = min(time.Duration(*m.RefreshSeconds)*time.Second, 30*time.Second)
	}
	if m.Timeout != nil {
		if *m.Timeout <= 0 {
			return fmt.Errorf("Mesos-DNS config: timeout %d must be positive", *m.Timeout)
		}
		cfg.ForwardTimeout = min(time.Duration(*m.Timeout)*time.Second, 2*time.Second)
	}
	if m.ExternalOn != nil {
		cfg.Forward = *m.ExternalOn
	}
	if len(m.Resolvers) > 0 {
		cfg.Upstreams = nil
	}
	for _, r := range m.Resolvers {
		host, port, err := net.SplitHostPort(r)
		if err != nil {
			host, port = r, "53"
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("Mesos-DNS config: resolver %q is not an IP address or IP:port", r)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return fmt.Errorf("Mesos-DNS config: resolver %q has an invalid port", r)
		}
		cfg.Upstreams = append(cfg.Upstreams, net.JoinHostPort(host, port))
	}
	checkPort := func(key string, p *int) error {
		if p != nil && (*p <= 0 || *p > 65535) {
			return fmt.Errorf("Mesos-DNS config: %s %d is not a port (1 to 65535)", key, *p)
		}
		return nil
	}
	checkHost := func(key string, h *string) error {
		if h != nil && net.ParseIP(*h) == nil {
			return fmt.Errorf("Mesos-DNS config: %s %q is not an IP address", key, *h)
		}
		return nil
	}
	for _, err := range []error{checkPort("port", m.Port), checkPort("httpport", m.HTTPPort),
		checkHost("listener", m.Listener), checkHost("httpListener", m.HTTPListener)} {
		if err != nil {
			return err
		}
	}
	if m.Listener != nil || m.Port != nil {
		host, port := "0.0.0.0", 53
		if m.Listener != nil {
			host = *m.Listener
		}
		if m.Port != nil {
			port = *m.Port
		}
		cfg.Listen = []string{net.JoinHostPort(host, strconv.Itoa(port))}
	}
	if m.HTTPOn != nil && !*m.HTTPOn {
		cfg.HTTPListen = ""
	} else if m.HTTPOn != nil || m.HTTPListener != nil || m.HTTPPort != nil {
		host, port := "0.0.0.0", 8123
		if m.HTTPListener != nil {
			host = *m.HTTPListener
		}
		if m.HTTPPort != nil {
			port = *m.HTTPPort
		}
		cfg.HTTPListen = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if m.SOAMname != nil {
		cfg.Records.SOAMname = *m.SOAMname
	}
	if m.SOARname != nil {
		// Mesos-DNS takes the mailbox with '@' as well (root@ns1.mesos).
		cfg.Records.SOARname = strings.ReplaceAll(*m.SOARname, "@", ".")
	}
	if m.SOARefresh != nil {
		cfg.Records.SOARefresh = *m.SOARefresh
	}
	if m.SOARetry != nil {
		cfg.Records.SOARetry = *m.SOARetry
	}
	if m.SOAExpire != nil {
		cfg.Records.SOAExpire = *m.SOAExpire
	}
	if m.SRVRecordDefaultWeight != nil {
		cfg.Records.SRVWeight = *m.SRVRecordDefaultWeight
	}
	if m.EnforceRFC952 != nil {
		cfg.Records.EnforceRFC952 = *m.EnforceRFC952
	}
	if m.IPSources != nil {
		if len(m.IPSources) == 0 {
			return fmt.Errorf("Mesos-DNS config: IPSources is empty; give at least one of %s", strings.Join(ipSources, ", "))
		}
		for _, s := range m.IPSources {
			if !slices.Contains(ipSources, s) {
				return fmt.Errorf("Mesos-DNS config: IPSources: unknown source %q (known: %s)", s, strings.Join(ipSources, ", "))
			}
		}
		// "host" before any source of the task's own address: always the
		// agent's address. Otherwise weft's address rule (doc.go), which
		// never answers a Docker bridge address.
		cfg.Records.HostAddressOnly = m.IPSources[0] == "host"
	}

	k := MesosDNSKept{Masters: m.Masters, ZoneResolvers: m.ZoneResolvers, IPSources: m.IPSources}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&k.Zk, m.Zk)
	set(&k.CACertFile, m.CACertFile)
	set(&k.CertFile, m.CertFile)
	set(&k.KeyFile, m.KeyFile)
	set(&k.IAMConfigFile, m.IAMConfigFile)
	set(&k.MesosAuthentication, m.MesosAuthentication)
	if m.ZkDetectionTimeout != nil {
		k.ZkDetectionTimeout = *m.ZkDetectionTimeout
	}
	if m.StateTimeoutSeconds != nil {
		k.StateTimeoutSeconds = *m.StateTimeoutSeconds
	}
	if m.MesosHTTPSOn != nil {
		k.MesosHTTPSOn = *m.MesosHTTPSOn
	}
	if m.MesosCredentials != nil {
		k.MesosPrincipal = m.MesosCredentials.Principal
	}
	k.File = cfg.MesosDNS.File
	cfg.MesosDNS = k
	return nil
}

// dnsNameOK says whether d is a usable domain: dot-separated labels of
// letters, digits and '-', 63 characters each, 253 in all.
func dnsNameOK(d string) (string, bool) {
	if d == "" || len(d) > 253 {
		return d, false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return d, false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return d, false
			}
		}
	}
	return d, true
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "struct"):
		return "object"
	case strings.Contains(goType, "int"):
		return "number"
	case strings.Contains(goType, "bool"):
		return "boolean"
	}
	return "string"
}
