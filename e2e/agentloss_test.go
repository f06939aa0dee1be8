package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// lossyLink puts a network namespace behind a veth pair (host side
// hostIP, namespace side nsIP) and removes it when the test ends.
type lossyLink struct {
	ns, nsIf, hostIP, nsIP string
}

func newLossyLink(t *testing.T) *lossyLink {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, iptables)")
	}
	for _, c := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s: %v", c, err)
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tag := hex.EncodeToString(b)
	sub := mrand.Intn(250) + 2
	l := &lossyLink{ns: "wel-" + tag, hostIP: fmt.Sprintf("10.214.%d.1", sub), nsIP: fmt.Sprintf("10.214.%d.2", sub)}
	hostIf, nsIf := "welh"+tag[:4], "weln"+tag[:4]
	l.nsIf = nsIf
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", l.ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", l.ns).Run()
		_ = exec.Command("ip", "link", "del", hostIf).Run()
	})
	ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	ip("link", "set", nsIf, "netns", l.ns)
	ip("addr", "add", l.hostIP+"/30", "dev", hostIf)
	ip("link", "set", hostIf, "up")
	ip("-n", l.ns, "link", "set", "lo", "up")
	ip("-n", l.ns, "addr", "add", l.nsIP+"/30", "dev", nsIf)
	ip("-n", l.ns, "link", "set", nsIf, "up")
	ip("-n", l.ns, "route", "add", "default", "via", l.hostIP)
	return l
}

// lose drops packets entering and leaving the namespace over its veth with
// probability p (iptables' statistic match: this kernel has no netem).
func (l *lossyLink) lose(t *testing.T, p string) {
	t.Helper()
	for _, chain := range [][2]string{{"INPUT", "-i"}, {"OUTPUT", "-o"}} {
		if out, err := exec.Command("ip", "netns", "exec", l.ns, "iptables", "-A", chain[0], chain[1], l.nsIf, "-m", "statistic",
			"--mode", "random", "--probability", p, "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("iptables in %s: %v: %s", l.ns, err, out)
		}
	}
}

// An agent on a link that drops 5 % of its packets each way is not taken
// for lost (none of its tasks is replaced, it stays alive) — and when it
// is killed on that link, its tasks still run elsewhere within seconds:
// the master sees its long poll hang up and gossip pings go unanswered.
func TestAgentLossyLinkNoFalseAlarmThenKilled(t *testing.T) {
	l := newLossyLink(t)
	dir := t.TempDir()
	pidDir := filepath.Join(dir, "pids")
	mkdirs(t, pidDir)
	t.Cleanup(func() { killTaskPids(pidDir) })
	apiAddr := fmt.Sprintf("%s:%d", l.hostIP, freePort(t))
	gossip := fmt.Sprintf("%s:%d", l.hostIP, freePort(t))
	startWeft(t, "m1", "master", "--no-mesh", "--node-name", "m1", "--site", "lan",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", apiAddr, "--raft-addr", "",
		"--gossip-addr", gossip, "--no-dns", "--no-lb", "--agent-addr", l.hostIP+":0")
	agentArgs := func(name, ip string, i int) []string {
		return []string{"agent", "--no-mesh", "--node-name", name, "--site", "lan",
			"--data-dir", filepath.Join(dir, name), "--join", gossip,
			"--gossip-addr", ip + ":0", "--agent-addr", ip + ":0",
			"--no-dns", "--no-lb", "--no-docker", "--cpus", "4", "--mem", "4096",
			"--ports", fmt.Sprintf("%d-%d", 33000+i*100, 33099+i*100)}
	}
	lossy := startCmd(t, "a1", append([]string{"ip", "netns", "exec", l.ns, testbin.Weft(t)}, agentArgs("a1", l.nsIP, 0)...)...)
	startWeft(t, "a2", agentArgs("a2", l.hostIP, 1)...)
	c := api.NewClient(apiAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer dcancel()
		_, _ = c.DeleteApp(dctx, "/lossy/web", true)
	})
	waitLeader(t, ctx, c)
	eventually(t, 30*time.Second, "a1 and a2 alive", func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, nd := range nodes {
			if nd.Status == "alive" && nd.Resources.Cpus > 0 {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d agents alive", n)
		}
		return nil
	})
	const id = "/lossy/web"
	def := fmt.Sprintf(`{"id":%q,"cmd":%q,"cpus":0.1,"mem":16,"instances":4,"constraints":[["hostname","MAX_PER","2"]]}`,
		id, fmt.Sprintf("echo $$ > %s/$MESOS_TASK_ID.pid; exec sleep 600", pidDir))
	if _, err := c.PutApp(ctx, id, []byte(def), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "4 tasks running, 2 per agent", func() error { return wantRunning(ctx, c, id, 4) })
	if _, err := c.PutApp(ctx, id, []byte(`{"constraints":[]}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "constraint lifted", func() error {
		a, err := c.App(ctx, id)
		if err != nil {
			return err
		}
		if len(a.Deployments) != 0 {
			return fmt.Errorf("deployment still running")
		}
		return wantRunning(ctx, c, id, 4)
	})
	ts, err := runningTasks(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	onA1 := map[string]bool{}
	for _, tk := range ts {
		if tk.SlaveID == "a1" {
			onA1[tk.ID] = true
		}
	}
	if len(onA1) == 0 {
		t.Fatalf("no task on a1: %v", taskHosts(ts))
	}

	// 5 % loss each way for 20 s: nothing happens.
	l.lose(t, "0.05")
	until := time.Now().Add(20 * time.Second)
	for time.Now().Before(until) {
		time.Sleep(500 * time.Millisecond)
		a, err := c.App(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range a.Tasks {
			if tk.SlaveID == "a1" && (!onA1[tk.ID] || tk.State != api.TaskRunning) {
				t.Fatalf("false alarm on a lossy link: a1's task %s is %s", tk.ID, tk.State)
			}
		}
		if nodes, err := c.Nodes(ctx); err == nil {
			for _, nd := range nodes {
				if nd.ID == "a1" && nd.Status != "alive" {
					t.Fatalf("false alarm on a lossy link: a1 shown %s", nd.Status)
				}
			}
		}
	}

	// kill -9 of a1, still on the lossy link.
	killed := time.Now()
	if err := lossy.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-lossy.done
	eventually(t, 60*time.Second, "a1's tasks running on a2", func() error {
		ts, err := runningTasks(ctx, c, id)
		if err != nil {
			return err
		}
		n := 0
		for _, tk := range ts {
			if tk.SlaveID == "a2" {
				n++
			}
		}
		if n != 4 {
			return fmt.Errorf("%d running on a2, want 4 (%v)", n, taskHosts(ts))
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("kill -9 of the agent on the lossy link: its tasks running elsewhere %v after", took.Round(100*time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("a1's tasks ran elsewhere %v after kill -9, want within 8 s", took.Round(100*time.Millisecond))
	}
}
