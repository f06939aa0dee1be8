package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

// lossyNet is a network namespace joined to the host by a veth pair: the
// link of one agent, on which packets can be dropped at random.
type lossyNet struct {
	ns, hostIf, nsIf string
	hostIP, nsIP     string
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newLossyNet() (*lossyNet, error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tag := hex.EncodeToString(b)
	sub := mrand.IntN(250) + 2
	ln := &lossyNet{ns: "wal-" + tag, hostIf: "walh" + tag[:4], nsIf: "waln" + tag[:4],
		hostIP: fmt.Sprintf("10.213.%d.1", sub), nsIP: fmt.Sprintf("10.213.%d.2", sub)}
	steps := [][]string{
		{"netns", "add", ln.ns},
		{"link", "add", ln.hostIf, "type", "veth", "peer", "name", ln.nsIf},
		{"link", "set", ln.nsIf, "netns", ln.ns},
		{"addr", "add", ln.hostIP + "/30", "dev", ln.hostIf},
		{"link", "set", ln.hostIf, "up"},
		{"-n", ln.ns, "link", "set", "lo", "up"},
		{"-n", ln.ns, "addr", "add", ln.nsIP + "/30", "dev", ln.nsIf},
		{"-n", ln.ns, "link", "set", ln.nsIf, "up"},
		{"-n", ln.ns, "route", "add", "default", "via", ln.hostIP},
	}
	for _, st := range steps {
		if err := ipCmd(st...); err != nil {
			ln.close()
			return nil, err
		}
	}
	return ln, nil
}

// lose drops packets entering and leaving the namespace over its veth
// with probability p.
func (ln *lossyNet) lose(p float64) error {
	for _, chain := range [][2]string{{"INPUT", "-i"}, {"OUTPUT", "-o"}} {
		count := []string{"netns", "exec", ln.ns, "iptables", "-A", chain[0], chain[1], ln.nsIf} // counts every packet on the link
		drop := []string{"netns", "exec", ln.ns, "iptables", "-A", chain[0], chain[1], ln.nsIf, "-m", "statistic", "--mode", "random",
			"--probability", strconv.FormatFloat(p, 'f', 3, 64), "-j", "DROP"}
		for _, args := range [][]string{count, drop} {
			if err := ipCmd(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

var counterLine = regexp.MustCompile(`^\s*(\d+)\s+\d+\s*(DROP)?\s`)

// dropped returns how many of the namespace's packets the loss rules
// dropped, and how many reached them (each chain counts every packet in
// a first rule without a target, then drops at random).
func (ln *lossyNet) dropped() (drops, total int) {
	out, err := exec.Command("ip", "netns", "exec", ln.ns, "iptables", "-L", "-v", "-x", "-n").Output()
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(out), "\n") {
		if m := counterLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			if m[2] == "DROP" {
				drops += n
			} else {
				total += n
			}
		}
	}
	return drops, total
}

// close deletes the namespace (and with it the veth pair).
func (ln *lossyNet) close() {
	_ = ipCmd("netns", "del", ln.ns)
	_ = ipCmd("link", "del", ln.hostIf) // gone with the namespace already, normally
}

// lossyRun drops 5 % of a1's packets each way for d and counts false
// alarms: a1's tasks not RUNNING (marked unreachable, replaced) and the
// master showing a1 other than alive.
func lossyRun(ctx context.Context, cl *cluster, ln *lossyNet, id string, d time.Duration) error {
	c := cl.c
	app, err := c.App(ctx, id)
	if err != nil {
		return err
	}
	mine := map[string]bool{}
	for _, tk := range app.Tasks {
		if tk.SlaveID == "a1" {
			mine[tk.ID] = true
		}
	}
	if len(mine) == 0 {
		return fmt.Errorf("no task on a1 to watch")
	}
	if err := ln.lose(0.05); err != nil {
		return err
	}
	fmt.Printf("lossy: 5 %% of a1's packets dropped each way for %v; watching its %d tasks and its status every 500 ms\n", d, len(mine))
	start := time.Now()
	bad := map[string]string{} // task id → what was wrong first
	downSamples, samples, apiErrs := 0, 0, 0
	nextNote := start.Add(time.Minute)
	for time.Since(start) < d {
		time.Sleep(500 * time.Millisecond)
		app, err := c.App(ctx, id)
		if err != nil {
			apiErrs++
			continue
		}
		samples++
		seen := map[string]bool{}
		for _, tk := range app.Tasks {
			if !mine[tk.ID] {
				continue
			}
			seen[tk.ID] = true
			if tk.State != api.TaskRunning && bad[tk.ID] == "" {
				bad[tk.ID] = fmt.Sprintf("%s after %v", tk.State, time.Since(start).Round(time.Second))
			}
		}
		for tid := range mine {
			if !seen[tid] && bad[tid] == "" {
				bad[tid] = fmt.Sprintf("gone after %v", time.Since(start).Round(time.Second))
			}
		}
		if nodes, err := c.Nodes(ctx); err == nil {
			for _, n := range nodes {
				if n.ID == "a1" && n.Status != "alive" {
					downSamples++
					fmt.Printf("  a1 shown %s after %v\n", n.Status, time.Since(start).Round(time.Second))
				}
			}
		}
		if time.Now().After(nextNote) {
			drops, total := ln.dropped()
			fmt.Printf("  %v: %d false alarms so far; %d of a1's %d packets dropped\n", time.Since(start).Round(time.Second), len(bad), drops, total)
			nextNote = nextNote.Add(time.Minute)
		}
	}
	drops, total := ln.dropped()
	for tid, what := range bad {
		fmt.Printf("  false alarm: task %s %s\n", tid, what)
	}
	rate := 0.0
	if total > 0 {
		rate = 100 * float64(drops) / float64(total)
	}
	fmt.Printf("lossy link: %v, %d of a1's packets dropped (%.1f %%); %d of its %d tasks not RUNNING at some point, a1 shown not alive in %d of %d samples, %d master errors; load average %s\n",
		d.Round(time.Second), drops, rate, len(bad), len(mine), downSamples, samples, apiErrs, loadAvg())
	ok := len(bad) == 0 && downSamples == 0 && samples > 0 && drops > 0
	benchkit.EmitRow(benchkit.Row{Bench: "agentloss", Figure: fmt.Sprintf("false replacements with 5 %% loss on an agent's link, %v", d.Round(time.Second)),
		Weft: strconv.Itoa(len(bad)), Peer: benchkit.NoPeer, Target: "0", Met: ok})
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Printf("SUMMARY agentloss-lossy %s: %d false replacements, a1 shown down %d times, over %v with %.1f %% of its packets dropped\n",
		verdict, len(bad), downSamples, d.Round(time.Second), rate)
	if !ok {
		return errBenchFailed
	}
	return nil
}
