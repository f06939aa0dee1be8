package api

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Serf tag keys that carry a node's scheduling facts. serf allows 512 bytes
// of tags per member in all (the mesh's own keys included), so keys are
// short and values compact. The mesh package owns its own keys (public key,
// block, endpoints, role, site) and never uses these.
const (
	TagAgentID   = "id"   // agent id (slaveId)
	TagResources = "res"  // "c=2;m=23000;d=50000;g=0;p=31000-32000"
	TagAttrs     = "at"   // "rack=r1;disk=ssd"
	TagAgentAPI  = "aapi" // agent API host:port
	TagAPI       = "api"  // master API host:port
	TagRaft      = "raft" // master's raft host:port (advertised)
	TagDNS       = "dns"  // DNS host:port
	TagAgentRole = "ar"   // Mesos resource role (slave_public)
	TagCaps      = "cap"  // capabilities, comma list ("docker")
	TagProblems  = "pb"   // why a capability is missing (short)
	TagVersion   = "v"
)

// EncodeResources writes r compactly for a tag.
func EncodeResources(r Resources) string {
	var b strings.Builder
	fmt.Fprintf(&b, "c=%s;m=%s;d=%s", fnum(r.Cpus), fnum(r.Mem), fnum(r.Disk))
	if r.Gpus > 0 {
		fmt.Fprintf(&b, ";g=%d", r.Gpus)
	}
	if len(r.Ports) > 0 {
		b.WriteString(";p=")
		for i, p := range r.Ports {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d-%d", p.Begin, p.End)
		}
	}
	return b.String()
}

func fnum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// DecodeResources parses EncodeResources' output.
func DecodeResources(s string) (Resources, error) {
	var r Resources
	if s == "" {
		return r, nil
	}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return r, fmt.Errorf("resources %q: %q is not key=value", s, kv)
		}
		var err error
		switch k {
		case "c":
			r.Cpus, err = strconv.ParseFloat(v, 64)
		case "m":
			r.Mem, err = strconv.ParseFloat(v, 64)
		case "d":
			r.Disk, err = strconv.ParseFloat(v, 64)
		case "g":
			r.Gpus, err = strconv.Atoi(v)
		case "p":
			r.Ports, err = ParsePortRanges(v)
		}
		if err != nil {
			return r, fmt.Errorf("resources %q: %s: %w", s, k, err)
		}
	}
	return r, nil
}

// ParsePortRanges parses "31000-32000,40000-40010".
func ParsePortRanges(s string) ([]PortRange, error) {
	var out []PortRange
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		a, b, found := strings.Cut(part, "-")
		lo, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("port range %q: %w", part, err)
		}
		hi := lo
		if found {
			if hi, err = strconv.Atoi(b); err != nil {
				return nil, fmt.Errorf("port range %q: %w", part, err)
			}
		}
		if lo < 1 || hi > 65535 || lo > hi {
			return nil, fmt.Errorf("port range %q: want 1-65535, low before high", part)
		}
		out = append(out, PortRange{Begin: lo, End: hi})
	}
	return out, nil
}

// EncodeAttrs writes attributes as "k=v;k2=v2", sorted.
func EncodeAttrs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ";")
}

// DecodeAttrs parses EncodeAttrs' output.
func DecodeAttrs(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			m[k] = v
		}
	}
	return m
}

// NodeTags returns the scheduling tags for n (the agent sets these on its
// gossip member).
func NodeTags(n Node) map[string]string {
	t := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			t[k] = v
		}
	}
	set(TagAgentID, n.ID)
	if n.Resources.Cpus > 0 || n.Resources.Mem > 0 || len(n.Resources.Ports) > 0 {
		set(TagResources, EncodeResources(n.Resources))
	}
	set(TagAttrs, EncodeAttrs(n.Attributes))
	set(TagAgentAPI, n.AgentAPI)
	set(TagAPI, n.API)
	set(TagRaft, n.Raft)
	set(TagDNS, n.DNS)
	set(TagAgentRole, n.AgentRole)
	set(TagCaps, strings.Join(n.Capabilities, ","))
	set(TagProblems, strings.Join(n.Problems, "|"))
	set(TagVersion, n.Version)
	return t
}

// ApplyNodeTags fills n's scheduling facts from a member's tags.
func ApplyNodeTags(n *Node, tags map[string]string) error {
	if v := tags[TagAgentID]; v != "" {
		n.ID = v
	}
	if n.ID == "" {
		n.ID = n.Name
	}
	r, err := DecodeResources(tags[TagResources])
	if err != nil {
		return err
	}
	n.Resources = r
	n.Attributes = DecodeAttrs(tags[TagAttrs])
	n.AgentAPI = tags[TagAgentAPI]
	n.API = tags[TagAPI]
	n.Raft = tags[TagRaft]
	n.DNS = tags[TagDNS]
	n.AgentRole = tags[TagAgentRole]
	if n.AgentRole == "" {
		n.AgentRole = "*"
	}
	n.Capabilities = nil
	if v := tags[TagCaps]; v != "" {
		n.Capabilities = strings.Split(v, ",")
	}
	n.Problems = nil
	if v := tags[TagProblems]; v != "" {
		n.Problems = strings.Split(v, "|")
	}
	n.Version = tags[TagVersion]
	return nil
}
