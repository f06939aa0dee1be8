package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/weftnet/weft/sched/api"
)

func dkRand() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dkOrSkip returns an engine client, or skips the test when there is no
// Docker Engine to talk to.
func dkOrSkip(t testing.TB) *client.Client {
	t.Helper()
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			t.Skip("no Docker Engine: /var/run/docker.sock is absent")
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Skipf("no Docker Engine: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Skipf("the Docker Engine does not answer: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var (
	weftsrvOnce sync.Once
	weftsrvPath string
	weftsrvErr  error
)

// weftsrvBinary compiles testdata/weftsrv statically, once per test binary.
func weftsrvBinary(t testing.TB) string {
	t.Helper()
	weftsrvOnce.Do(func() {
		// One binary per source version, kept in the temp dir across runs.
		src, err := os.ReadFile("testdata/weftsrv/main.go")
		if err != nil {
			weftsrvErr = err
			return
		}
		sum := sha256.Sum256(src)
		weftsrvPath = filepath.Join(os.TempDir(), "weft-test-weftsrv-"+hex.EncodeToString(sum[:6]))
		if _, err := os.Stat(weftsrvPath); err == nil {
			return
		}
		tmp := fmt.Sprintf("%s.%d", weftsrvPath, os.Getpid())
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./testdata/weftsrv")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			weftsrvErr = fmt.Errorf("building weftsrv: %v\n%s", err, out)
			return
		}
		weftsrvErr = os.Rename(tmp, weftsrvPath)
	})
	if weftsrvErr != nil {
		t.Fatal(weftsrvErr)
	}
	return weftsrvPath
}

// dkImage builds a FROM-scratch image around weftsrv, tagged
// weft-test-<rand>, and removes it when the test ends.
func dkImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	bin, err := os.ReadFile(weftsrvBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("Dockerfile", 0o644, []byte("FROM scratch\nCOPY weftsrv /weftsrv\nCOPY weftsrv /bin/sh\nENTRYPOINT [\"/weftsrv\"]\nCMD [\"serve\", \":8080\"]\n"))
	add("weftsrv", 0o755, bin)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tag := "weft-test-" + dkRand() + ":latest"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("building test image: %v", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("building test image: %s", out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	return tag
}

// dkExecutor makes an executor with a unique agent id and removes every
// container carrying that id when the test ends.
func dkExecutor(t testing.TB, cli *client.Client, cfg DockerConfig) *DockerExecutor {
	t.Helper()
	if cfg.AgentID == "" {
		cfg.AgentID = "weft-test-agent-" + dkRand()
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 20 * time.Second
	}
	e, err := NewDockerExecutor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dkRemoveContainers(t, cli, cfg.AgentID)
		e.Close()
	})
	return e
}

func dkRemoveContainers(t testing.TB, cli *client.Client, agentID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelAgentID+"="+agentID))})
	if err != nil {
		t.Logf("listing test containers: %v", err)
		return
	}
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// dkContainers lists the containers of an agent id.
func dkContainers(t testing.TB, cli *client.Client, agentID string) []container.Summary {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelAgentID+"="+agentID))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// dkLaunch is a launch of the test image with args.
func dkLaunch(t testing.TB, img string, args ...string) Launch {
	id := "t" + dkRand()
	return Launch{
		Task: api.Task{ID: "test-app." + id, AppID: "/test-app"},
		Spec: api.TaskSpec{
			Args:      args,
			Resources: api.Resources{Cpus: 0.1, Mem: 64},
			Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: img}},
		},
		Sandbox: t.TempDir(),
		Env:     map[string]string{"MARATHON_APP_ID": "/test-app", "MARATHON_APP_DOCKER_IMAGE": img, "HOST": "127.0.0.1"},
		HostIP:  "127.0.0.1",
	}
}

// dkFreePort picks a free port outside the kernel's ephemeral range, so
// that no other process on a busy machine is handed it meanwhile.
func dkFreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		// 20000-20999: below e2e's task port ranges (21000-32000) and the
		// ephemeral range, so a test package running alongside cannot
		// take the port between this probe and the container's DNAT.
		port := 20000 + (int(b[0])<<8|int(b[1]))%1000
		l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port in 20000-20999")
	return 0
}

// dkEventually retries f until it succeeds or d passes.
func dkEventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dkGet fetches url, retrying until the server answers.
func dkGet(t testing.TB, url string) string {
	t.Helper()
	var body string
	c := &http.Client{Timeout: 2 * time.Second}
	dkEventually(t, 15*time.Second, func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
		}
		body = string(b)
		return nil
	})
	return body
}

func dkWaitExit(t testing.TB, h Handle, d time.Duration) Exit {
	t.Helper()
	select {
	case <-h.Done():
		return h.Exit()
	case <-time.After(d):
		t.Fatalf("task did not exit within %v", d)
	}
	return Exit{}
}

func dkStop(t testing.TB, h Handle) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Stop(ctx, 2*time.Second); err != nil {
		t.Errorf("stopping task: %v", err)
	}
}

func dkSandbox(t testing.TB, l Launch, name string) string {
	b, _ := os.ReadFile(filepath.Join(l.Sandbox, name))
	return string(b)
}

func dkWaitSandbox(t testing.TB, l Launch, name, want string) {
	t.Helper()
	dkEventually(t, 10*time.Second, func() error {
		if got := dkSandbox(t, l, name); !strings.Contains(got, want) {
			return fmt.Errorf("sandbox %s = %q, want it to contain %q", name, got, want)
		}
		return nil
	})
}

func dkInt(i int) *int { return &i }
