package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// handedOut is every port freePort returned in this process: tests run in
// parallel, and a port free when one test looked could go to another
// before the first test's weft bound it (TestPromtoolCheckMetrics' master
// once failed with "address already in use").
var handedOut sync.Map

// freePort returns a port on 127.0.0.1, free for TCP and UDP a moment ago,
// from above the kernel's ephemeral range: outgoing connections never take
// it, so a test can stop and restart a listener on it (port 0 would hand
// out ephemeral ports, which any connection may grab in between). No port
// is returned twice.
func freePort(t *testing.T) int {
	t.Helper()
	lo, hi := 61000, 65535
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var elo, ehi int
		if _, err := fmt.Sscan(string(b), &elo, &ehi); err == nil && ehi < 64500 {
			lo = ehi + 1
		}
	}
	for i := 0; i < 200; i++ {
		p := lo + rand.Intn(hi-lo)
		if _, taken := handedOut.LoadOrStore(p, true); taken {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return p
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// proc is a weft process started by a test.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startWeft runs the weft binary with args; output goes to a log file that
// is printed if the test fails. The process is stopped on cleanup.
func startWeft(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, append([]string{testbin.Weft(t)}, args...)...)
}

// startCmd is startWeft for a command line that runs weft (under prlimit,
// say).
func startCmd(t *testing.T, name string, argv ...string) *proc {
	t.Helper()
	bin, args := argv[0], argv[1:]
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("=== %s log:\n%s", name, tail(string(b), 8000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// stop sends SIGINT (Ctrl-C) and waits; SIGKILL to the process group after
// grace. It reports whether the process exited on its own.
func (p *proc) stop(grace time.Duration) bool {
	select {
	case <-p.done:
		return true
	default:
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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// eventually retries fn until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runningTasks returns the app's tasks in TASK_RUNNING.
// runningTasks lists an app's running tasks from weft's /v1/state, which
// carries weft's own facts (site, message) that Marathon's task JSON does
// not.
func runningTasks(ctx context.Context, c *api.Client, id string) ([]api.Task, error) {
	st, err := c.Watch(ctx, 0, 0)
	if err != nil {
		return nil, err
	}
	var out []api.Task
	for _, tk := range st.Tasks {
		if tk.AppID == id && tk.State == api.TaskRunning {
			out = append(out, *tk)
		}
	}
	return out, nil
}

func wantRunning(ctx context.Context, c *api.Client, id string, n int) error {
	ts, err := runningTasks(ctx, c, id)
	if err != nil {
		return err
	}
	if len(ts) != n {
		states := []string{}
		if app, err := c.App(ctx, id); err == nil {
			for _, tk := range app.Tasks {
				states = append(states, tk.ID+"="+tk.State)
			}
		}
		return fmt.Errorf("%d running, want %d (tasks: %s)", len(ts), n, strings.Join(states, " "))
	}
	return nil
}

// waitLeader waits until the master API answers and has a leader.
func waitLeader(t *testing.T, ctx context.Context, c *api.Client) {
	t.Helper()
	eventually(t, 30*time.Second, "master API with a leader", func() error {
		_, err := c.Do(ctx, "GET", "/v2/leader", nil, nil)
		return err
	})
}

// freePortRange returns "lo-hi", n ports below the ephemeral range that
// were all free on loopback a moment ago, none handed out before.
func freePortRange(t *testing.T, n int) string {
	t.Helper()
next:
	for i := 0; i < 100; i++ {
		lo := 21000 + rand.Intn(11000-n)
		for p := lo; p < lo+n; p++ {
			free := false
			if _, taken := handedOut.LoadOrStore(p, true); !taken {
				if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
					l.Close()
					free = true
				} else {
					handedOut.Delete(p)
				}
			}
			if !free {
				for q := lo; q < p; q++ {
					handedOut.Delete(q)
				}
				continue next
			}
		}
		return fmt.Sprintf("%d-%d", lo, lo+n-1)
	}
	t.Fatalf("no %d free ports in a row in 21000-32000", n)
	return ""
}
