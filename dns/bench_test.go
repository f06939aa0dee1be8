package dns

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/sched/api"
)

func benchState(apps int) *api.State {
	st := &api.State{Index: 1, Leader: "10.47.1.1:8080", Nodes: baseNodes()}
	agents := []string{agentA, agentB, agentC}
	for a := 0; a < apps; a++ {
		id := "/app-" + strconv.Itoa(a)
		st.Apps = append(st.Apps, &api.App{ID: id, PortDefinitions: []api.PortDefinition{{Port: 10000 + a}}})
		for k := 0; k < 3; k++ {
			st.Tasks = append(st.Tasks, &api.Task{ID: fmt.Sprintf("app-%d.%d", a, k), AppID: id, SlaveID: agents[k],
				State: api.TaskRunning, Ports: []int{20000 + a}, Framework: "marathon"})
		}
	}
	return st
}

func BenchmarkBuildRecords(b *testing.B) {
	st := benchState(1000)
	cfg := DefaultRecordConfig()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		BuildRecords(st, cfg)
	}
}

func BenchmarkHandle(b *testing.B) {
	s := fuzzServer(b)
	w := newWorker()
	var qs [][]byte
	for _, n := range []string{"whereisbot-ssk2.marathon.pcm.", "nope.marathon.pcm."} {
		m := new(mdns.Msg)
		m.SetQuestion(n, mdns.TypeA)
		p, _ := m.Pack()
		qs = append(qs, p)
	}
	m := new(mdns.Msg)
	m.SetQuestion("_whereisbot-ssk2._tcp.marathon.pcm.", mdns.TypeSRV)
	p, _ := m.Pack()
	qs = append(qs, p)
	client := netip.MustParseAddr("10.47.3.9")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if s.handle(w, qs[i%len(qs)], client, false) != actRespond {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkSetStateOneTask: what a one-task change costs the server (the
// table updated incrementally), against BenchmarkBuildRecords's rebuild.
func BenchmarkSetStateOneTask(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.closeAll(); s.closeUDP() }()
	st := benchState(1000)
	s.SetState(st)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		next := *st
		next.Index++
		next.Tasks = append([]*api.Task(nil), st.Tasks...)
		k := 3*(i%1000) + 2
		tk := *next.Tasks[k]
		if tk.State == api.TaskRunning {
			tk.State = api.TaskKilled
		} else {
			tk.State = api.TaskRunning
		}
		next.Tasks[k] = &tk
		s.SetState(&next)
		if !s.Table().patched {
			b.Fatal("rebuilt, not patched")
		}
		st = &next
	}
}

// BenchmarkSetStateOneTaskMirror is BenchmarkSetStateOneTask as a node
// runs it: each State comes from the watch's Mirror (which tells what
// changed); the Mirror's work is not timed.
func BenchmarkSetStateOneTaskMirror(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.closeAll(); s.closeUDP() }()
	st := benchState(1000)
	var m api.Mirror
	m.Apply(&api.Changes{Snapshot: true, Index: st.Index, Leader: st.Leader, Nodes: st.Nodes, Apps: vals(st.Apps), Tasks: vals(st.Tasks)})
	s.SetState(m.State())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := 3*(i%1000) + 2
		tk := *st.Tasks[k]
		if tk.State == api.TaskRunning {
			tk.State = api.TaskKilled
		} else {
			tk.State = api.TaskRunning
		}
		st.Tasks[k] = &tk
		b.StopTimer() // the Mirror's own work is not the server's
		m.Apply(&api.Changes{Index: st.Index + uint64(i) + 1, Leader: st.Leader, Tasks: []api.Task{tk}})
		next := m.State()
		b.StartTimer()
		s.SetState(next)
		if !s.Table().patched {
			b.Fatal("rebuilt, not patched")
		}
	}
}
