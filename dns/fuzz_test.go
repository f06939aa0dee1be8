package dns

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

// fuzzServer is a server with the golden states' records, never run: the
// fuzz target calls its packet handler directly.
func fuzzServer(t testing.TB) *Server {
	fuzzOnce.Do(func() {
		cfg := DefaultConfig()
		cfg.Listen = []string{"127.0.0.1:0"}
		cfg.Forward = true
		cfg.Upstreams = []string{"192.0.2.53:53"}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.closeAll()
		st := goldenStates()
		merged := *st["02-group-named-ports"]
		merged.Tasks = append(merged.Tasks, bigState(60).Tasks...)
		merged.Apps = append(merged.Apps, bigState(60).Apps...)
		s.SetState(&merged)
		fuzzSrv = s
	})
	return fuzzSrv
}

func seedQueries() [][]byte {
	var out [][]byte
	add := func(name string, qtype uint16, edns uint16, mod func(*mdns.Msg)) {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		if edns > 0 {
			m.SetEdns0(edns, true)
		}
		if mod != nil {
			mod(m)
		}
		b, err := m.Pack()
		if err == nil {
			out = append(out, b)
		}
	}
	add("whereisbot-ssk2.marathon.pcm.", mdns.TypeA, 0, nil)
	add("_http._whereisbot-ssk2._tcp.marathon.pcm.", mdns.TypeSRV, 1232, nil)
	add("big.marathon.pcm.", mdns.TypeA, 0, nil)
	add("big.marathon.pcm.", mdns.TypeANY, 4096, nil)
	add("nope.marathon.pcm.", mdns.TypeA, 0, nil)
	add("pcm.", mdns.TypeSOA, 0, nil)
	add("1.3.47.10.in-addr.arpa.", mdns.TypePTR, 0, nil)
	add("example.com.", mdns.TypeA, 0, nil)
	add("a\\.pcm.", mdns.TypeA, 0, nil)
	add("pcm.", mdns.TypeAXFR, 0, nil)
	add("x.pcm.", mdns.TypeA, 0, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify })
	add("x.pcm.", mdns.TypeA, 0, func(m *mdns.Msg) {
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: "x.pcm.", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: []byte{1, 2, 3, 4}})
	})
	// A compression-pointer loop, and a pointer to itself.
	out = append(out, []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1})
	out = append(out, []byte{0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 'a', 0xC0, 12, 0, 1, 0, 1, 0xC0, 14, 0, 41, 0, 0})
	return out
}

func FuzzHandle(f *testing.F) {
	for _, q := range seedQueries() {
		f.Add(q, false)
		f.Add(q, true)
	}
	f.Fuzz(func(t *testing.T, p []byte, tcp bool) {
		s := fuzzServer(t)
		w := newWorker()
		act := s.handle(w, p, netip.MustParseAddr("10.47.3.9"), tcp)
		if act != actRespond {
			return
		}
		if len(w.out) < hdrLen || len(p) < 2 || w.out[0] != p[0] || w.out[1] != p[1] {
			t.Fatalf("response % x to % x: not a response with the query's id", w.out, p)
		}
		m := new(mdns.Msg)
		if err := m.Unpack(w.out); err != nil {
			t.Fatalf("response does not parse: %v\n% x", err, w.out)
		}
		if !m.Response {
			t.Fatal("QR not set")
		}
		if !tcp {
			limit := 512
			var q query
			var key [maxKeyLen + 8]byte
			if parseQuery(p, s.zoneWire, &q, key[:]) && q.edns && q.udpSize > 512 {
				limit = int(q.udpSize)
			}
			if len(w.out) > limit {
				t.Fatalf("%d-byte UDP response over the %d-byte limit", len(w.out), limit)
			}
		}
	})
}

func FuzzBuildRecords(f *testing.F) {
	names := make([]string, 0)
	for n := range goldenStates() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, _ := json.Marshal(goldenStates()[n])
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st api.State
		if json.Unmarshal(b, &st) != nil {
			return
		}
		tab := BuildRecords(&st, DefaultRecordConfig())
		for _, r := range tab.Records() {
			if !validName(r.Name) {
				t.Fatalf("invalid owner %q", r.Name)
			}
			if rr := tab.RR(r); rr == nil {
				t.Fatalf("record %+v has no RR form", r)
			} else if _, err := mdns.NewRR(rr.String()); err != nil {
				t.Fatalf("record %q does not parse: %v", rr.String(), err)
			}
		}
		// Every compiled answer must be a well-formed DNS message.
		w := newWorker()
		i := 0
		for name, e := range tab.names.all() {
			if i++; i > 200 {
				break
			}
			for _, typ := range []uint16{mdns.TypeA, mdns.TypeSRV, mdns.TypeANY} {
				a := e.get(typ)
				if a == nil {
					continue
				}
				m := new(mdns.Msg)
				m.SetQuestion(name, typ)
				p, err := m.Pack()
				if err != nil {
					continue
				}
				var key [maxKeyLen + 8]byte
				if !parseQuery(p, tab.zoneWire, &w.q, key[:]) {
					t.Fatalf("own query for %q not parsed", name)
				}
				w.answerTable(p, &w.q, tab, a, 0, 65535, 0)
				r := new(mdns.Msg)
				if err := r.Unpack(w.out); err != nil {
					t.Fatalf("answer for %q %s does not parse: %v", name, mdns.TypeToString[typ], err)
				}
				if len(r.Answer) != len(a.records) {
					t.Fatalf("answer for %q: %d records, want %d", name, len(r.Answer), len(a.records))
				}
			}
		}
	})
}

// TestWriteFuzzCorpus refreshes testdata/fuzz/* from the seeds with -update.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seed corpus")
	}
	write := func(target string, i int, vals ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + strings.Join(vals, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, q := range seedQueries() {
		write("FuzzHandle", i, "[]byte("+strconv.Quote(string(q))+")", "bool("+strconv.FormatBool(i%2 == 1)+")")
	}
	names := make([]string, 0)
	for n := range goldenStates() {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		b, _ := json.Marshal(goldenStates()[n])
		write("FuzzBuildRecords", i, "[]byte("+strconv.Quote(string(b))+")")
	}
}
