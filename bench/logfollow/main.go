// Command logfollow measures following a task's log through the master,
// end to end with the real binary: a weft master (m1) and an agent (a1) on
// loopback; a process task on a1 writes timestamped, numbered lines to its
// stdout at -rate bytes/s (10 MB/s by default). Two followers read the same
// file side by side, at the same time:
//
//   - weft: GET /v1/tasks/{id}/logs?follow=true on the master (api.Client's
//     TaskLogs, what `weft task logs -f` uses), which the master serves by
//     reading the task's sandbox from its agent over the node channel;
//   - peer: `tail -F` of the task's sandbox stdout file on a1's disk.
//
// Each follower checks every line: numbered one after the other (a gap,
// a repeat or a torn line is an error), and at the end the writer's final
// line says how many bytes it wrote, which must be what the follower read.
// Latency is from the line's write (its timestamp, same host clock) to its
// arrival at the follower; throughput is bytes over the time from the first
// line written to the last line received. Targets (issue #16): the master's
// follower keeps up with 10 MB/s and its p99 latency is <= 200 ms.
//
//	go run ./bench/logfollow [-rate 10485760] [-duration 20s]
//
// The task is this program run with -write (the bench runs it by its own
// path, so the agent must be on this host).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

// lineLen is every line's length, newline included.
const lineLen = 200

func main() {
	rate := flag.Int64("rate", 10<<20, "bytes per second the task writes")
	dur := flag.Duration("duration", 20*time.Second, "how long the task writes")
	write := flag.Bool("write", false, "be the task: wait for ./start, write lines to stdout for -duration at -rate")
	flag.Parse()
	if *write {
		if err := writer(*rate, *dur); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(1)
		}
		// Stay running: a finished task would be relaunched.
		select {}
	}
	benchkit.CleanupOnSignal()
	if err := run(*rate, *dur); err != nil {
		fmt.Printf("SUMMARY logfollow FAIL: %v\n", err)
		benchkit.Exit(1)
	}
	benchkit.Exit(0)
}

// writer waits for the file ./start (the bench creates it once both
// followers are attached), then writes lines "L <seq> <unix ns> xxx…\n",
// lineLen bytes each, every 2 ms as many as the rate allows by then, in one
// write each time; at the end "E <lines> <bytes> <unix ns>\n" padded to
// lineLen.
func writer(rate int64, dur time.Duration) error {
	for {
		if _, err := os.Stat("start"); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := os.Stdout
	buf := make([]byte, 0, 4<<20)
	var seq, written int64
	start := time.Now()
	for {
		el := time.Since(start)
		if el >= dur {
			break
		}
		due := int64(float64(rate) * el.Seconds())
		buf = buf[:0]
		now := time.Now().UnixNano()
		for written+int64(len(buf))+lineLen <= due && len(buf)+lineLen <= cap(buf) {
			buf = appendLine(buf, 'L', seq, now)
			seq++
		}
		if len(buf) > 0 {
			if _, err := out.Write(buf); err != nil {
				return err
			}
			written += int64(len(buf))
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The end line counts itself.
	written += lineLen
	buf = buf[:0]
	buf = append(buf, 'E', ' ')
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, written, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
	buf = append(buf, ' ')
	for len(buf) < lineLen-1 {
		buf = append(buf, 'x')
	}
	buf = append(buf, '\n')
	_, err := out.Write(buf)
	return err
}

func appendLine(b []byte, kind byte, seq, ns int64) []byte {
	n := len(b)
	b = append(b, kind, ' ')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ns, 10)
	b = append(b, ' ')
	for len(b)-n < lineLen-1 {
		b = append(b, 'x')
	}
	return append(b, '\n')
}

// result is what one follower saw.
type result struct {
	lat        []time.Duration // per line, write to arrival
	bytes      int64
	firstWrite time.Time // the first line's timestamp
	lastRecv   time.Time // when the end line arrived
	wrote      int64     // the writer's count, from its end line
	err        error
}

func (r *result) throughput() float64 {
	d := r.lastRecv.Sub(r.firstWrite).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.bytes) / d
}

// follow reads lines from rd until the end line, checking each one.
func follow(rd io.Reader) (res result) {
	br := bufio.NewReaderSize(rd, 1<<20)
	var want int64
	res.lat = make([]time.Duration, 0, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		now := time.Now()
		if err != nil {
			res.err = fmt.Errorf("after %d lines (%d bytes): %w", want, res.bytes, err)
			if errors.Is(err, io.EOF) {
				res.err = fmt.Errorf("the stream ended after %d lines (%d bytes) without the end line", want, res.bytes)
			}
			return res
		}
		res.bytes += int64(len(line))
		f := bytes.Fields(line)
		if len(line) != lineLen || len(f) != 4 && len(f) != 5 {
			res.err = fmt.Errorf("line %d is torn or foreign (%d bytes): %.60q", want, len(line), line)
			return res
		}
		seq, err1 := strconv.ParseInt(string(f[1]), 10, 64)
		if err1 != nil || seq != want {
			res.err = fmt.Errorf("line %d: got number %q (a gap, a repeat or a torn line)", want, f[1])
			return res
		}
		if f[0][0] == 'E' {
			res.wrote, _ = strconv.ParseInt(string(f[2]), 10, 64)
			res.lastRecv = now
			if res.wrote != res.bytes {
				res.err = fmt.Errorf("the writer wrote %d bytes, the follower read %d", res.wrote, res.bytes)
			}
			return res
		}
		ns, err2 := strconv.ParseInt(string(f[2]), 10, 64)
		if err2 != nil {
			res.err = fmt.Errorf("line %d: bad timestamp %q", want, f[2])
			return res
		}
		w := time.Unix(0, ns)
		if want == 0 {
			res.firstWrite = w
		}
		res.lat = append(res.lat, now.Sub(w))
		want++
	}
}

func run(rate int64, dur time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("tail"); err != nil {
		return fmt.Errorf("the peer needs tail (coreutils): %v", err)
	}
	bin, err := benchkit.WeftBin()
	if err != nil {
		return err
	}
	dir, err := benchkit.TempDir("weft-logfollow-")
	if err != nil {
		return err
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort())
	gossip := fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort())
	fmt.Printf("logfollow: weft master m1, agent a1; a task writes %.1f MB/s for %v; load %s\n", float64(rate)/(1<<20), dur, benchkit.LoadAvg())
	m1, err := benchkit.StartProc(dir, "m1", bin, "master", "--no-mesh", "--node-name", "m1", "--site", "bench",
		"--data-dir", filepath.Join(dir, "m1"), "--api-addr", apiAddr, "--raft-addr", "",
		"--gossip-addr", gossip, "--no-dns", "--no-lb", "--agent-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c := api.NewClient(apiAddr)
	const id = "/bench/logfollow"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a1dir := filepath.Join(dir, "a1")
	a1, err := benchkit.StartProcNoStop(dir, "a1", bin, "agent", "--no-mesh", "--node-name", "a1", "--site", "bench",
		"--data-dir", a1dir, "--join", gossip, "--gossip-addr", "127.0.0.1:0", "--agent-addr", "127.0.0.1:0",
		"--no-dns", "--no-lb", "--no-docker", "--cpus", "2", "--mem", "2048", "--ports", "35000-35099")
	if err != nil {
		return err
	}
	benchkit.AtExit(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		_, _ = c.DeleteApp(dctx, id, true)
		_ = benchkit.Eventually(15*time.Second, 200*time.Millisecond, "tasks gone", func() error {
			ts, err := c.Tasks(dctx)
			if err == nil && len(ts) > 0 {
				return fmt.Errorf("%d tasks", len(ts))
			}
			return err
		})
		a1.Stop(20 * time.Second)
	})
	if err := benchkit.Eventually(60*time.Second, 100*time.Millisecond, "a leader and a1 alive", func() error {
		for _, p := range []*benchkit.Proc{m1, a1} {
			if p.Exited() {
				return fmt.Errorf("a weft process exited:\n%s", p.LogTail(3000))
			}
		}
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Name == "a1" && n.Status == "alive" {
				return nil
			}
		}
		return errors.New("a1 not alive yet")
	}); err != nil {
		return err
	}
	cmd := fmt.Sprintf("exec %s -write -rate %d -duration %s", strconv.Quote(self), rate, dur)
	def := map[string]any{"id": id, "cmd": cmd, "cpus": 0.5, "mem": 64, "instances": 1}
	if _, err := c.PutApp(ctx, id, def, false); err != nil {
		return err
	}
	var task api.Task
	if err := benchkit.Eventually(60*time.Second, 100*time.Millisecond, "the writer task running", func() error {
		ts, err := c.Tasks(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.AppID == id && t.State == api.TaskRunning {
				task = t
				return nil
			}
		}
		return errors.New("not running yet")
	}); err != nil {
		return err
	}
	// The sandbox is <agent's dir>/sandboxes/<task id> under a1's data dir.
	found, _ := filepath.Glob(filepath.Join(a1dir, "*", "sandboxes", task.ID, "stdout"))
	if len(found) != 1 {
		return fmt.Errorf("the task's sandbox stdout under %s: found %q", a1dir, found)
	}
	stdout := found[0]
	sandbox := filepath.Dir(stdout)

	// weft: through the master.
	fctx, fcancel := context.WithTimeout(ctx, dur+2*time.Minute)
	defer fcancel()
	body, err := c.TaskLogs(fctx, task.ID, "stdout", 0, true)
	if err != nil {
		return fmt.Errorf("following through the master: %w", err)
	}
	defer body.Close()
	// peer: tail -F of the same file.
	tail := exec.CommandContext(fctx, "tail", "-F", "-c", "+1", stdout)
	tailOut, err := tail.StdoutPipe()
	if err != nil {
		return err
	}
	if err := tail.Start(); err != nil {
		return err
	}
	benchkit.AtExit(func() { _ = tail.Process.Kill(); _ = tail.Wait() })

	var wg sync.WaitGroup
	var weft, peer result
	wg.Add(2)
	go func() { defer wg.Done(); weft = follow(body) }()
	go func() { defer wg.Done(); peer = follow(tailOut) }()
	// Both are attached (the master answered, tail runs): go.
	if err := os.WriteFile(filepath.Join(sandbox, "start"), nil, 0o644); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(dur + time.Minute):
		fcancel()
		_ = tail.Process.Kill()
		<-done
	}
	_ = tail.Process.Kill()
	load := benchkit.LoadAvg()

	p := func(r *result, q float64) time.Duration {
		return benchkit.Percentile(r.lat, q).Round(100 * time.Microsecond)
	}
	for _, r := range []*result{&weft, &peer} {
		slices.Sort(r.lat)
	}
	mb := func(r *result) float64 { return r.throughput() / (1 << 20) }
	fmt.Printf("through the master: %d lines, %d bytes, %.2f MB/s; latency p50 %v p99 %v max %v; err %v\n",
		len(weft.lat), weft.bytes, mb(&weft), p(&weft, 50), p(&weft, 99), p(&weft, 100), weft.err)
	fmt.Printf("tail -F of the file: %d lines, %d bytes, %.2f MB/s; latency p50 %v p99 %v max %v; err %v\n",
		len(peer.lat), peer.bytes, mb(&peer), p(&peer, 50), p(&peer, 99), p(&peer, 100), peer.err)
	if weft.err != nil {
		return fmt.Errorf("through the master: %w", weft.err)
	}
	if peer.err != nil {
		return fmt.Errorf("the peer (tail -F): %w", peer.err)
	}
	// Keeping up: the follower's rate is the writer's, within 5 %
	// (the measured span includes the last line's latency).
	want := float64(rate) / (1 << 20)
	keepsUp := mb(&weft) >= 0.95*want
	latOK := p(&weft, 99) <= 200*time.Millisecond
	ratio := func(a, b time.Duration) float64 {
		if b <= 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	benchkit.EmitRow(benchkit.Row{Bench: "logfollow", Figure: fmt.Sprintf("log followed through the master, write → client latency p99 (task writing %.0f MB/s)", want),
		Weft: p(&weft, 99).String(), Peer: "tail -F of the sandbox file, same lines at the same time", PeerValue: p(&peer, 99).String(),
		Ratio: ratio(p(&weft, 99), p(&peer, 99)), Target: "≤ 200ms", Met: latOK})
	benchkit.EmitRow(benchkit.Row{Bench: "logfollow", Figure: "log followed through the master, throughput (MB/s, no line lost)",
		Weft: fmt.Sprintf("%.2f", mb(&weft)), Peer: "tail -F of the sandbox file, same lines at the same time", PeerValue: fmt.Sprintf("%.2f", mb(&peer)),
		Ratio: mb(&weft) / max(mb(&peer), 1e-9), Target: fmt.Sprintf("≥ %.0f MB/s (the writer's rate, within 5 %%)", want), Met: keepsUp})
	verdict := "MET"
	if !keepsUp || !latOK {
		verdict = "NOT MET"
	}
	fmt.Printf("SUMMARY logfollow %s: through the master %.2f MB/s, p50 %v p99 %v; tail -F %.2f MB/s, p50 %v p99 %v (p99 ratio %.2fx); %d lines each, none lost; target ≥ %.0f MB/s and p99 ≤ 200 ms; load %s\n",
		verdict, mb(&weft), p(&weft, 50), p(&weft, 99), mb(&peer), p(&peer, 50), p(&peer, 99), ratio(p(&weft, 99), p(&peer, 99)), len(weft.lat), want, load)
	return nil
}
