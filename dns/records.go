package dns

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

// RecordConfig says how a cluster state becomes records. Names follow
// Mesos-DNS's config.json where one exists.
type RecordConfig struct {
	// Domain is the zone, without a trailing dot (Mesos-DNS "domain"). Default "pcm".
	Domain string
	// TTL of every record, in seconds (Mesos-DNS "ttl"). Default 5.
	TTL uint32
	// SOAMname is the primary name server of the zone (Mesos-DNS "SOAMname").
	// Default "ns1.<domain>".
	SOAMname string
	// SOARname is the zone's contact mailbox (Mesos-DNS "SOARname").
	// Default "root.ns1.<domain>".
	SOARname string
	// SOARefresh, SOARetry and SOAExpire are the SOA timers (Mesos-DNS
	// defaults 60, 600, 86400). The SOA minimum is the TTL, as Mesos-DNS emits it.
	SOARefresh, SOARetry, SOAExpire uint32
	// Serial is the SOA serial; Mesos-DNS uses the unix time of the last
	// successful reload, and so does the server.
	Serial uint32
	// NSAddrs are the addresses SOAMname resolves to: where this server listens.
	NSAddrs []netip.Addr
	// SRVWeight is the weight of every SRV record (Mesos-DNS
	// "srvRecordDefaultWeight"). Default 1.
	SRVWeight uint16
	// HostAddressOnly answers every task with its agent's address, never
	// the task's own (Mesos-DNS IPSources with "host" first).
	HostAddressOnly bool
	// EnforceRFC952 cuts labels to 24 characters and drops leading digits.
	EnforceRFC952 bool
}

// DefaultRecordConfig returns Mesos-DNS's defaults with weft's domain and TTL.
func DefaultRecordConfig() RecordConfig {
	return RecordConfig{Domain: "pcm", TTL: 5, SOARefresh: 60, SOARetry: 600, SOAExpire: 86400, SRVWeight: 1}
}

func (c RecordConfig) withDefaults() RecordConfig {
	d := DefaultRecordConfig()
	c.Domain = strings.Trim(strings.ToLower(c.Domain), ".")
	if c.Domain == "" {
		c.Domain = d.Domain
	}
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.SOAMname == "" {
		c.SOAMname = "ns1." + c.Domain
	}
	if c.SOARname == "" {
		c.SOARname = "root.ns1." + c.Domain
	}
	c.SOAMname = mdns.Fqdn(strings.ToLower(c.SOAMname))
	c.SOARname = mdns.Fqdn(strings.ToLower(c.SOARname))
	if c.SOARefresh == 0 {
		c.SOARefresh = d.SOARefresh
	}
	if c.SOARetry == 0 {
		c.SOARetry = d.SOARetry
	}
	if c.SOAExpire == 0 {
		c.SOAExpire = d.SOAExpire
	}
	if c.SRVWeight == 0 {
		c.SRVWeight = d.SRVWeight
	}
	return c
}

// Record is one resource record of the table.
type Record struct {
	Name   string     // owner, lower case, fully qualified
	Type   uint16     // mdns.TypeA, TypeAAAA, TypeSRV, TypePTR, TypeNS, TypeSOA
	IP     netip.Addr // A, AAAA
	Target string     // SRV, PTR, NS: fully qualified
	Port   uint16     // SRV
	Site   string     // the site of the task or node behind the record, for ordering
}

// Value is the record's data as Mesos-DNS's HTTP API shows it: an address,
// or "target:port" for SRV.
func (r Record) Value() string {
	switch r.Type {
	case mdns.TypeA, mdns.TypeAAAA:
		return r.IP.String()
	case mdns.TypeSRV:
		return r.Target + ":" + strconv.Itoa(int(r.Port))
	}
	return r.Target
}

// EnumFramework, EnumTask and EnumRecord are Mesos-DNS's /v1/enumerate shape.
type EnumFramework struct {
	Name  string      `json:"name"`
	Tasks []*EnumTask `json:"tasks"`
}

// EnumTask is one task and the records made for it.
type EnumTask struct {
	Name    string       `json:"name"`
	ID      string       `json:"id"`
	Records []EnumRecord `json:"records"`
	recs    []Record
}

// EnumRecord is one record of a task.
type EnumRecord struct {
	Name  string `json:"name"`
	Host  string `json:"host"`
	Rtype string `json:"rtype"`
}

type recKey struct {
	name   string
	typ    uint16
	ip     netip.Addr
	target string
	port   uint16
}

type builder struct {
	cfg     RecordConfig
	zone    string // "pcm."
	label   LabelFunc
	seen    map[recKey]bool
	records []Record
	nodes   map[string]*api.Node // by id
	blocks  []netip.Prefix
	cur     *groupOut // the task group being built, which collects its records too
}

func (b *builder) add(r Record, et *EnumTask) {
	if !validName(r.Name) || r.Target != "" && !validName(r.Target) {
		return // not a valid DNS name (a label over 63 characters, say)
	}
	k := recKey{r.Name, r.Type, r.IP, r.Target, r.Port}
	if g := b.cur; g != nil && !g.seen[k] {
		g.seen[k] = true
		g.recs = append(g.recs, r)
	}
	if b.seen[k] {
		return
	}
	b.seen[k] = true
	b.records = append(b.records, r)
	if et != nil {
		et.recs = append(et.recs, r)
	}
}

func (b *builder) addIP(name string, ip netip.Addr, site string, et *EnumTask) {
	if !ip.IsValid() {
		return
	}
	t := mdns.TypeA
	if !ip.Is4() {
		t = mdns.TypeAAAA
	}
	b.add(Record{Name: name, Type: t, IP: ip.Unmap(), Site: site}, et)
}

// BuildRecords computes the record table of a cluster state: the Mesos-DNS
// records of every running Marathon and Chronos task, the cluster records
// (leader, masters, agents, frameworks, SOA, NS) and weft's node and PTR
// records. It is pure: the same state and config give the same table.
func BuildRecords(st *api.State, cfg RecordConfig) *Table {
	t, _ := buildRecords(st, cfg)
	return t
}

// blocksOf is the overlay blocks of st's nodes.
func blocksOf(st *api.State) []netip.Prefix {
	var out []netip.Prefix
	for i := range st.Nodes {
		if p, err := netip.ParsePrefix(st.Nodes[i].OverlayBlock); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// buildRecords is BuildRecords, with what an incremental update (patch)
// needs next.
func buildRecords(st *api.State, cfg RecordConfig) (*Table, *buildInfo) {
	cfg = cfg.withDefaults()
	b := &builder{cfg: cfg, zone: cfg.Domain + ".", label: RFC1123, nodes: map[string]*api.Node{}}
	if st != nil {
		b.seen = make(map[recKey]bool, 8*len(st.Tasks)+4*len(st.Nodes)+16)
		b.records = make([]Record, 0, 8*len(st.Tasks)+4*len(st.Nodes)+16)
	} else {
		b.seen = map[recKey]bool{}
	}
	if cfg.EnforceRFC952 {
		b.label = RFC952
	}
	if st == nil {
		st = &api.State{}
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		b.nodes[n.ID] = n
	}
	b.blocks = blocksOf(st)
	z := b.zone
	// Zone apex and the name server.
	b.add(Record{Name: z, Type: mdns.TypeNS, Target: cfg.SOAMname}, nil)
	if strings.HasSuffix(cfg.SOAMname, "."+z) {
		for _, ip := range cfg.NSAddrs {
			b.addIP(cfg.SOAMname, ip, "", nil)
		}
	}
	b.clusterRecords(st)
	pre := len(b.records)
	enum, groups := b.taskRecords(st)
	post := len(b.records)
	b.nodeRecords(st)

	t := newTable(cfg, b.records, enum)
	info := &buildInfo{st: st, cfg: cfg, others: map[string][]Record{}, groups: make(map[string]*groupOut, len(groups)),
		contrib: map[string][]*groupOut{}, kids: map[string]int{}}
	info.cfg.Serial = 0
	for _, r := range b.records[:pre] {
		info.others[r.Name] = append(info.others[r.Name], r)
	}
	for _, r := range b.records[post:] {
		info.others[r.Name] = append(info.others[r.Name], r)
	}
	for _, g := range groups {
		info.groups[g.key] = g
		info.keys = append(info.keys, g.key)
		last := ""
		for _, r := range g.recs {
			if r.Name != last && !slices.Contains(info.contrib[r.Name], g) {
				info.contrib[r.Name] = append(info.contrib[r.Name], g)
			}
			last = r.Name
		}
	}
	for n := range t.names.all() {
		if n != t.zone && t.zoneOffset(n) > 0 {
			info.kids[parentName(n)]++
		}
	}
	return t, info
}

// nodeAddr is the address other nodes reach n at: its overlay address, else
// its host address.
func nodeAddr(n *api.Node) netip.Addr {
	if n == nil {
		return netip.Addr{}
	}
	if ip, err := netip.ParseAddr(n.OverlayIP); err == nil {
		return ip.Unmap()
	}
	return hostIP(n.Address)
}

// hostIP parses "ip" or "ip:port"; anything else (a host name) is invalid.
func hostIP(s string) netip.Addr {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if ip, err := netip.ParseAddr(h); err == nil {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func hostPort(s string) (host string, port uint16) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return s, 0
	}
	n, _ := strconv.ParseUint(p, 10, 16)
	return h, uint16(n)
}

func isMaster(n *api.Node) bool { return n.Role == api.RoleMaster || n.Role == api.RoleBoth }
func isAgent(n *api.Node) bool  { return n.Role == api.RoleAgent || n.Role == api.RoleBoth }
func gone(n *api.Node) bool     { return n.Status == "failed" || n.Status == "left" }

func (b *builder) clusterRecords(st *api.State) {
	z := b.zone
	// Masters, in a stable order: masterN must not move when the leader does.
	var masters []*api.Node
	for i := range st.Nodes {
		if n := &st.Nodes[i]; isMaster(n) && !gone(n) {
			masters = append(masters, n)
		}
	}
	slices.SortFunc(masters, func(a, c *api.Node) int {
		return cmp.Or(cmp.Compare(a.Name, c.Name), cmp.Compare(a.ID, c.ID))
	})
	// The leader: st.Leader is the host:port of its API.
	lhost, lport := hostPort(st.Leader)
	var leader *api.Node
	for _, n := range masters {
		if n.API != "" && n.API == st.Leader {
			leader = n
		}
	}
	if leader == nil && lhost != "" {
		for _, n := range masters {
			if h, _ := hostPort(n.API); h == lhost || n.Name == lhost || hostIP(n.Address) == hostIP(lhost) && hostIP(lhost).IsValid() {
				leader = n
				break
			}
		}
	}
	lip := nodeAddr(leader)
	if !lip.IsValid() {
		lip = hostIP(lhost)
	}
	lsite := ""
	if leader != nil {
		lsite = leader.Site
	}
	if lip.IsValid() {
		b.addIP("leader."+z, lip, lsite, nil)
		b.addIP("master."+z, lip, lsite, nil)
		if lport != 0 {
			for _, p := range []string{"_tcp", "_udp"} {
				b.add(Record{Name: "_leader." + p + "." + z, Type: mdns.TypeSRV, Target: "leader." + z, Port: lport}, nil)
			}
		}
		// The frameworks run inside the leading master.
		for _, f := range []string{"marathon", "chronos"} {
			fn := DomainFrag(f, b.label) + "." + z
			b.addIP(fn, lip, lsite, nil)
			if lport != 0 {
				b.add(Record{Name: "_framework._tcp." + fn, Type: mdns.TypeSRV, Target: fn, Port: lport}, nil)
			}
		}
	}
	idx, leaderIndexed := 0, false
	for _, n := range masters {
		ip := nodeAddr(n)
		if !ip.IsValid() {
			continue
		}
		b.addIP("master."+z, ip, n.Site, nil)
		b.addIP("master"+strconv.Itoa(idx)+"."+z, ip, n.Site, nil)
		idx++
		if n == leader {
			leaderIndexed = true
		}
	}
	if !leaderIndexed && lip.IsValid() {
		b.addIP("master"+strconv.Itoa(idx)+"."+z, lip, lsite, nil)
	}
	// Agents.
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if !isAgent(n) || gone(n) {
			continue
		}
		ip := nodeAddr(n)
		if !ip.IsValid() {
			continue
		}
		b.addIP("slave."+z, ip, n.Site, nil)
		port := uint16(5051)
		if _, p := hostPort(n.AgentAPI); p != 0 {
			port = p
		}
		b.add(Record{Name: "_slave._tcp." + z, Type: mdns.TypeSRV, Target: "slave." + z, Port: port, Site: n.Site}, nil)
	}
}

// nodeRecords are weft's own: <node>.node.<domain> → the node's overlay
// address (else its host address), and PTR records for overlay addresses.
func (b *builder) nodeRecords(st *api.State) {
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.Status == "left" {
			continue
		}
		l := b.label(n.Name)
		if l == "" {
			continue
		}
		name := l + ".node." + b.zone
		ip := nodeAddr(n)
		b.addIP(name, ip, n.Site, nil)
		if ov, err := netip.ParseAddr(n.OverlayIP); err == nil {
			b.add(Record{Name: reverseName(ov), Type: mdns.TypePTR, Target: name, Site: n.Site}, nil)
		}
	}
}

func reverseName(ip netip.Addr) string {
	r, _ := mdns.ReverseAddr(ip.Unmap().String())
	return r
}

// netMode is how a Marathon app's tasks are networked.
type netMode int

const (
	modeHost netMode = iota
	modeBridge
	modeContainer
)

func appMode(a *api.App) netMode {
	for _, n := range a.Networks {
		switch strings.ToLower(n.Mode) {
		case "container/bridge":
			return modeBridge
		case "container":
			return modeContainer
		}
	}
	if a.Container != nil && a.Container.Docker != nil {
		switch strings.ToUpper(a.Container.Docker.Network) {
		case "BRIDGE":
			return modeBridge
		case "USER":
			return modeContainer
		}
	}
	if a.IPAddress != nil {
		return modeContainer
	}
	return modeHost
}

func portMappings(a *api.App) []api.PortMapping {
	if a.Container == nil {
		return nil
	}
	if len(a.Container.PortMappings) > 0 {
		return a.Container.PortMappings
	}
	if a.Container.Docker != nil {
		return a.Container.Docker.PortMappings
	}
	return nil
}

type diPort struct {
	number   int
	name     string
	protocol string // tcp or udp
}

func protocols(p string) []string {
	if p == "" {
		return []string{"tcp"} // Marathon's default
	}
	var out []string
	for _, x := range strings.Split(strings.ToLower(p), ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// discoveryPorts are the DiscoveryInfo ports Marathon gives a task of app a
// (TaskBuilder.computeDiscoveryInfo): host networking publishes each port
// definition with its host port, bridge networking each port mapping that has
// a host port with that host port, container networking each port mapping
// with its container port.
func discoveryPorts(a *api.App, t *api.Task) []diPort {
	var out []diPort
	add := func(n int, name, proto string) {
		if n <= 0 || n > 65535 {
			return
		}
		for _, p := range protocols(proto) {
			out = append(out, diPort{n, name, p})
		}
	}
	switch appMode(a) {
	case modeContainer:
		for _, m := range portMappings(a) {
			add(m.ContainerPort, m.Name, m.Protocol)
		}
	case modeBridge:
		k := 0
		for _, m := range portMappings(a) {
			if m.HostPort == nil {
				continue
			}
			if k < len(t.Ports) {
				add(t.Ports[k], m.Name, m.Protocol)
			}
			k++
		}
	default:
		if len(a.PortDefinitions) > 0 {
			for i, pd := range a.PortDefinitions {
				if i < len(t.Ports) {
					add(t.Ports[i], pd.Name, pd.Protocol)
				}
			}
		} else {
			for i := range a.Ports {
				if i < len(t.Ports) {
					add(t.Ports[i], "", "")
				}
			}
		}
	}
	return out
}

var dockerNets = netip.MustParsePrefix("172.16.0.0/12")

// taskIP chooses the address a task is reached at: its own address when it
// is on the overlay (inside some node's overlay block), or when its app is
// on a container network and the address is not a Docker bridge network
// address; else its agent's overlay address; else the agent's host address.
// A Docker bridge address (172.17.x.x) is never answered.
func (b *builder) taskIP(t *api.Task, a *api.App, agent *api.Node) netip.Addr {
	mode := modeHost
	if a != nil {
		mode = appMode(a)
	}
	for _, x := range t.IPAddresses {
		if b.cfg.HostAddressOnly {
			break
		}
		ip, err := netip.ParseAddr(x.IPAddress)
		if err != nil || ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() {
			continue
		}
		ip = ip.Unmap()
		if b.inOverlay(ip) && mode != modeBridge {
			return ip
		}
		if mode == modeContainer && !dockerNets.Contains(ip) {
			return ip
		}
	}
	if ip := nodeAddr(agent); ip.IsValid() {
		return ip
	}
	return hostIP(t.Host)
}

func (b *builder) inOverlay(ip netip.Addr) bool {
	for _, p := range b.blocks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

type taskGroup struct {
	framework string // raw framework name
	key       string
	tasks     []*api.Task
	app       *api.App
	hasHC     bool
}

// eligible reports which tasks of a group are answered under the group's
// shared names: the healthy ones (a task of an app without health checks
// counts as healthy; a task of an app with health checks counts once its
// results are all alive), or every running task when none is healthy.
func (g *taskGroup) eligible() []bool {
	ok := make([]bool, len(g.tasks))
	anyOK := false
	for i, t := range g.tasks {
		healthy, known := t.Healthy()
		switch {
		case known:
			ok[i] = healthy
		default:
			ok[i] = !g.hasHC
		}
		anyOK = anyOK || ok[i]
	}
	if !anyOK {
		for i := range ok {
			ok[i] = true
		}
	}
	return ok
}

func (b *builder) taskRecords(st *api.State) ([]*EnumFramework, []*groupOut) {
	enum := map[string]*EnumFramework{}
	var fws []*EnumFramework
	var outs []*groupOut
	for _, g := range groupTasks(st) {
		ef := enum[g.framework]
		if ef == nil {
			ef = &EnumFramework{Name: g.framework, Tasks: []*EnumTask{}}
			enum[g.framework] = ef
			fws = append(fws, ef)
		}
		out := b.group(g)
		ef.Tasks = append(ef.Tasks, out.enum...)
		outs = append(outs, out)
	}
	slices.SortFunc(fws, func(a, c *EnumFramework) int { return cmp.Compare(a.Name, c.Name) })
	return fws, outs
}

// group makes the records of one task group, into the builder's and its own.
func (b *builder) group(g *taskGroup) *groupOut {
	out := &groupOut{key: g.key, fw: g.framework, app: g.app, tasks: g.tasks, seen: map[recKey]bool{}}
	b.cur = out
	ef := &EnumFramework{}
	ok := g.eligible()
	for i, t := range g.tasks {
		b.taskRecord(g, t, ok[i], ef)
	}
	b.cur = nil
	out.enum, out.seen = ef.Tasks, nil
	return out
}

type taskCtx struct {
	name, hash, agent string
	taskIP, agentIP   netip.Addr
	site              string
}

func (b *builder) taskRecord(g *taskGroup, t *api.Task, shared bool, ef *EnumFramework) {
	agent := b.nodes[t.SlaveID]
	var ctx taskCtx
	ctx.hash = TaskHash(t.ID)
	ctx.agent = AgentTail(t.SlaveID)
	ctx.taskIP = b.taskIP(t, g.app, agent)
	ctx.agentIP = nodeAddr(agent)
	if !ctx.agentIP.IsValid() {
		ctx.agentIP = hostIP(t.Host)
	}
	if !ctx.taskIP.IsValid() && !ctx.agentIP.IsValid() {
		return // Mesos-DNS skips tasks whose agent it does not know
	}
	ctx.site = t.Site
	if ctx.site == "" && agent != nil {
		ctx.site = agent.Site
	}
	var rawName string
	switch g.framework {
	case "marathon":
		rawName = AppHostname(t.AppID)
	case "chronos":
		rawName = t.Name
	default:
		rawName = t.Name
		if rawName == "" {
			rawName = AppHostname(t.AppID)
		}
	}
	et := &EnumTask{Name: rawName, ID: t.ID}
	ef.Tasks = append(ef.Tasks, et)
	fname := DomainFrag(g.framework, b.label)
	hasDI := g.framework == "marathon" && g.app != nil
	var di []diPort
	if hasDI {
		di = discoveryPorts(g.app, t)
	}
	names := []string{b.label(rawName)}
	if hasDI {
		// Mesos-DNS's legacy copy under the raw DiscoveryInfo name
		// ("whereisbot.ssk2"), generated before the sanitised one.
		if legacy := legacyName(rawName); legacy != "" && legacy != names[0] {
			names = []string{legacy, names[0]}
		}
	}
	if g.framework == "chronos" {
		// Chronos names its Mesos tasks "ChronosTask:<job>", which Mesos-DNS
		// turns into chronostask<job> (':' is dropped); weft also answers
		// <job> itself.
		names = append(names, b.label("ChronosTask:"+rawName))
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		ctx.name = n
		b.taskContext(ctx, t, fname, hasDI, di, shared, et)
	}
	// PTR for a task's own overlay address.
	if ctx.taskIP.IsValid() && b.inOverlay(ctx.taskIP) && ctx.taskIP != ctx.agentIP {
		suffix := "-" + ctx.hash + "-" + ctx.agent
		canon := cut(b.label(rawName), 63-len(suffix)) + suffix + "." + fname + "." + b.zone
		b.add(Record{Name: reverseName(ctx.taskIP), Type: mdns.TypePTR, Target: canon, Site: ctx.site}, nil)
	}
}

func validName(n string) bool {
	if len(n) > 253 || n == "" || n[len(n)-1] != '.' {
		return false
	}
	if n == "." {
		return true
	}
	start := 0
	for i := 0; i < len(n); i++ {
		if n[i] == '.' {
			if l := i - start; l == 0 || l > 63 {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// cut shortens a label to at most n characters, never ending in '-'.
func cut(l string, n int) string {
	if len(l) <= n {
		return l
	}
	return strings.TrimRight(l[:n], "-")
}

// cutLast applies cut to the last label of a dotted name.
func cutLast(name string, n int) string {
	i := strings.LastIndexByte(name, '.')
	return name[:i+1] + cut(name[i+1:], n)
}

// legacyName is the raw DiscoveryInfo name when it is usable as a dotted
// DNS name (lower case letters, digits, '-' and non-empty labels); else "".
func legacyName(raw string) string {
	raw = strings.ToLower(raw)
	if raw == "" || len(raw) > 200 {
		return ""
	}
	for _, l := range strings.Split(raw, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return ""
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return ""
			}
		}
	}
	return raw
}

// taskContext is Mesos-DNS's taskContextRecord for one task name.
func (b *builder) taskContext(c taskCtx, t *api.Task, fname string, hasDI bool, di []diPort, shared bool, et *EnumTask) {
	tail := "." + b.zone
	// A 63-character task label leaves no room for "-<hash>-<agent>" or a
	// leading "_": weft shortens the task label inside those two labels
	// (Mesos-DNS emitted invalid names).
	suffix := "-" + c.hash + "-" + c.agent
	canonical := cutLast(c.name, 63-len(suffix)) + suffix + "." + fname
	arec := c.name + "." + fname
	srvName := "_" + cutLast(c.name, 62)
	taskIP := c.taskIP
	if !taskIP.IsValid() {
		taskIP = c.agentIP
	}
	if shared {
		b.addIP(arec+tail, taskIP, c.site, et)
	}
	b.addIP(canonical+tail, taskIP, c.site, et)
	if shared {
		b.addIP(arec+".slave"+tail, c.agentIP, c.site, et)
	}
	b.addIP(canonical+".slave"+tail, c.agentIP, c.site, et)
	if !shared {
		return
	}
	srv := func(name, target string, port int) {
		if port <= 0 || port > 65535 {
			return
		}
		b.add(Record{Name: name, Type: mdns.TypeSRV, Target: target, Port: uint16(port), Site: c.site}, et)
	}
	subdomains := []string{".slave", ""}
	if hasDI {
		subdomains = subdomains[:1]
	}
	slaveHost := canonical + ".slave" + tail
	for _, port := range t.Ports {
		for _, proto := range []string{"_tcp", "_udp"} {
			for _, sub := range subdomains {
				srv(srvName+"."+proto+"."+fname+sub+tail, slaveHost, port)
			}
		}
	}
	for _, p := range di {
		proto := RFC1123(p.protocol)
		name := srvName + "._" + proto + "." + fname + tail
		srv(name, canonical+tail, p.number)
		if pn := b.label(p.name); pn != "" {
			srv("_"+pn+"."+name, canonical+tail, p.number)
		}
	}
	// Site-scoped names (weft's own): the same A and SRV records under
	// "site-<site>" between the framework and the domain, for the tasks
	// of that site only: biserver.marathon.site-london.pcm,
	// _biserver._tcp.marathon.site-london.pcm. Mesos-DNS puts nothing but
	// "slave" in that place, and group paths only lengthen the first
	// label (AppHostname), so no Mesos-DNS name can take this form.
	site := b.label(c.site)
	if site == "" {
		return
	}
	stail := "." + siteLabelPrefix + site + tail
	b.addIP(arec+stail, taskIP, c.site, et)
	for _, port := range t.Ports {
		for _, proto := range []string{"_tcp", "_udp"} {
			if !hasDI {
				srv(srvName+"."+proto+"."+fname+stail, slaveHost, port)
			}
		}
	}
	for _, p := range di {
		name := srvName + "._" + RFC1123(p.protocol) + "." + fname + stail
		srv(name, canonical+tail, p.number)
	}
}

// siteLabelPrefix starts the label of a site-scoped name.
const siteLabelPrefix = "site-"
