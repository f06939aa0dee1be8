package agent

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func dkStart(t *testing.T, e *DockerExecutor, l Launch) Handle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := e.Start(ctx, l)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return h
}

func TestDockerBridgeDynamicHostPort(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())

	hostPort := dkFreePort(t)
	l := dkLaunch(t, img, "serve", ":8080")
	l.Spec.Container.Docker.Network = "BRIDGE"
	l.Spec.Container.Docker.PortMappings = []api.PortMapping{{ContainerPort: 8080, HostPort: dkInt(0)}}
	l.Spec.Ports = []int{hostPort}
	l.Env["PORT0"] = strconv.Itoa(hostPort)
	l.Env["PORT"] = strconv.Itoa(hostPort)
	h := dkStart(t, e, l)

	base := fmt.Sprintf("http://127.0.0.1:%d", hostPort)
	if got := dkGet(t, base+"/env/MARATHON_APP_ID"); got != "/test-app" {
		t.Errorf("MARATHON_APP_ID in the container = %q, want /test-app", got)
	}
	if got := dkGet(t, base+"/env/PORT0"); got != strconv.Itoa(hostPort) {
		t.Errorf("PORT0 in the container = %q, want %d", got, hostPort)
	}
	if ips := h.IPAddresses(); len(ips) != 0 {
		t.Errorf("BRIDGE task reports ipAddresses %v; want none (it is reached at the host port)", ips)
	}
	dkWaitSandbox(t, l, "stdout", "serving on :8080")
	dkWaitSandbox(t, l, "stderr", "stderr works")

	// Graceful stop: the server sees SIGTERM and exits 0.
	start := time.Now()
	dkStop(t, h)
	ex := dkWaitExit(t, h, 10*time.Second)
	if ex.Code != 0 || ex.OOM {
		t.Errorf("exit after graceful stop = %+v, want code 0", ex)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("graceful stop took %v; the server exits on SIGTERM at once", d)
	}
	if got := dkSandbox(t, l, "stdout"); !strings.Contains(got, "got SIGTERM") {
		t.Errorf("stdout = %q; want the server's SIGTERM message", got)
	}
	if n := len(dkContainers(t, cli, e.cfg.AgentID)); n != 0 {
		t.Errorf("%d containers left after the task exited; want them removed", n)
	}
}

func TestDockerBridgeTCPAndUDPMapping(t *testing.T) {
	// The 1.5+ form: networks[container/bridge] and container.portMappings.
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	hostPort := dkFreePort(t)
	l := dkLaunch(t, img, "serve", ":9000")
	l.Spec.Networks = []api.Network{{Mode: "container/bridge"}}
	l.Spec.Container.PortMappings = []api.PortMapping{{ContainerPort: 9000, Protocol: "tcp,udp"}}
	l.Spec.Ports = []int{hostPort}
	h := dkStart(t, e, l)
	defer dkStop(t, h)
	if got := dkGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); !strings.HasPrefix(got, "ok ") {
		t.Errorf("GET through the host port = %q", got)
	}
	ins, err := cli.ContainerInspect(context.Background(), h.(*dockerHandle).containerID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"9000/tcp", "9000/udp"} {
		var found bool
		for port, b := range ins.HostConfig.PortBindings {
			if string(port) == p && len(b) == 1 && b[0].HostPort == strconv.Itoa(hostPort) {
				found = true
			}
		}
		if !found {
			t.Errorf("no binding %s -> %d in %v", p, hostPort, ins.HostConfig.PortBindings)
		}
	}
}

func TestDockerHostNetwork(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	port := dkFreePort(t)
	l := dkLaunch(t, img, "serve", "127.0.0.1:$PORT0")
	l.Spec.Networks = []api.Network{{Mode: "host"}}
	l.Spec.Ports = []int{port}
	l.Env["PORT0"] = strconv.Itoa(port)
	h := dkStart(t, e, l)
	defer dkStop(t, h)
	// The server listens on the host's loopback: only host networking makes
	// that reachable from here.
	if got := dkGet(t, fmt.Sprintf("http://127.0.0.1:%d/env/HOST", port)); got != "127.0.0.1" {
		t.Errorf("HOST in the container = %q", got)
	}
}

func TestDockerNoneNetwork(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	l := dkLaunch(t, img, "serve", ":8080")
	l.Spec.Container.Docker.Network = "NONE"
	h := dkStart(t, e, l)
	defer dkStop(t, h)
	dkWaitSandbox(t, l, "stdout", "serving on")
	ins, err := cli.ContainerInspect(context.Background(), h.(*dockerHandle).containerID)
	if err != nil {
		t.Fatal(err)
	}
	if ins.HostConfig.NetworkMode != "none" {
		t.Errorf("network mode = %q, want none", ins.HostConfig.NetworkMode)
	}
	for name, n := range ins.NetworkSettings.Networks {
		if n.IPAddress != "" {
			t.Errorf("network %s gave the container address %s; NONE means loopback only", name, n.IPAddress)
		}
	}
}

func TestDockerExitCodes(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	for _, code := range []int{0, 3} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			l := dkLaunch(t, img, "exit", strconv.Itoa(code))
			h := dkStart(t, e, l)
			ex := dkWaitExit(t, h, 30*time.Second)
			if ex.Code != code || ex.OOM {
				t.Errorf("exit = %+v, want code %d", ex, code)
			}
			if !strings.Contains(ex.Message, "code "+strconv.Itoa(code)) {
				t.Errorf("message %q does not give the code", ex.Message)
			}
			if got := dkSandbox(t, l, "stdout"); got != "to stdout\n" {
				t.Errorf("sandbox stdout = %q", got)
			}
			if got := dkSandbox(t, l, "stderr"); got != "to stderr\n" {
				t.Errorf("sandbox stderr = %q", got)
			}
		})
	}
}

func TestDockerOOMKill(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	l := dkLaunch(t, img, "alloc")
	l.Spec.Resources.Mem = 16
	h := dkStart(t, e, l)
	ex := dkWaitExit(t, h, 60*time.Second)
	if !ex.OOM {
		t.Fatalf("exit = %+v, want an OOM kill", ex)
	}
	if want := "container killed: out of memory (limit 16 MB)"; ex.Message != want {
		t.Errorf("message = %q, want %q", ex.Message, want)
	}
}

func TestDockerStopKillsAfterGrace(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	l := dkLaunch(t, img, "stubborn")
	h := dkStart(t, e, l)
	dkWaitSandbox(t, l, "stdout", "ignoring SIGTERM")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	ex := h.Exit()
	if ex.Signal != "killed" || ex.Code != -1 {
		t.Errorf("exit = %+v, want killed", ex)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("stop took %v; want the 1s grace, then a kill", took)
	}
}

func TestDockerMissingImage(t *testing.T) {
	cli := dkOrSkip(t)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	img := "weft-test-missing-" + dkRand() + ":v1"
	l := dkLaunch(t, img, "serve")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := e.Start(ctx, l)
	if err == nil {
		t.Fatal("Start of a missing image succeeded")
	}
	want := "image " + img + " not found locally and the registry is unreachable: "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}
	if n := len(dkContainers(t, cli, e.cfg.AgentID)); n != 0 {
		t.Errorf("%d containers created for a missing image", n)
	}
}

func TestDockerRefusalsCreateNothing(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DockerConfig{VolumeRoot: t.TempDir()})
	cases := []struct {
		name string
		edit func(*Launch)
		want string
	}{
		{"volume outside the root", func(l *Launch) {
			l.Spec.Container.Volumes = []api.Volume{{HostPath: "/etc", ContainerPath: "/data", Mode: "RO"}}
		}, "container.volumes[0].hostPath: /etc refused: host volumes must be under"},
		{"volume escaping with ..", func(l *Launch) {
			l.Spec.Container.Volumes = []api.Volume{{HostPath: e.cfg.VolumeRoot + "/../../etc", ContainerPath: "/data"}}
		}, "refused: host volumes must be under"},
		{"unsupported parameter", func(l *Launch) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "device", Value: "/dev/sda"}}
		}, `parameter "device" is not supported by weft`},
		{"privileged", func(l *Launch) { l.Spec.Container.Docker.Privileged = true }, "does not run privileged containers"},
		{"weft without the overlay", func(l *Launch) {
			l.Spec.Networks = []api.Network{{Mode: "container", Name: "weft"}}
		}, `network "weft" is not available on this agent`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := dkLaunch(t, img, "serve")
			c.edit(&l)
			_, err := e.Start(context.Background(), l)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start error = %v, want it to contain %q", err, c.want)
			}
		})
	}
	if n := len(dkContainers(t, cli, e.cfg.AgentID)); n != 0 {
		t.Errorf("%d containers created for refused tasks", n)
	}
}

func TestDockerVolumeUnderRoot(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	root := t.TempDir()
	e := dkExecutor(t, cli, DockerConfig{VolumeRoot: root})
	l := dkLaunch(t, img, "exit", "0")
	l.Spec.Container.Volumes = []api.Volume{{HostPath: root + "/data", ContainerPath: "/data", Mode: "RO"}}
	l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "label", Value: "team=etl"}, {Key: "env", Value: "EXTRA=1"}}
	h, err := e.Start(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	// Inspect before it is removed: it may already have exited.
	ins, err := cli.ContainerInspect(context.Background(), h.(*dockerHandle).containerID)
	if err == nil {
		if got := ins.HostConfig.Binds; len(got) != 1 || got[0] != root+"/data:/data:ro" {
			t.Errorf("binds = %v", got)
		}
		if ins.Config.Labels["team"] != "etl" || ins.Config.Labels[LabelTaskID] != l.Task.ID {
			t.Errorf("labels = %v", ins.Config.Labels)
		}
	}
	if ex := dkWaitExit(t, h, 30*time.Second); ex.Code != 0 {
		t.Errorf("exit = %+v", ex)
	}
}

func TestDockerAvailable(t *testing.T) {
	cli := dkOrSkip(t)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	if err := e.Available(context.Background()); err != nil {
		t.Errorf("Available with a running engine: %v", err)
	}
	down, err := NewDockerExecutor(DockerConfig{Host: "unix://" + t.TempDir() + "/nothing.sock", AgentID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	err = down.Available(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), "start the Docker daemon") {
		t.Errorf("Available with no engine = %v, want a clear error", err)
	}
}

func TestDockerExecInContainer(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	l := dkLaunch(t, img, "serve", ":8080")
	l.Spec.Container.Docker.Network = "NONE"
	h := dkStart(t, e, l)
	defer dkStop(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, err := h.(Execer).Exec(ctx, []string{"/weftsrv", "exit", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 || !strings.Contains(string(out), "to stdout") || !strings.Contains(string(out), "to stderr") {
		t.Errorf("exec = %d %q; want code 3 and both outputs", code, out)
	}
	if pid := h.(Pider).Pid(); pid <= 0 {
		t.Errorf("Pid = %d", pid)
	} else if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.HasPrefix(string(b), "/weftsrv") {
		t.Errorf("pid %d is %q (%v), want the container's /weftsrv", pid, b, err)
	}
	// COMMAND checks run inside the container through its /bin/sh (the
	// test image's is weftsrv's stand-in).
	for cmd, want := range map[string]int{"true": 0, "false": 1, "exit 5": 5} {
		code, out, err := h.(CommandRunner).RunCommand(ctx, cmd)
		if err != nil || code != want {
			t.Errorf("RunCommand(%q) = %d %q %v, want code %d", cmd, code, out, err, want)
		}
	}
	// A missing binary fails the check, it does not pass it.
	if code, out, err := h.(Execer).Exec(ctx, []string{"/no/such/binary"}); err == nil && code == 0 {
		t.Errorf("exec of a missing binary = %d %q, want a failure", code, out)
	}
}

// TestDockerTaskUsage: a Docker task's usage comes from the Docker Engine
// with the same names as a process task's: cpu seconds, resident memory,
// and the limits the container was given (mem 64, cpus 0.5).
func TestDockerTaskUsage(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	l := dkLaunch(t, img, "serve", ":8080")
	l.Spec.Resources.Mem = 64
	l.Spec.Resources.Cpus = 0.5
	h := dkStart(t, e, l)
	u, ok := h.(Usager)
	if !ok {
		t.Fatalf("a Docker task's handle %T does not give its usage", h)
	}
	var got Usage
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got, err = u.Usage(); err == nil && got.MemRSSBytes > 0 && got.CpusUserTimeSecs+got.CpusSystemTimeSecs > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got.MemLimitBytes != 64<<20 {
		t.Errorf("mem limit %d, want %d", got.MemLimitBytes, 64<<20)
	}
	if got.CpusLimit != 0.5 {
		t.Errorf("cpus limit %v, want 0.5", got.CpusLimit)
	}
	if got.MemRSSBytes == 0 || got.MemRSSBytes > 64<<20 || got.MemTotalBytes < got.MemRSSBytes {
		t.Errorf("rss %d, total %d: want a resident size within the limit, at most the total", got.MemRSSBytes, got.MemTotalBytes)
	}
	if cpu := got.CpusUserTimeSecs + got.CpusSystemTimeSecs; cpu <= 0 || cpu > 60 {
		t.Errorf("cpu seconds %v", cpu)
	}
	if d := time.Since(time.Unix(0, int64(got.Timestamp*1e9))); d < -time.Minute || d > time.Minute {
		t.Errorf("timestamp %v is %v off", got.Timestamp, d)
	}
}
