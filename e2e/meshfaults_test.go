package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh"
)

// faultEnv is a place the overlay cannot run: each weft process gets a
// fresh network and mount namespace, then loses CAP_NET_ADMIN, its root
// uid, or /dev/net/tun (a tmpfs over /dev/net), or runs as root of a user
// namespace that does not own the network namespace (a rootless container).
type faultEnv struct {
	name   string
	noTUN  bool
	noCap  bool // root without CAP_NET_ADMIN (bounding set)
	nobody bool // uid/gid 65534: no capabilities at all
	userns bool // root of a new user namespace that does not own the netns
	// takeName is an interface name a veth holds before weft starts.
	takeName string
	// The one message names these, and always --no-mesh.
	want []string
	// ... and not these.
	not []string
}

// faultTools are the commands the fault tests drive.
type faultTools struct{ sh, ip, mount, setpriv, unshare, weft string }

func findFaultTools(t *testing.T) faultTools {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, dropping capabilities)")
	}
	var ft faultTools
	for _, c := range []struct {
		dst  *string
		name string
	}{{&ft.sh, "sh"}, {&ft.ip, "ip"}, {&ft.mount, "mount"}, {&ft.setpriv, "setpriv"}, {&ft.unshare, "unshare"}} {
		p, err := exec.LookPath(c.name)
		if err != nil {
			for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
				if _, e := os.Stat(filepath.Join(d, c.name)); e == nil {
					p, err = filepath.Join(d, c.name), nil
					break
				}
			}
		}
		if err != nil {
			t.Skipf("needs %s (Debian: util-linux, iproute2, mount)", c.name)
		}
		*c.dst = p
	}
	// A copy anyone can run: the unprivileged case runs it as nobody.
	dir, err := os.MkdirTemp("", "weft-meshfaults-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ft.weft = filepath.Join(dir, "weft")
	if err := copyFile(testbin.Weft(t), ft.weft, 0o755); err != nil {
		t.Fatal(err)
	}
	return ft
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// faultToken is a join token for the nodes of these tests.
var faultToken = func() string {
	t, err := mesh.GenerateToken()
	if err != nil {
		panic(err)
	}
	return t
}()

// command builds `weft args` inside env: sh (still root, in the new
// namespaces) brings lo up and hides /dev/net/tun, then setpriv drops what
// env drops (or unshare enters a user namespace) and execs weft, which
// keeps the PID.
func (ft faultTools) command(env faultEnv, args ...string) *exec.Cmd {
	// A node that starts by mistake keeps its UAPI socket to itself.
	script := `"$IP" link set lo up || exit 97
mkdir -p /run/wireguard && "$MOUNT" -t tmpfs -o size=16k,mode=0700 tmpfs /run/wireguard || exit 96
if [ -n "$HIDE_TUN" ]; then "$MOUNT" -t tmpfs -o size=16k tmpfs /dev/net || exit 98; fi
if [ -n "$TAKE_NAME" ]; then "$IP" link add "$TAKE_NAME" type veth peer name wfx0 || exit 95; fi
exec "$@"`
	argv := []string{"-c", script, "sh"}
	switch {
	case env.nobody:
		argv = append(argv, ft.setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--")
	case env.noCap:
		argv = append(argv, ft.setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--")
	case env.userns:
		argv = append(argv, ft.unshare, "--user", "--map-root-user", "--")
	}
	argv = append(argv, ft.weft)
	argv = append(argv, args...)
	cmd := exec.Command(ft.sh, argv...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEFT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Nodes carry a join token, as the README has them do: the fault under
	// test must be the one line weft prints, not a missing-token warning.
	cmd.Env = append(cmd.Env, "IP="+ft.ip, "MOUNT="+ft.mount, "WEFT_TOKEN="+faultToken)
	if env.noTUN {
		cmd.Env = append(cmd.Env, "HIDE_TUN=1")
	}
	if env.takeName != "" {
		cmd.Env = append(cmd.Env, "TAKE_NAME="+env.takeName)
	}
	// Go makes the new mount namespace's mounts private before exec.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Setpgid: true}
	return cmd
}

// dataDir is a data dir the unprivileged case can write.
func faultDataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "weft-meshfaults-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMeshFaults runs the real binary's node commands where the overlay
// cannot run (no CAP_NET_ADMIN, an unprivileged user, root of a user
// namespace that does not own the network namespace, no /dev/net/tun, or
// no CAP_NET_ADMIN and no /dev/net/tun) and checks that each stops at once, before it starts anything,
// with exit status 1 and one message naming what is missing and how to
// run; and that --no-mesh, the way out it names, does run there.
func TestMeshFaults(t *testing.T) {
	ft := findFaultTools(t)
	_, noTUNHere := os.Stat("/dev/net/tun")
	_, genlErr := netlink.GenlFamilyGet("wireguard")
	kernelWG := genlErr == nil

	capWant := []string{"CAP_NET_ADMIN", "as root"}
	tunWant := []string{"/dev/net/tun", "does not exist", "modprobe tun", "--device /dev/net/tun"}
	envs := []faultEnv{
		{name: "no-cap", noCap: true, want: capWant},
		{name: "unprivileged", nobody: true, want: capWant},
		{name: "userns", userns: true, want: append([]string{"user namespace"}, capWant...)},
		{name: "no-tun", noTUN: true, want: tunWant, not: []string{"CAP_NET_ADMIN"}},
		{name: "no-cap-no-tun", noTUN: true, noCap: true, want: append([]string{"/dev/net/tun"}, capWant...)},
	}
	if noTUNHere == nil {
		// With /dev/net/tun present only the capability is missing.
		envs[0].not = []string{"/dev/net/tun"}
		envs[1].not = []string{"/dev/net/tun"}
		envs[2].not = []string{"/dev/net/tun"}
	}
	// Kernel WireGuard needs no TUN device: force wireguard-go, and
	// without the capability only that is missing.
	var extra []string
	if kernelWG {
		extra = []string{"--wg-userspace"}
		envs[4].want = capWant
	}
	// Every command probes before it creates its key.
	commands := []struct {
		name string
		args []string
	}{
		{"agent", []string{"agent", "--join", "127.0.0.1:7946"}},
		{"master", []string{"master", "--no-dns", "--no-lb"}},
		{"up --mesh", []string{"up", "--mesh", "--no-dns", "--no-lb"}},
		{"mesh node", []string{"mesh", "node", "--agent-addr", "127.0.0.1:0"}},
	}
	for _, env := range envs {
		for _, c := range commands {
			t.Run(env.name+"/"+c.name, func(t *testing.T) {
				data := faultDataDir(t)
				args := append(append([]string{}, c.args...), "--data-dir", data, "--node-name", "f1")
				args = append(args, extra...)
				cmd := ft.command(env, args...)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				start := time.Now()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				timer := time.AfterFunc(10*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
				err := cmd.Wait()
				timer.Stop()
				took := time.Since(start)
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Fatalf("exit: %v after %v, want status 1\nstdout:\n%s\nstderr:\n%s", err, took, stdout.String(), stderr.String())
				}
				if took > 5*time.Second {
					t.Errorf("took %v to refuse", took)
				}
				msg := checkOneMessage(t, stderr.String())
				for _, w := range append(env.want, "--no-mesh") {
					if !strings.Contains(msg, w) {
						t.Errorf("the message does not say %q: %s", w, msg)
					}
				}
				for _, n := range env.not {
					if strings.Contains(msg, n) {
						t.Errorf("the message names %q, which is there: %s", n, msg)
					}
				}
				if strings.Contains(msg, "did not start") {
					t.Errorf("wrapped noise in the message: %s", msg)
				}
				if _, err := os.Stat(filepath.Join(data, "mesh", "wireguard.key")); err == nil {
					t.Errorf("a WireGuard key was created before the check refused the node")
				}
				if stdout.Len() > 0 {
					t.Errorf("something started and printed its addresses:\n%s", stdout.String())
				}
			})
		}
	}

	// An interface name another link holds is no missing privilege: the
	// message names the interface and the flag to pick another.
	t.Run("interface-taken/agent", func(t *testing.T) {
		data := faultDataDir(t)
		cmd := ft.command(faultEnv{takeName: "weft0"}, append([]string{"agent", "--join", "127.0.0.1:7946",
			"--data-dir", data, "--node-name", "f1"}, extra...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(10*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		err := cmd.Wait()
		timer.Stop()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v, want status 1\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
		msg := checkOneMessage(t, stderr.String())
		for _, w := range []string{"weft0", "exists already", "--interface"} {
			if !strings.Contains(msg, w) {
				t.Errorf("the message does not say %q: %s", w, msg)
			}
		}
		if strings.Contains(msg, "did not start") {
			t.Errorf("wrapped noise in the message: %s", msg)
		}
	})

	// The way out the message names runs in the same place.
	t.Run("no-cap/master --no-mesh", func(t *testing.T) {
		data := faultDataDir(t)
		cmd := ft.command(faultEnv{noCap: true}, "master", "--no-mesh", "--no-dns", "--no-lb",
			"--gossip-addr", "127.0.0.1:7946", "--data-dir", data, "--node-name", "f1")
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for !strings.Contains(out.String(), "agent API") {
			select {
			case err := <-done:
				t.Fatalf("weft master --no-mesh without CAP_NET_ADMIN exited: %v\n%s", err, out.String())
			case <-ctx.Done():
				t.Fatalf("weft master --no-mesh did not start within 10s:\n%s", out.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("weft master --no-mesh stopped with %v:\n%s", err, out.String())
			}
		case <-ctx.Done():
			t.Fatalf("weft master --no-mesh did not stop on SIGINT:\n%s", out.String())
		}
	})
}

// checkOneMessage wants stderr to hold exactly one error, on its last line,
// as "weft: <message>", with no error log lines before it.
func checkOneMessage(t *testing.T, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	msg, ok := strings.CutPrefix(last, "weft: ")
	if !ok {
		t.Fatalf("the last line is no `weft: ` error:\n%s", stderr)
	}
	for _, l := range lines[:len(lines)-1] {
		if strings.HasPrefix(l, "weft: ") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			t.Errorf("more than one message:\n%s", stderr)
			break
		}
	}
	return msg
}

// lockedBuffer is an output buffer read while the process writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
