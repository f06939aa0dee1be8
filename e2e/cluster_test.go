package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

var (
	httpdOnce sync.Once
	httpdPath string
	httpdErr  error
)

// httpd builds the test task binary once.
func httpd(t *testing.T) string {
	t.Helper()
	httpdOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "weft-httpd-")
		if err != nil {
			httpdErr = err
			return
		}
		httpdPath = filepath.Join(dir, "httpd")
		cmd := exec.Command("go", "build", "-o", httpdPath, "./testdata/httpd")
		cmd.Dir = filepath.Dir(file)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			httpdErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if httpdErr != nil {
		t.Fatalf("building the test httpd: %v", httpdErr)
	}
	return httpdPath
}

// cluster is a master and agents, each a separate weft process on
// loopback, joined by gossip (no overlay).
type cluster struct {
	t       *testing.T
	dir     string
	pidDir  string // tasks write <task id>.pid here (sleepCmd, httpdApp)
	apiAddr string
	gossip  string
	master  *proc
	margs   []string
	agents  map[string]*proc
	aargs   map[string][]string
	c       *api.Client
}

type agentSpec struct {
	name, site string
	attrs      []string
}

func startCluster(t *testing.T, agents ...agentSpec) *cluster {
	t.Helper()
	dir := t.TempDir()
	cl := &cluster{t: t, dir: dir, pidDir: filepath.Join(dir, "pids"), agents: map[string]*proc{}, aargs: map[string][]string{}}
	mkdirs(t, cl.pidDir)
	// Agents leave their tasks running when they stop (a real agent does,
	// and re-adopts them), so the test kills what its tasks left: this
	// cleanup runs last.
	t.Cleanup(func() { killTaskPids(cl.pidDir) })
	cl.apiAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cl.gossip = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cl.margs = []string{"master", "--no-mesh", "--node-name", "m1", "--site", "aws",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", cl.apiAddr, "--raft-addr", "",
		"--gossip-addr", cl.gossip, "--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0",
		"--chronos-failure-retry", "1s"}
	cl.master = startWeft(t, "m1", cl.margs...)
	cl.c = api.NewClient(cl.apiAddr)
	for i, a := range agents {
		args := []string{"agent", "--no-mesh", "--node-name", a.name, "--site", a.site,
			"--data-dir", filepath.Join(dir, a.name), "--join", cl.gossip,
			// A fixed gossip port, as a real host has: an agent that
			// restarts comes back at the address the cluster knows
			// (with a new one, the master's gossip refuses it as a
			// conflicting address until the old entry is dead and, in
			// TestMarathonAgentLossAndMasterRestart, saw it fail).
			"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--agent-addr", "127.0.0.1:0",
			"--no-dns", "--no-lb", "--no-docker", "--cpus", "4", "--mem", "4096",
			"--ports", fmt.Sprintf("%d-%d", 32000+i*100, 32099+i*100)}
		for _, at := range a.attrs {
			args = append(args, "--attribute", at)
		}
		cl.aargs[a.name] = args
		cl.agents[a.name] = startWeft(t, a.name, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Runs first: remove every app while the cluster is up, so the agents
	// stop the tasks.
	t.Cleanup(cl.removeApps)
	waitLeader(t, ctx, cl.c)
	eventually(t, 30*time.Second, "every agent alive in the master's view", func() error {
		nodes, err := cl.c.Nodes(ctx)
		if err != nil {
			return err
		}
		alive := 0
		for _, n := range nodes {
			if n.Status == "alive" && n.Resources.Cpus > 0 {
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

// restartAgent starts an agent again with the arguments it had.
func (cl *cluster) restartAgent(name string) {
	cl.agents[name] = startWeft(cl.t, name+"-again", cl.aargs[name]...)
}

// removeApps deletes every app and waits (bounded) until no task is left.
func (cl *cluster) removeApps() {
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

// killTaskPids kills every process named by a pid file in dir.
func killTaskPids(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sleepCmd is a task command that records its pid and sleeps.
func (cl *cluster) sleepCmd() string {
	return fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600", cl.pidDir)
}
