package main

// The live phase: weft's DNS follows a real master (sched.Master with raft
// on disk, in a child process so its CPU is its own) through the node's
// one watch (api.Watcher on /v1/state/changes), exactly as `weft agent`
// wires it, while -rate task changes per second land on that master. NSD
// serves a static zone of the same names (it cannot change its zone under
// load without a reload); the changes land during its runs too, so both
// servers share the machine with the same master work.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/bench/internal/benchmaster"
	"github.com/weftnet/weft/dns"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

const childEnv = "WEFT_DNSBENCH_MASTER"

// serveMaster is the child: a master with raft on disk holding state(apps)
// (same nodes, apps and tasks as the static zone), and POST /bench/change,
// which flips the third task of the next app between TASK_RUNNING and
// TASK_KILLED (one store write, as an agent's status update makes) and
// answers the store index. Every app keeps at least two running tasks, so
// no name of the query file changes between NOERROR and NXDOMAIN.
func serveMaster(apps int) error {
	dir, err := os.MkdirTemp("", "weft-bench-dns-master-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st := state(apps, 1)
	for i := range st.Nodes {
		st.Nodes[i].Resources = api.Resources{Cpus: 8, Mem: 16384, Disk: 100000, Ports: []api.PortRange{{Begin: 20000, End: 22000}}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, ln, err := benchmaster.Start(ctx, dir, st.Nodes...)
	if err != nil {
		return err
	}
	recs := map[string]*sched.TaskRecord{}
	var ops []sched.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := m.Store().Apply(ctx, ops)
		ops = ops[:0]
		return err
	}
	for i := range st.Apps {
		a := *st.Apps[i]
		ops = append(ops, sched.Put(sched.TableApps, a.ID, &a))
		for k := range 3 {
			t := st.Tasks[3*i+k]
			rec := &sched.TaskRecord{Goal: api.GoalRun, Task: *t}
			recs[t.ID] = rec
			ops = append(ops, sched.Put(sched.TableTasks, t.ID, rec))
		}
		if len(ops) >= 300 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	var mu sync.Mutex
	next := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /bench/change", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tid := st.Tasks[3*(next%apps)+2].ID
		next++
		rec := *recs[tid]
		if rec.Task.State == api.TaskRunning {
			rec.Task.State, rec.Task.Message = api.TaskKilled, "killed by the dns bench"
		} else {
			rec.Task.State, rec.Task.Message = api.TaskRunning, ""
		}
		recs[tid] = &rec
		mu.Unlock()
		idx, err := m.Store().Apply(r.Context(), []sched.Op{sched.Put(sched.TableTasks, tid, &rec)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d\n", idx)
	})
	mux.Handle("/", m.Handler())
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("LISTEN %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin when it is done
	_ = srv.Close()
	return nil
}

// live is a running master child, weft's DNS following it, and the change
// driver.
type live struct {
	child   *exec.Cmd
	stdin   io.Closer
	base    string
	srv     *dns.Server
	cancel  context.CancelFunc
	done    chan struct{}
	sent    atomic.Int64  // changes the master accepted
	lastIdx atomic.Uint64 // store index of the last accepted change
	errs    atomic.Int64
	errMsg  atomic.Value
}

func startLive(apps int) (*live, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	child := exec.Command(self, "-apps", strconv.Itoa(apps))
	child.Env = append(os.Environ(), childEnv+"=1")
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		return nil, err
	}
	l := &live{child: child, stdin: stdin}
	benchkit.AtExit(l.stop)
	var addr string
	if _, err := fmt.Fscanf(stdout, "LISTEN %s\n", &addr); err != nil {
		return nil, fmt.Errorf("the master child did not start: %w", err)
	}
	l.base = "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	w := &api.Watcher{Source: api.NewClient(l.base), Logger: slog.New(slog.DiscardHandler)}
	go func() { _ = w.Run(ctx) }()
	cfg := dns.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Forward = false
	cfg.Source = w.Consumer()
	cfg.Logger = slog.New(slog.DiscardHandler)
	if l.srv, err = dns.New(cfg); err != nil {
		return nil, err
	}
	go func() { _ = l.srv.Run(ctx) }()
	select {
	case <-l.srv.Ready():
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("weft's dns got no state from the master in 30 s")
	}
	return l, nil
}

// drive posts rate changes per second until stop is called.
func (l *live) drive(rate float64) {
	l.done = make(chan struct{})
	stop := l.done
	go func() {
		hc := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			resp, err := hc.Post(l.base+"/bench/change", "text/plain", nil)
			if err != nil {
				l.errs.Add(1)
				l.errMsg.Store(err.Error())
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			idx, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if resp.StatusCode != http.StatusOK || perr != nil {
				l.errs.Add(1)
				l.errMsg.Store(fmt.Sprintf("%d %s", resp.StatusCode, b))
				continue
			}
			l.sent.Add(1)
			l.lastIdx.Store(idx)
		}
	}()
}

func (l *live) stopDriving() {
	if l.done != nil {
		close(l.done)
		l.done = nil
	}
}

func (l *live) stop() {
	l.stopDriving()
	if l.cancel != nil {
		l.cancel()
	}
	_ = l.stdin.Close()
	done := make(chan struct{})
	go func() { _ = l.child.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = l.child.Process.Kill()
		<-done
	}
}

// caughtUp waits until weft's table serves the last accepted change.
func (l *live) caughtUp(within time.Duration) error {
	want := l.lastIdx.Load()
	return benchkit.Eventually(within, 5*time.Millisecond, fmt.Sprintf("weft's dns at index %d", want), func() error {
		if got := l.srv.Status().Index; got < want {
			return fmt.Errorf("at index %d", got)
		}
		return nil
	})
}
