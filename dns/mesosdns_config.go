package dns

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// mesosDNSConfig is Mesos-DNS's config.json (records/config.go); JSON keys
// match case-insensitively, as they do for Mesos-DNS.
type mesosDNSConfig struct {
	RefreshSeconds         *int     `json:"refreshSeconds"`
	TTL                    *int     `json:"ttl"`
	Domain                 *string  `json:"domain"`
	Port                   *int     `json:"port"`
	Resolvers              []string `json:"resolvers"`
	Timeout                *int     `json:"timeout"`
	Listener               *string  `json:"listener"`
	HTTPListener           *string  `json:"httpListener"`
	HTTPPort               *int     `json:"httpport"`
	HTTPOn                 *bool    `json:"httpon"`
	ExternalOn             *bool    `json:"externalon"`
	SOAMname               *string  `json:"SOAMname"`
	SOARname               *string  `json:"SOARname"`
	SOARefresh             *uint32  `json:"SOARefresh"`
	SOARetry               *uint32  `json:"SOARetry"`
	SOAExpire              *uint32  `json:"SOAExpire"`
	SRVRecordDefaultWeight *uint16  `json:"srvRecordDefaultWeight"`
	EnforceRFC952          *bool    `json:"enforceRFC952"`
}

// ignoredMesosDNS are config.json keys weft accepts and ignores, with why.
var ignoredMesosDNS = map[string]string{
	"zk":                  "weft reads state from its own master API",
	"masters":             "weft reads state from its own master API",
	"zkdetectiontimeout":  "weft reads state from its own master API",
	"statetimeoutseconds": "weft reads state from its own master API",
	"mesosauthentication": "weft reads state from its own master API",
	"mesoscredentials":    "weft reads state from its own master API",
	"mesoshttpson":        "weft reads state from its own master API",
	"cacertfile":          "weft reads state from its own master API",
	"certfile":            "weft reads state from its own master API",
	"keyfile":             "weft reads state from its own master API",
	"iamconfigfile":       "weft reads state from its own master API",
	"ipsources":           "weft picks overlay, then agent overlay, then agent host addresses, never a Docker bridge address",
	"settruncatebit":      "weft always sets TC when it truncates",
	"soaminttl":           "the SOA minimum is the TTL, as Mesos-DNS emits it",
	"enumerationon":       "/v1/enumerate and /v1/axfr are always on",
	"zoneresolvers":       "per-zone resolvers are not supported; use resolvers",
	"recurseon":           "the RA bit follows externalon",
	"dnson":               "the DNS server is on whenever weft's DNS role is",
}

// LoadMesosDNSConfig reads a Mesos-DNS config.json into a Config that
// starts from DefaultConfig, and lists the settings it ignored and why.
// Mesos-DNS's defaults apply to keys that are absent only where weft has no
// better one (TTL stays 5 s, refresh is a push with a 30 s resync).
func LoadMesosDNSConfig(data []byte) (Config, []string, error) {
	cfg := DefaultConfig()
	var m mesosDNSConfig
	if err := json.Unmarshal(data, &m); err != nil {
		return cfg, nil, fmt.Errorf("reading Mesos-DNS config: %w (expected a JSON object like Mesos-DNS's config.json)", err)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(data, &raw)
	var notes []string
	for k := range raw {
		if why, ok := ignoredMesosDNS[strings.ToLower(k)]; ok {
			notes = append(notes, fmt.Sprintf("%s ignored: %s", k, why))
		}
	}
	sort.Strings(notes)
	if m.Domain != nil {
		cfg.Domain = *m.Domain
	}
	if m.TTL != nil {
		if *m.TTL < 0 {
			return cfg, notes, fmt.Errorf("Mesos-DNS config: ttl %d is negative", *m.TTL)
		}
		cfg.TTL = uint32(*m.TTL)
	}
	if m.RefreshSeconds != nil && *m.RefreshSeconds > 0 {
		cfg.ResyncEvery = min(time.Duration(*m.RefreshSeconds)*time.Second, 30*time.Second)
	}
	if m.Timeout != nil && *m.Timeout > 0 {
		cfg.ForwardTimeout = min(time.Duration(*m.Timeout)*time.Second, 2*time.Second)
	}
	if m.ExternalOn != nil {
		cfg.Forward = *m.ExternalOn
	}
	for _, r := range m.Resolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			r = net.JoinHostPort(r, "53")
		}
		cfg.Upstreams = append(cfg.Upstreams, r)
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
	if m.HTTPOn == nil || *m.HTTPOn {
		if m.HTTPListener != nil || m.HTTPPort != nil {
			host, port := "0.0.0.0", 8123
			if m.HTTPListener != nil {
				host = *m.HTTPListener
			}
			if m.HTTPPort != nil {
				port = *m.HTTPPort
			}
			cfg.HTTPListen = net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
	if m.SOAMname != nil {
		cfg.Records.SOAMname = *m.SOAMname
	}
	if m.SOARname != nil {
		cfg.Records.SOARname = *m.SOARname
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
	return cfg, notes, nil
}
