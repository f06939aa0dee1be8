package dns

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"
)

// Table is a compiled record table: every record of a cluster state and, per
// (name, type), the answer already encoded in DNS wire format, so serving a
// query is one map lookup, a shuffle and a copy.
type Table struct {
	cfg      RecordConfig
	zone     string // "pcm."
	zoneWire []byte // "\x03pcm\x00"
	records  []Record
	enum     []*EnumFramework
	names    nameMap
	sites    map[string]uint16 // site name → id (0 = no site)
	nodeSite map[netip.Addr]uint16
	block24  map[[3]byte]uint16
	arena    []byte // backing store of the encoded records
	count    int    // records in the table
	sortOnce sync.Once
	sorted   []Record
	// patched tables (see patch) keep no record list: Records and
	// Enumerate compute theirs from names and groups.
	patched  bool
	groups   []*groupOut // by key
	enumOnce sync.Once
}

// entry is everything a name has. A name that exists only because names
// below it exist (an empty non-terminal) has an entry with no answers:
// queries get NODATA, not NXDOMAIN.
type entry struct {
	a, aaaa, srv, ptr, ns, soa, any *answer
}

func (e *entry) get(qtype uint16) *answer {
	switch qtype {
	case mdns.TypeA:
		return e.a
	case mdns.TypeAAAA:
		return e.aaaa
	case mdns.TypeSRV:
		return e.srv
	case mdns.TypePTR:
		return e.ptr
	case mdns.TypeNS:
		return e.ns
	case mdns.TypeSOA:
		return e.soa
	case mdns.TypeANY:
		return e.any
	}
	return nil
}

// answer is one precompiled answer: resource records encoded for a response
// whose question is this name at offset 12 (owners are the pointer 0xC00C,
// names inside the zone are compressed against the zone suffix of the
// question), so records can be reordered freely.
type answer struct {
	records []Record
	rrs     [][]byte // one encoded RR per record
	site    []uint16 // site id per rr
	extra   [][]byte // additional section: addresses of SRV targets
	nsites  int      // distinct sites among rrs
}

func newTable(cfg RecordConfig, records []Record, enum []*EnumFramework) *Table {
	t := &Table{
		cfg:      cfg,
		zone:     cfg.Domain + ".",
		records:  records,
		enum:     enum,
		names:    newNameMap(0),
		sites:    map[string]uint16{},
		nodeSite: map[netip.Addr]uint16{},
		block24:  map[[3]byte]uint16{},
	}
	t.zoneWire = nameWire(t.zone)
	// Group the records by name (first-seen order), each group sorted by
	// type and value; sorting everything by name is left to Records.
	groups := make(map[string][]int32, len(records)/2+1)
	var order []string
	for i := range records {
		n := records[i].Name
		g, ok := groups[n]
		if !ok {
			order = append(order, n)
		}
		groups[n] = append(g, int32(i))
	}
	t.records = make([]Record, 0, len(records)+1)
	for _, n := range order {
		start := len(t.records)
		for _, i := range groups[n] {
			t.records = append(t.records, records[i])
		}
		slices.SortFunc(t.records[start:], compareRecords)
	}
	soa := Record{Name: t.zone, Type: mdns.TypeSOA}
	t.records = slices.Insert(t.records, 0, soa)

	for _, r := range t.records {
		if r.Site != "" {
			if _, ok := t.sites[r.Site]; !ok {
				t.sites[r.Site] = uint16(len(t.sites) + 1)
			}
		}
	}
	// Records are sorted by name then type: walk the runs. Addresses first,
	// so SRV answers can take their targets' addresses.
	type run struct {
		name       string
		start, end int
	}
	var runs []run
	for i := 0; i < len(t.records); {
		j := i + 1
		for j < len(t.records) && t.records[j].Name == t.records[i].Name {
			j++
		}
		runs = append(runs, run{t.records[i].Name, i, j})
		i = j
	}
	t.names = newNameMap(len(runs) + len(runs)/4)
	t.arena = make([]byte, 0, 40*len(t.records))
	for _, pass := range []int{0, 1} {
		for _, r := range runs {
			t.compileName(t.entryFor(r.name), r.name, t.records[r.start:r.end], pass)
		}
	}
	t.count = len(t.records)
	return t
}

// compileName compiles the answers of name from its records rs (sorted by
// type): pass 0 the addresses, pass 1 the rest (SRV answers take their
// targets' addresses, compiled in pass 0) and ANY.
func (t *Table) compileName(e *entry, name string, rs []Record, pass int) {
	zoneOff := t.zoneOffset(name)
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].Type == rs[i].Type {
			j++
		}
		typ, sel := rs[i].Type, rs[i:j:j]
		i = j
		isAddr := typ == mdns.TypeA || typ == mdns.TypeAAAA
		if isAddr != (pass == 0) {
			continue
		}
		a := t.compile(sel, zoneOff)
		switch typ {
		case mdns.TypeSOA:
			e.soa = a
		case mdns.TypeNS:
			e.ns = a
		case mdns.TypeA:
			e.a = a
		case mdns.TypeAAAA:
			e.aaaa = a
		case mdns.TypeSRV:
			e.srv = a
		case mdns.TypePTR:
			e.ptr = a
		}
	}
	if pass == 1 {
		e.any = anyAnswer(e)
	}
}

// SetNodes tells the table which client addresses belong to which site, so
// answers can put the querying node's site first. It must be called before
// the table is served.
func (t *Table) setNodeSites(nodes map[netip.Addr]string, blocks map[netip.Prefix]string) {
	id := func(s string) uint16 {
		if s == "" {
			return 0
		}
		if v, ok := t.sites[s]; ok {
			return v
		}
		v := uint16(len(t.sites) + 1)
		t.sites[s] = v
		return v
	}
	for ip, s := range nodes {
		t.nodeSite[ip] = id(s)
	}
	for p, s := range blocks {
		if p.Addr().Is4() && p.Bits() >= 24 {
			a := p.Addr().As4()
			t.block24[[3]byte{a[0], a[1], a[2]}] = id(s)
		}
	}
}

func (t *Table) siteOf(ip netip.Addr, def uint16) uint16 {
	if s, ok := t.nodeSite[ip]; ok {
		return s
	}
	if ip.Is4() {
		a := ip.As4()
		if s, ok := t.block24[[3]byte{a[0], a[1], a[2]}]; ok {
			return s
		}
	}
	return def
}

func compareRecords(a, b Record) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(typeOrder(a.Type), typeOrder(b.Type)),
		a.IP.Compare(b.IP), cmp.Compare(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
}

func typeOrder(t uint16) int {
	switch t {
	case mdns.TypeSOA:
		return 0
	case mdns.TypeNS:
		return 1
	}
	return int(t) + 2
}

// entryFor returns the entry of name, creating it and the empty
// non-terminals between it and the zone apex.
func (t *Table) entryFor(name string) *entry {
	e := t.names.get(name)
	if e == nil {
		e = &entry{}
		t.names.set(name, e)
	}
	if t.zoneOffset(name) > 0 {
		for n := name; n != t.zone; {
			i := strings.IndexByte(n, '.')
			if i < 0 || i == len(n)-1 {
				break
			}
			n = n[i+1:]
			if t.names.has(n) {
				continue
			}
			t.names.set(n, &entry{})
		}
	}
	return e
}

// zoneOffset is where the zone suffix of name starts in a response whose
// question is name (at offset 12), or 0 when name is outside the zone.
func (t *Table) zoneOffset(name string) int {
	if name == t.zone {
		return 12
	}
	if !strings.HasSuffix(name, "."+t.zone) {
		return 0
	}
	return 12 + len(name) + 1 - len(t.zoneWire) // plain labels: wire length is len(name)+1
}

func (t *Table) compile(rs []Record, zoneOff int) *answer {
	a := &answer{records: rs, rrs: make([][]byte, 0, len(rs)), site: make([]uint16, 0, len(rs))}
	var sites [8]uint16
	ns := 0
	for k, r := range rs {
		start := len(t.arena)
		t.arena = append(t.arena, 0xC0, 12)
		t.arena = t.encode(t.arena, r, nil, zoneOff)
		a.rrs = append(a.rrs, t.arena[start:len(t.arena):len(t.arena)])
		s := t.sites[r.Site]
		a.site = append(a.site, s)
		if ns < len(sites) && !slices.Contains(sites[:ns], s) {
			sites[ns] = s
			ns++
		}
		if r.Type != mdns.TypeSRV || slices.ContainsFunc(rs[:k], func(x Record) bool { return x.Target == r.Target }) {
			continue
		}
		// Like Mesos-DNS: the first A and the first AAAA of the target.
		e := t.names.get(r.Target)
		if e == nil {
			continue
		}
		for _, x := range []*answer{e.a, e.aaaa} {
			if x == nil {
				continue
			}
			start := len(t.arena)
			t.arena = appendName(t.arena, x.records[0].Name, t.zone, zoneOff)
			t.arena = t.encode(t.arena, x.records[0], nil, zoneOff)
			a.extra = append(a.extra, t.arena[start:len(t.arena):len(t.arena)])
		}
	}
	a.nsites = ns
	return a
}

// anyAnswer shares the encoded records of every type of the entry.
func anyAnswer(e *entry) *answer {
	all := [...]*answer{e.soa, e.ns, e.a, e.aaaa, e.srv, e.ptr}
	var only *answer
	n := 0
	for _, x := range all {
		if x != nil {
			only = x
			n++
		}
	}
	if n <= 1 {
		return only
	}
	a := &answer{}
	sites := map[uint16]bool{}
	for _, x := range all {
		if x == nil {
			continue
		}
		a.records = append(a.records, x.records...)
		a.rrs = append(a.rrs, x.rrs...)
		a.site = append(a.site, x.site...)
		a.extra = append(a.extra, x.extra...)
		for _, s := range x.site {
			sites[s] = true
		}
	}
	a.nsites = len(sites)
	return a
}

// encode appends the wire form of r with the given encoded owner.
func (t *Table) encode(b []byte, r Record, owner []byte, zoneOff int) []byte {
	b = append(b, owner...)
	b = binary.BigEndian.AppendUint16(b, r.Type)
	b = binary.BigEndian.AppendUint16(b, mdns.ClassINET)
	b = binary.BigEndian.AppendUint32(b, t.cfg.TTL)
	lenAt := len(b)
	b = append(b, 0, 0)
	switch r.Type {
	case mdns.TypeA:
		a := r.IP.As4()
		b = append(b, a[:]...)
	case mdns.TypeAAAA:
		a := r.IP.As16()
		b = append(b, a[:]...)
	case mdns.TypeSRV:
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint16(b, t.cfg.SRVWeight)
		b = binary.BigEndian.AppendUint16(b, r.Port)
		b = appendName(b, r.Target, t.zone, zoneOff)
	case mdns.TypePTR, mdns.TypeNS:
		b = appendName(b, r.Target, t.zone, zoneOff)
	case mdns.TypeSOA:
		b = appendName(b, t.cfg.SOAMname, t.zone, zoneOff)
		b = appendName(b, t.cfg.SOARname, t.zone, zoneOff)
		b = binary.BigEndian.AppendUint32(b, t.cfg.Serial)
		b = binary.BigEndian.AppendUint32(b, t.cfg.SOARefresh)
		b = binary.BigEndian.AppendUint32(b, t.cfg.SOARetry)
		b = binary.BigEndian.AppendUint32(b, t.cfg.SOAExpire)
		b = binary.BigEndian.AppendUint32(b, t.cfg.TTL)
	}
	binary.BigEndian.PutUint16(b[lenAt:], uint16(len(b)-lenAt-2))
	return b
}

// appendSOA appends the zone's SOA as an authority record of a response
// whose zone suffix sits at zoneOff.
func (t *Table) appendSOA(b []byte, zoneOff int) []byte {
	owner := []byte{0xC0 | byte(zoneOff>>8), byte(zoneOff)}
	return t.encode(b, Record{Name: t.zone, Type: mdns.TypeSOA}, owner, zoneOff)
}

// nameWire is the uncompressed wire form of a fully qualified name made of
// plain labels.
func nameWire(name string) []byte { return appendName(nil, name, "", 0) }

// appendName writes name, ending in a compression pointer to zoneOff when
// name is inside zone and zoneOff > 0.
func appendName(b []byte, name, zone string, zoneOff int) []byte {
	prefix := name
	compress := false
	if zoneOff > 0 && zone != "" {
		if name == zone {
			return append(b, 0xC0|byte(zoneOff>>8), byte(zoneOff))
		}
		if len(name) > len(zone) && name[len(name)-len(zone)-1] == '.' && name[len(name)-len(zone):] == zone {
			prefix = name[:len(name)-len(zone)]
			compress = true
		}
	}
	for len(prefix) > 0 {
		i := strings.IndexByte(prefix, '.')
		if i < 0 {
			i = len(prefix)
		}
		if i > 0 {
			b = append(b, byte(i))
			b = append(b, prefix[:i]...)
		}
		if i == len(prefix) {
			break
		}
		prefix = prefix[i+1:]
	}
	if compress {
		return append(b, 0xC0|byte(zoneOff>>8), byte(zoneOff))
	}
	return append(b, 0)
}

// Records returns every record of the table: the SOA, then the rest sorted
// by name, type and value. Do not modify the slice.
func (t *Table) Records() []Record {
	t.sortOnce.Do(func() {
		if t.patched {
			t.sorted = make([]Record, 0, t.count)
			for _, e := range t.names.all() {
				for _, a := range [...]*answer{e.soa, e.ns, e.a, e.aaaa, e.srv, e.ptr} {
					if a != nil {
						t.sorted = append(t.sorted, a.records...)
					}
				}
			}
			slices.SortFunc(t.sorted, func(a, b Record) int {
				if as, bs := a.Type == mdns.TypeSOA && a.Name == t.zone, b.Type == mdns.TypeSOA && b.Name == t.zone; as != bs {
					if as {
						return -1
					}
					return 1
				}
				return compareRecords(a, b)
			})
			return
		}
		t.sorted = slices.Clone(t.records)
		slices.SortFunc(t.sorted[1:], compareRecords) // the SOA stays first
	})
	return t.sorted
}

// Enumerate returns Mesos-DNS's /v1/enumerate data.
func (t *Table) Enumerate() []*EnumFramework {
	t.enumOnce.Do(func() {
		if !t.patched {
			return
		}
		byName := map[string]*EnumFramework{}
		for _, g := range t.groups {
			ef := byName[g.fw]
			if ef == nil {
				ef = &EnumFramework{Name: g.fw, Tasks: []*EnumTask{}}
				byName[g.fw] = ef
				t.enum = append(t.enum, ef)
			}
			ef.Tasks = append(ef.Tasks, g.enum...)
		}
		slices.SortFunc(t.enum, func(a, c *EnumFramework) int { return cmp.Compare(a.Name, c.Name) })
	})
	out := make([]*EnumFramework, 0, len(t.enum))
	for _, f := range t.enum {
		nf := &EnumFramework{Name: f.Name, Tasks: make([]*EnumTask, 0, len(f.Tasks))}
		for _, et := range f.Tasks {
			nt := &EnumTask{Name: et.Name, ID: et.ID, Records: make([]EnumRecord, 0, len(et.recs))}
			for _, r := range et.recs {
				nt.Records = append(nt.Records, EnumRecord{Name: r.Name, Host: r.Value(), Rtype: mdns.TypeToString[r.Type]})
			}
			nf.Tasks = append(nf.Tasks, nt)
		}
		out = append(out, nf)
	}
	return out
}

// Lookup returns the records of name and type (mdns.TypeANY for all), and
// whether the name exists at all.
func (t *Table) Lookup(name string, qtype uint16) ([]Record, bool) {
	e := t.names.get(mdns.Fqdn(strings.ToLower(name)))
	if e == nil {
		return nil, false
	}
	if a := e.get(qtype); a != nil {
		return a.records, true
	}
	return nil, true
}

// RR converts a record to a miekg/dns resource record.
func (t *Table) RR(r Record) mdns.RR {
	h := mdns.RR_Header{Name: r.Name, Rrtype: r.Type, Class: mdns.ClassINET, Ttl: t.cfg.TTL}
	switch r.Type {
	case mdns.TypeA:
		return &mdns.A{Hdr: h, A: r.IP.AsSlice()}
	case mdns.TypeAAAA:
		return &mdns.AAAA{Hdr: h, AAAA: r.IP.AsSlice()}
	case mdns.TypeSRV:
		return &mdns.SRV{Hdr: h, Priority: 0, Weight: t.cfg.SRVWeight, Port: r.Port, Target: r.Target}
	case mdns.TypePTR:
		return &mdns.PTR{Hdr: h, Ptr: r.Target}
	case mdns.TypeNS:
		return &mdns.NS{Hdr: h, Ns: r.Target}
	case mdns.TypeSOA:
		return &mdns.SOA{Hdr: h, Ns: t.cfg.SOAMname, Mbox: t.cfg.SOARname, Serial: t.cfg.Serial,
			Refresh: t.cfg.SOARefresh, Retry: t.cfg.SOARetry, Expire: t.cfg.SOAExpire, Minttl: t.cfg.TTL}
	}
	return nil
}

// ZoneText is the table as zone-file lines, one record per line with single
// spaces ("biserver.marathon.pcm. 5 IN A 10.47.3.1"), sorted.
func (t *Table) ZoneText() string {
	var sb strings.Builder
	for _, r := range t.Records() {
		sb.WriteString(strings.Join(strings.Fields(t.RR(r).String()), " "))
		sb.WriteByte('\n')
	}
	return sb.String()
}
