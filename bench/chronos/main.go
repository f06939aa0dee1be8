// Command chronos benchmarks the chronos framework in-process, through the
// real raft store, the real allocator and the master's agent API, with fake
// agents that acknowledge tasks over HTTP as real agents do:
//
//   - trigger jitter: how late after its scheduled instant a run's task
//     reaches an agent (target p99 <= 1 s);
//   - dependent start: how long after the last parent's TASK_FINISHED the
//     dependant's task reaches an agent (target <= 1 s; Chronos's
//     task_epsilon defaults to 60 s and its dependency trigger is an
//     in-memory event lost on failover);
//   - scale: 1,000 scheduled jobs over several periods with no missed run.
//
// Chronos itself (JVM, Mesos master, ZooKeeper) cannot run here, so there is
// no peer: every figure is absolute, against its target. (Chronos's
// task_epsilon, 60 s by default, is a lateness tolerance, not a latency, and
// is no comparison point.)
//
//	go run ./bench/chronos [-jobs 1000] [-periods 3] [-disk]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/chronos"
)

func main() {
	jobs := flag.Int("jobs", 1000, "scheduled jobs in the scale test")
	periods := flag.Int("periods", 3, "runs of each job in the scale test")
	jitterJobs := flag.Int("jitter-jobs", 200, "jobs in the jitter test")
	chains := flag.Int("chains", 50, "parent → dependant pairs in the dependency test")
	disk := flag.Bool("disk", true, "keep the raft log on disk, as weft up does (false: in memory)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	log.SetFlags(0)
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}

	b, err := start(*disk)
	if err != nil {
		log.Fatal(err)
	}
	defer b.close()

	jit := b.jitter(*jitterJobs)
	dep := b.dependents(*chains)
	sc := b.scale(*jobs, *periods)

	fmt.Println()
	fmt.Printf("trigger jitter      p50 %-8v p99 %-8v max %-8v  (n=%d)  target p99 <= 1s: %.2fx of budget\n",
		ms(pct(jit, .5)), ms(pct(jit, .99)), ms(pct(jit, 1)), len(jit), float64(pct(jit, .99))/float64(time.Second))
	fmt.Printf("dependent start     p50 %-8v p99 %-8v max %-8v  (n=%d)  target <= 1s: %.2fx of budget\n",
		ms(pct(dep, .5)), ms(pct(dep, .99)), ms(pct(dep, 1)), len(dep), float64(pct(dep, .99))/float64(time.Second))
	fmt.Printf("scale               %d jobs x %d periods: %d runs expected, %d succeeded, %d skipped, %d missing, %d duplicated; jitter p99 %v\n",
		*jobs, *periods, sc.expected, sc.succeeded, sc.skipped, sc.missing, sc.duplicated, ms(pct(sc.jitter, .99)))
	ok := pct(jit, .99) <= time.Second && pct(dep, .99) <= time.Second && sc.missing == 0 && sc.skipped == 0 && sc.duplicated == 0
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	benchkit.EmitRow(benchkit.Row{Bench: "chronos", Figure: "trigger jitter p99", Weft: ms(pct(jit, .99)).String(), Peer: benchkit.NoPeer, Target: "≤ 1s", Met: pct(jit, .99) <= time.Second})
	benchkit.EmitRow(benchkit.Row{Bench: "chronos", Figure: "dependent start p99", Weft: ms(pct(dep, .99)).String(), Peer: benchkit.NoPeer, Target: "≤ 1s", Met: pct(dep, .99) <= time.Second})
	benchkit.EmitRow(benchkit.Row{Bench: "chronos", Figure: fmt.Sprintf("%d jobs × %d periods: runs missed, skipped or duplicated", *jobs, *periods),
		Weft: fmt.Sprint(sc.missing + sc.skipped + sc.duplicated), Peer: benchkit.NoPeer, Target: "0", Met: sc.missing+sc.skipped+sc.duplicated == 0})
	fmt.Printf("SUMMARY chronos: %s — trigger jitter p99 %v, dependant start p99 %v, %d/%d runs of %d jobs with none missed or duplicated\n",
		verdict, ms(pct(jit, .99)), ms(pct(dep, .99)), sc.succeeded, sc.expected, *jobs)
	if !ok {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func ms(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

func pct(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, k int) bool { return s[i] < s[k] })
	i := int(p*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

type bench struct {
	m      *sched.Master
	f      *chronos.Framework
	client *api.Client
	agents []*agent
	cancel context.CancelFunc
	done   chan error
	srv    *http.Server
	dir    string
}

func start(disk bool) (*bench, error) {
	var nodes []api.Node
	for i := 0; i < 4; i++ {
		nodes = append(nodes, api.Node{ID: fmt.Sprintf("agent-%d", i), Name: fmt.Sprintf("agent-%d", i), Role: api.RoleAgent,
			Site: "home", Status: "alive", Address: "127.0.0.1", Resources: api.Resources{Cpus: 64, Mem: 1 << 20, Disk: 1 << 30}})
	}
	b := &bench{done: make(chan error, 1)}
	mc := sched.DefaultMasterConfig()
	mc.Store.Dir = ""
	if disk {
		dir, err := os.MkdirTemp("", "weft-bench-chronos-")
		if err != nil {
			return nil, err
		}
		b.dir, mc.Store.Dir = dir, dir
	}
	mc.Members = sched.NewStaticMembers(nodes...)
	cfg := chronos.DefaultConfig()
	cfg.FailureRetry = time.Second
	b.f = chronos.New(cfg)
	mc.Frameworks = []sched.Framework{b.f}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mc.APIAdvertise = ln.Addr().String()
	m, err := sched.NewMaster(mc)
	if err != nil {
		return nil, err
	}
	b.m = m
	b.srv = &http.Server{Handler: m.Handler()}
	go b.srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() { b.done <- m.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); !m.Store().IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the master never led")
		}
	}
	b.client = api.NewClient(ln.Addr().String())
	for _, n := range nodes {
		a := &agent{id: n.ID, client: b.client, hold: 100 * time.Millisecond, seen: map[string]time.Time{}, finished: map[string]time.Time{}}
		b.agents = append(b.agents, a)
		go a.run(ctx)
	}
	return b, nil
}

func (b *bench) close() {
	b.cancel()
	b.srv.Close()
	<-b.done
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// seen returns when a task first reached an agent.
func (b *bench) seen(taskID string) (time.Time, bool) {
	for _, a := range b.agents {
		a.mu.Lock()
		t, ok := a.seen[taskID]
		a.mu.Unlock()
		if ok {
			return t, true
		}
	}
	return time.Time{}, false
}

func (b *bench) finished(taskID string) (time.Time, bool) {
	for _, a := range b.agents {
		a.mu.Lock()
		t, ok := a.finished[taskID]
		a.mu.Unlock()
		if ok {
			return t, true
		}
	}
	return time.Time{}, false
}

func (b *bench) put(j api.Job) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.client.PutJob(ctx, &j); err != nil {
		log.Fatalf("adding %s: %v", j.Name, err)
	}
}

func (b *bench) runs() []api.JobRun {
	var out []api.JobRun
	for _, e := range b.m.Store().List(sched.TableJobRuns) {
		out = append(out, *e.Value.(*api.JobRun))
	}
	return out
}

func (b *bench) waitRuns(what string, d time.Duration, cond func([]api.JobRun) bool) []api.JobRun {
	deadline := time.Now().Add(d)
	for {
		rs := b.runs()
		if cond(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			log.Printf("%s: gave up after %v", what, d)
			return rs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func parse(ts string) time.Time { t, _ := time.Parse(time.RFC3339Nano, ts); return t }

// jitter: n jobs, each due once at its own instant spread over 5 s.
func (b *bench) jitter(n int) []time.Duration {
	log.Printf("jitter: %d one-shot jobs due over 5 s", n)
	base := time.Now().Add(3 * time.Second).Truncate(time.Millisecond)
	names := map[string]bool{}
	for i := 0; i < n; i++ {
		at := base.Add(time.Duration(i) * 5 * time.Second / time.Duration(n))
		name := fmt.Sprintf("jit-%04d", i)
		names[name] = true
		b.put(api.Job{Name: name, Command: "true", Shell: true, Cpus: 0.1, Mem: 32, Disk: 1,
			Schedule: "R1/" + at.UTC().Format("2006-01-02T15:04:05.000Z") + "/PT1H"})
	}
	rs := b.waitRuns("jitter", 30*time.Second, func(rs []api.JobRun) bool {
		k := 0
		for _, r := range rs {
			if names[r.Job] && r.State == chronos.RunSucceeded {
				k++
			}
		}
		return k == n
	})
	var out []time.Duration
	for _, r := range rs {
		if !names[r.Job] || r.TaskID == "" {
			continue
		}
		if t, ok := b.seen(r.TaskID); ok {
			out = append(out, t.Sub(parse(r.ScheduledAt)))
		}
	}
	return out
}

// dependents: n parents finish one by one; each dependant's start is timed
// from its parent's TASK_FINISHED report.
func (b *bench) dependents(n int) []time.Duration {
	log.Printf("dependent start: %d parent → dependant pairs", n)
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("dep-parent-%03d", i)
		b.put(api.Job{Name: p, Command: "true", Shell: true, Cpus: 0.1, Mem: 32, Disk: 1, Schedule: "R1/" +
			time.Now().Add(2*time.Second+time.Duration(i)*60*time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z") + "/PT1H"})
		b.put(api.Job{Name: fmt.Sprintf("dep-child-%03d", i), Command: "true", Shell: true, Cpus: 0.1, Mem: 32, Disk: 1, Parents: []string{p}})
	}
	rs := b.waitRuns("dependents", 30*time.Second, func(rs []api.JobRun) bool {
		k := 0
		for _, r := range rs {
			if len(r.Job) > 10 && r.Job[:10] == "dep-child-" && r.State == chronos.RunSucceeded {
				k++
			}
		}
		return k == n
	})
	parentTask := map[string]string{}
	for _, r := range rs {
		if len(r.Job) > 11 && r.Job[:11] == "dep-parent-" {
			parentTask[r.Job[11:]] = r.TaskID
		}
	}
	var out []time.Duration
	for _, r := range rs {
		if len(r.Job) > 10 && r.Job[:10] == "dep-child-" {
			fin, ok1 := b.finished(parentTask[r.Job[10:]])
			st, ok2 := b.seen(r.TaskID)
			if ok1 && ok2 {
				out = append(out, st.Sub(fin))
			}
		}
	}
	return out
}

type scaleResult struct {
	expected, succeeded, skipped, missing, duplicated int
	jitter                                            []time.Duration
}

// scale: jobs scheduled every 10 s for periods runs each, all at once.
func (b *bench) scale(jobs, periods int) scaleResult {
	log.Printf("scale: %d jobs every 10 s, %d runs each", jobs, periods)
	// Leave time to submit every job before the first is due.
	start := time.Now().Add(5*time.Second + time.Duration(jobs)*15*time.Millisecond).Truncate(time.Second)
	t0 := time.Now()
	// Eight clients submit side by side, as a deploy pipeline would.
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b.put(api.Job{Name: fmt.Sprintf("scale-%04d", i), Command: "true", Shell: true, Cpus: 0.1, Mem: 32, Disk: 1,
					Schedule: fmt.Sprintf("R%d/%s/PT10S", periods, start.Add(time.Duration(i%10)*time.Second).UTC().Format("2006-01-02T15:04:05Z"))})
			}
		}()
	}
	for i := 0; i < jobs; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	log.Printf("scale: %d jobs submitted in %v (%v each); the first is due in %v", jobs, time.Since(t0).Round(time.Millisecond),
		(time.Since(t0) / time.Duration(max(jobs, 1))).Round(10*time.Microsecond), time.Until(start).Round(time.Millisecond))
	var res scaleResult
	res.expected = jobs * periods
	rs := b.waitRuns("scale", time.Duration(periods)*10*time.Second+60*time.Second, func(rs []api.JobRun) bool {
		k := 0
		for _, r := range rs {
			if len(r.Job) > 6 && r.Job[:6] == "scale-" && (r.State == chronos.RunSucceeded || r.State == chronos.RunSkipped || r.State == chronos.RunFailed) {
				k++
			}
		}
		return k >= res.expected
	})
	per := map[string]map[string]int{}
	for _, r := range rs {
		if len(r.Job) <= 6 || r.Job[:6] != "scale-" {
			continue
		}
		switch r.State {
		case chronos.RunSucceeded:
			res.succeeded++
			if t, ok := b.seen(r.TaskID); ok {
				res.jitter = append(res.jitter, t.Sub(parse(r.ScheduledAt)))
			}
		case chronos.RunSkipped:
			res.skipped++
		}
		if per[r.Job] == nil {
			per[r.Job] = map[string]int{}
		}
		per[r.Job][r.ScheduledAt]++
	}
	for i := 0; i < jobs; i++ {
		occ := per[fmt.Sprintf("scale-%04d", i)]
		for _, c := range occ {
			if c > 1 {
				res.duplicated += c - 1
			}
		}
		if len(occ) < periods {
			res.missing += periods - len(occ)
		}
	}
	return res
}

// agent is a fake agent: it follows its assignments with the blocking
// query, reports each new task running at once and finished after hold,
// batching its status posts as the real agent does.
type agent struct {
	id     string
	client *api.Client
	hold   time.Duration

	mu       sync.Mutex
	seen     map[string]time.Time
	finished map[string]time.Time
}

func (a *agent) run(ctx context.Context) {
	type due struct {
		id string
		at time.Time
	}
	var (
		qmu   sync.Mutex
		queue []due
	)
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := time.Now()
			qmu.Lock()
			var batch []api.TaskStatus
			rest := queue[:0]
			for _, d := range queue {
				if now.After(d.at) {
					batch = append(batch, api.TaskStatus{TaskID: d.id, State: api.TaskFinished, Timestamp: now})
				} else {
					rest = append(rest, d)
				}
			}
			queue = rest
			qmu.Unlock()
			if len(batch) > 0 {
				a.post(ctx, batch)
				done := time.Now()
				a.mu.Lock()
				for _, s := range batch {
					a.finished[s.TaskID] = done
				}
				a.mu.Unlock()
			}
		}
	}()
	var idx uint64
	for ctx.Err() == nil {
		as, err := a.client.Assignments(ctx, a.id, idx, 5*time.Second)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		now := time.Now()
		idx = as.Index
		var batch []api.TaskStatus
		for _, t := range as.Tasks {
			a.mu.Lock()
			_, known := a.seen[t.Task.ID]
			if !known && t.Goal == api.GoalRun && !api.Terminal(t.Task.State) {
				a.seen[t.Task.ID] = now
			}
			a.mu.Unlock()
			if known || t.Goal != api.GoalRun || api.Terminal(t.Task.State) {
				continue
			}
			batch = append(batch, api.TaskStatus{TaskID: t.Task.ID, State: api.TaskRunning, Timestamp: now})
			qmu.Lock()
			queue = append(queue, due{t.Task.ID, now.Add(a.hold)})
			qmu.Unlock()
		}
		if len(batch) > 0 {
			a.post(ctx, batch)
		}
	}
}

func (a *agent) post(ctx context.Context, batch []api.TaskStatus) {
	for ctx.Err() == nil {
		if err := a.client.PostStatus(ctx, a.id, batch); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
