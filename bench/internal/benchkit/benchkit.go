// Package benchkit is what the benchmarks under bench/ share: running the
// weft binary and other processes, cleaning them up on exit or Ctrl-C,
// waiting, and percentiles.
package benchkit

// Process plumbing shared (by copy) by bench/launch, bench/listing and
// bench/agentloss: the weft binary, processes stopped by PID, temp dirs
// removed, free loopback ports — everything undone even when the bench
// fails or is interrupted.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	cleanupMu sync.Mutex
	cleanups  []func()
	exiting   bool // cleanups ran: later ones run at once
)

// AtExit registers fn to run (last registered first) when the bench ends,
// fails or is interrupted.
func AtExit(fn func()) {
	cleanupMu.Lock()
	if exiting {
		cleanupMu.Unlock()
		fn()
		return
	}
	cleanups = append(cleanups, fn)
	cleanupMu.Unlock()
}

// RunCleanups runs the registered cleanups once.
func RunCleanups() {
	cleanupMu.Lock()
	fns := cleanups
	cleanups, exiting = nil, true
	cleanupMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Exit cleans up and exits with code.
func Exit(code int) {
	RunCleanups()
	os.Exit(code)
}

// CleanupOnSignal makes Ctrl-C / SIGTERM of the bench undo what it started.
func CleanupOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-ch
		fmt.Fprintf(os.Stderr, "bench: %v, cleaning up\n", s)
		Exit(130)
	}()
}

// TempDir makes a temp dir removed at exit.
func TempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	AtExit(func() { _ = os.RemoveAll(d) })
	return d, nil
}

// WeftBin returns $WEFT_BIN, or builds ./cmd/weft into a temp dir.
func WeftBin() (string, error) {
	if p := os.Getenv("WEFT_BIN"); p != "" {
		return filepath.Abs(p)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := TempDir("weft-bench-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weft")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/weft")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building weft: %v: %s", err, out)
	}
	return bin, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is a weft process the bench started.
type Proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// StartProc runs bin args in its own process group, output to dir/name.log;
// it is stopped (SIGINT, then SIGKILL) at exit if still running.
func StartProc(dir, name, bin string, args ...string) (*Proc, error) {
	p, err := StartProcNoStop(dir, name, bin, args...)
	if err != nil {
		return nil, err
	}
	AtExit(func() { p.Stop(20 * time.Second) })
	return p, nil
}

// StartProcNoStop is startProc for a caller that stops the process itself
// (in a cleanup of its own, registered before).
func StartProcNoStop(dir, name, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &Proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Stop sends SIGINT (Ctrl-C) and waits; after grace it SIGKILLs the
// process group. It reports whether the process exited on its own.
func (p *Proc) Stop(grace time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return false
	}
}

// Kill9 is `kill -9 <pid>`: the process only, not what it started.
func (p *Proc) Kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail returns the end of the process's log, for error messages.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// KillPidFiles SIGKILLs every process named by a *.pid file in dir (the
// tasks' sleeps write their pid there) and removes the files.
func KillPidFiles(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	n := 0
	for _, f := range files {
		if KillPidFile(f) {
			n++
		}
	}
	return n
}

// KillPidFile SIGKILLs the process named in file (if alive) and removes it.
func KillPidFile(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	_ = os.Remove(file)
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		return false
	}
	return syscall.Kill(pid, syscall.SIGKILL) == nil
}

// Eventually retries fn every interval until it returns nil or timeout.
func Eventually(timeout, interval time.Duration, what string, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v: %w", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// Percentile returns the p-th percentile (0..100) of sorted ds (nearest rank).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// LoadAvg is /Proc/loadavg's first three fields.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	var a, b1, c string
	fmt.Sscan(string(b), &a, &b1, &c)
	return a + " " + b1 + " " + c
}

// StopIfExiting stops p at once when the cleanups already ran (the bench
// was interrupted while starting it).
func StopIfExiting(p *Proc) {
	cleanupMu.Lock()
	e := exiting
	cleanupMu.Unlock()
	if e {
		p.Stop(20 * time.Second)
	}
}

// Row is one line of the one report `make bench` writes (bench/out/report.md
// and report.json): a figure, weft's value, the peer run side by side in the
// same bench (or "absolute, no peer"), their ratio, the target, and whether
// it was met.
type Row struct {
	Bench     string  `json:"bench"`
	Figure    string  `json:"figure"`
	Weft      string  `json:"weft"`
	Peer      string  `json:"peer"`                 // what ran side by side, or "absolute, no peer"
	PeerValue string  `json:"peer_value,omitempty"` // the peer's figure, same unit as Weft
	Ratio     float64 `json:"ratio,omitempty"`      // weft / peer, as Figure says
	Target    string  `json:"target,omitempty"`
	Met       bool    `json:"met"`
}

// NoPeer is Row.Peer for an absolute figure.
const NoPeer = "absolute, no peer"

// EmitRow prints r as a `ROW {json}` line, which scripts/bench.sh collects
// into the report.
func EmitRow(r Row) {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	fmt.Printf("ROW %s\n", b)
}

// CPUTime is the CPU a process has used so far (utime+stime from
// /proc/PID/stat, at the kernel's 100 Hz tick), or 0 when it cannot be
// read. Over many requests, CPU per request is a cost that the machine's
// load does not inflate, unlike latency.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}
