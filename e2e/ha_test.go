package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// haCluster is several masters (one raft cluster) and agents, each a
// separate weft process on loopback, joined by gossip.
type haCluster struct {
	t       *testing.T
	dir     string
	pidDir  string
	masters []*haMaster
	agents  map[string]*haAgent
	c       *api.Client // every master, with failover
}

type haMaster struct {
	name, api string
	args      []string
	dataDir   string
	p         *proc
	starts    int
}

type haAgent struct {
	name, api string
	p         *proc
}

// startHA starts n masters that form one raft cluster and the named agents.
func startHA(t *testing.T, n int, agents ...string) *haCluster {
	t.Helper()
	dir := t.TempDir()
	cl := &haCluster{t: t, dir: dir, pidDir: filepath.Join(dir, "pids"), agents: map[string]*haAgent{}}
	mkdirs(t, cl.pidDir)
	t.Cleanup(func() { killTaskPids(cl.pidDir) })
	// The cluster's join token: raft, the followers' proxy and the agents'
	// calls run over mutual TLS, as in a real deployment.
	token := faultToken
	var apis []string
	firstGossip := ""
	for i := 1; i <= n; i++ {
		m := &haMaster{name: fmt.Sprintf("m%d", i), api: fmt.Sprintf("127.0.0.1:%d", freePort(t)), dataDir: filepath.Join(dir, fmt.Sprintf("m%d", i))}
		gossip := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if firstGossip == "" {
			firstGossip = gossip
		}
		m.args = []string{"master", "--no-mesh", "--node-name", m.name, "--site", "aws",
			"--data-dir", m.dataDir, "--api-addr", m.api,
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--bootstrap-expect", fmt.Sprint(n),
			"--gossip-addr", gossip, "--join", firstGossip,
			"--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0", "--chronos-failure-retry", "1s", "--token", token}
		apis = append(apis, m.api)
		cl.masters = append(cl.masters, m)
		m.start(t)
	}
	cl.c = api.NewClientOf(apis...)
	cl.c.RetryFor = 20 * time.Second
	for i, name := range agents {
		a := &haAgent{name: name, api: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		a.p = startWeft(t, name, "agent", "--no-mesh", "--node-name", name, "--site", "aws",
			"--data-dir", filepath.Join(dir, name), "--join", firstGossip,
			"--gossip-addr", "127.0.0.1:0", "--agent-addr", a.api,
			"--no-dns", "--no-lb", "--no-docker", "--cpus", "4", "--mem", "4096",
			"--ports", fmt.Sprintf("%d-%d", 33000+i*100, 33099+i*100), "--token", token)
		cl.agents[name] = a
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(cl.removeApps)
	waitLeader(t, ctx, cl.c)
	eventually(t, 30*time.Second, "every agent alive in the masters' view", func() error {
		nodes, err := cl.c.Nodes(ctx)
		if err != nil {
			return err
		}
		alive := 0
		for _, nd := range nodes {
			if nd.Status == "alive" && nd.Resources.Cpus > 0 {
				alive++
			}
		}
		if alive != len(agents) {
			return fmt.Errorf("%d agents alive, want %d", alive, len(agents))
		}
		return nil
	})
	return cl
}

func (m *haMaster) start(t *testing.T) {
	m.starts++
	m.p = startWeft(t, fmt.Sprintf("%s-%d", m.name, m.starts), m.args...)
}

// kill9 kills the master's process at once.
func (m *haMaster) kill9() {
	_ = syscall.Kill(-m.p.cmd.Process.Pid, syscall.SIGKILL)
	<-m.p.done
}

// leader returns the master that leads, as the masters report it.
func (cl *haCluster) leader(ctx context.Context) (*haMaster, error) {
	var out struct {
		Leader string `json:"leader"`
	}
	if _, err := cl.c.Do(ctx, http.MethodGet, "/v2/leader", nil, &out); err != nil {
		return nil, err
	}
	for _, m := range cl.masters {
		if m.api == out.Leader {
			return m, nil
		}
	}
	return nil, fmt.Errorf("leader %q is none of the masters", out.Leader)
}

// waitNewLeader waits until a live master other than old leads.
func (cl *haCluster) waitNewLeader(old *haMaster, within time.Duration) *haMaster {
	cl.t.Helper()
	var got *haMaster
	deadline := time.Now().Add(within)
	for {
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			l, err := cl.leader(ctx)
			if err != nil {
				return err
			}
			if l == old || l.p.exited() {
				return fmt.Errorf("%s still named leader", l.name)
			}
			got = l
			return nil
		}()
		if err == nil {
			return got
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("no new leader within %v: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (cl *haCluster) removeApps() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	apps, err := cl.c.Apps(ctx)
	if err != nil {
		return
	}
	for _, a := range apps {
		_, _ = cl.c.DeleteApp(ctx, a.ID, true)
	}
	for ctx.Err() == nil {
		if ts, err := cl.c.Tasks(ctx); err != nil || len(ts) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// replicaApps counts the apps under prefix in a master's own replica
// (every master answers /v1/state itself).
func replicaApps(ctx context.Context, m *haMaster, prefix string) (int, error) {
	c := api.NewClient(m.api)
	c.RetryFor = -1
	var st api.State
	if _, err := c.Do(ctx, http.MethodGet, "/v1/state", nil, &st); err != nil {
		return 0, err
	}
	n := 0
	for _, a := range st.Apps {
		if strings.HasPrefix(a.ID, prefix) {
			n++
		}
	}
	return n, nil
}

// writer PUTs small app definitions through the failover client until
// stopped, and keeps which were acknowledged and every error it saw.
type writer struct {
	c      *api.Client
	prefix string

	mu     sync.Mutex
	acked  []string
	ackAt  []time.Time
	errs   []string
	stop   chan struct{}
	done   chan struct{}
	period time.Duration
}

func startWriter(c *api.Client, prefix string, period time.Duration) *writer {
	w := &writer{c: c, prefix: prefix, stop: make(chan struct{}), done: make(chan struct{}), period: period}
	go w.run()
	return w
}

func (w *writer) run() {
	defer close(w.done)
	tick := time.NewTicker(w.period)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		id := fmt.Sprintf("%s/w%d", w.prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		def := map[string]any{"id": id, "cmd": "sleep 600", "instances": 0, "cpus": 0.01, "mem": 8}
		_, err := w.c.PutApp(ctx, id, def, false)
		cancel()
		w.mu.Lock()
		if err != nil {
			w.errs = append(w.errs, err.Error())
		} else {
			w.acked = append(w.acked, id)
			w.ackAt = append(w.ackAt, time.Now())
		}
		w.mu.Unlock()
	}
}

func (w *writer) finish() {
	close(w.stop)
	<-w.done
}

// firstAckAfter is the time of the first acknowledged write after t.
func (w *writer) firstAckAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.ackAt {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// check fails the test on any error the client saw and on any
// acknowledged write that the cluster no longer has.
func (w *writer) check(t *testing.T, c *api.Client) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Errorf("the failover client saw %d errors (want none), first: %s", len(w.errs), w.errs[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	apps, err := c.Apps(ctx)
	if err != nil {
		t.Fatalf("listing apps: %v", err)
	}
	have := map[string]bool{}
	for _, a := range apps {
		have[a.ID] = true
	}
	lost := 0
	for _, id := range w.acked {
		if !have["/"+strings.TrimPrefix(id, "/")] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes are lost", lost, len(w.acked))
	}
	if len(w.acked) == 0 {
		t.Errorf("no write was acknowledged")
	}
	t.Logf("%d writes acknowledged, %d errors, 0 lost", len(w.acked), len(w.errs))
}

// agentHealth reads an agent's /v1/health.
func agentHealth(ctx context.Context, a *haAgent) (map[string]any, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.api+"/v1/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, err
	}
	return h, nil
}

// TestHAThreeMasters: 3 masters and 2 agents as processes. The leader is
// killed with SIGKILL under writes through the failover client (no error,
// no lost acknowledged write, agents resync on another master and say
// which master failed); it comes back; the leader is stopped gracefully
// (it hands leadership over); a master's data dir is wiped and it rejoins.
func TestHAThreeMasters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 weft processes")
	}
	cl := startHA(t, 3, "a1", "a2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Tasks before the failover keep running through it.
	app := map[string]any{"id": "/ha/sleeper", "cmd": fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600", cl.pidDir), "instances": 4, "cpus": 0.1, "mem": 16}
	if _, err := cl.c.PutApp(ctx, "/ha/sleeper", app, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "4 tasks running", func() error { return wantRunning(ctx, cl.c, "/ha/sleeper", 4) })
	before, _ := runningTasks(ctx, cl.c, "/ha/sleeper")

	// kill -9 of the leader under writes.
	w := startWriter(cl.c, "/ha/kill", 50*time.Millisecond)
	time.Sleep(time.Second)
	old, err := cl.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	old.kill9()
	t.Logf("killed the leader %s", old.name)
	nl := cl.waitNewLeader(old, 10*time.Second)
	eventually(t, 10*time.Second, "a write acknowledged after the kill", func() error {
		if _, ok := w.firstAckAfter(killed); !ok {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	at, _ := w.firstAckAfter(killed)
	t.Logf("new leader %s; first acknowledged write %v after the kill", nl.name, at.Sub(killed).Round(time.Millisecond))
	time.Sleep(time.Second)
	w.finish()
	w.check(t, cl.c)
	total := len(w.acked)

	// The agents are in sync with a live master and say the dead one failed
	// if they were using it.
	for _, a := range cl.agents {
		eventually(t, 5*time.Second, a.name+" synced with a live master", func() error {
			h, err := agentHealth(ctx, a)
			if err != nil {
				return err
			}
			if h["master"] != "reachable" {
				return fmt.Errorf("health says master %v: %v", h["master"], h["masterError"])
			}
			ms, _ := h["masters"].([]any)
			current := ""
			for _, m := range ms {
				mv, _ := m.(map[string]any)
				if mv["state"] == "current" {
					current, _ = mv["api"].(string)
				}
			}
			if current == "" || current == old.api {
				return fmt.Errorf("current master %q (the killed one is %s): %v", current, old.api, ms)
			}
			return nil
		})
	}
	after, err := runningTasks(ctx, cl.c, "/ha/sleeper")
	if err != nil {
		t.Fatal(err)
	}
	if taskIDs(after) != taskIDs(before) {
		t.Errorf("tasks changed through the failover: before %v, after %v", taskIDs(before), taskIDs(after))
	}

	// The killed master comes back with its data and rejoins.
	old.start(t)
	eventually(t, 30*time.Second, old.name+" back and caught up", func() error {
		n, err := replicaApps(ctx, old, "/ha/")
		if err != nil {
			return err
		}
		if want := 1 + len(w.acked); n < want {
			return fmt.Errorf("its replica has %d apps, want %d", n, want)
		}
		return nil
	})

	// A graceful stop of the leader hands leadership over.
	old, err = cl.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w = startWriter(cl.c, "/ha/stop", 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	stopped := time.Now()
	_ = old.p.cmd.Process.Signal(syscall.SIGTERM)
	nl = cl.waitNewLeader(old, 5*time.Second)
	took := time.Since(stopped)
	t.Logf("graceful stop of %s: %s leads %v after SIGTERM", old.name, nl.name, took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a new leader %v after SIGTERM of the leader; it hands leadership over, want well under 1 s", took.Round(time.Millisecond))
	}
	select {
	case <-old.p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not stop on SIGTERM within 10 s", old.name)
	}
	time.Sleep(time.Second)
	w.finish()
	w.check(t, cl.c)
	total += len(w.acked)
	b, _ := os.ReadFile(old.p.log)
	if !strings.Contains(string(b), "handed leadership over") {
		t.Errorf("%s did not log handing leadership over on a graceful stop", old.name)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "leadership") || strings.Contains(line, "stopp") {
			t.Logf("%s: %s", old.name, line)
		}
	}
	old.start(t)
	eventually(t, 30*time.Second, old.name+" back after its graceful stop and caught up", func() error {
		n, err := replicaApps(ctx, old, "/ha/")
		if err != nil {
			return err
		}
		if want := 1 + total; n < want {
			return fmt.Errorf("its replica has %d apps, want %d", n, want)
		}
		return nil
	})

	// A follower's data dir is wiped; it rejoins and catches up.
	var wiped *haMaster
	l, err := cl.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cl.masters {
		if m != l && m != old {
			wiped = m
		}
	}
	wiped.kill9()
	if err := os.RemoveAll(wiped.dataDir); err != nil {
		t.Fatal(err)
	}
	wiped.start(t)
	eventually(t, 40*time.Second, wiped.name+" rejoined with an empty data dir and caught up", func() error {
		n, err := replicaApps(ctx, wiped, "/ha/")
		if err != nil {
			return err
		}
		if want := 1 + total; n < want {
			return fmt.Errorf("its replica has %d apps, want %d", n, want)
		}
		return nil
	})
}

// TestHAFiveMastersTwoKilled: of 5 masters, the leader and a follower are
// killed at once; the other 3 elect a leader and writes through the
// failover client go on with no error and no loss.
func TestHAFiveMastersTwoKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 weft processes")
	}
	cl := startHA(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := startWriter(cl.c, "/five", 50*time.Millisecond)
	time.Sleep(time.Second)
	l, err := cl.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var other *haMaster
	for _, m := range cl.masters {
		if m != l {
			other = m
			break
		}
	}
	killed := time.Now()
	l.kill9()
	other.kill9()
	nl := cl.waitNewLeader(l, 10*time.Second)
	eventually(t, 10*time.Second, "a write acknowledged after the kill", func() error {
		if _, ok := w.firstAckAfter(killed); !ok {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	at, _ := w.firstAckAfter(killed)
	t.Logf("killed %s (leader) and %s; %s leads; first acknowledged write %v after the kill", l.name, other.name, nl.name, at.Sub(killed).Round(time.Millisecond))
	time.Sleep(time.Second)
	w.finish()
	w.check(t, cl.c)
}
