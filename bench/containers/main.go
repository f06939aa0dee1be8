// Command containers measures weft's Docker executor against the same Engine
// API calls made directly through the same SDK client (the peer), on the same
// engine, so the ratio is weft's own overhead: launch latency (Start until the container runs) for a
// FROM-scratch image already present, and a bulk start of many containers on
// one executor (time and the agent process's memory).
//
//	go run ./bench/containers [-n 50] [-bulk 100] [-network BRIDGE|HOST|NONE]
//
// It needs a Docker Engine and the go tool (it compiles the test server);
// no registry. Everything it creates is labelled weft.agent-id=weft-bench-*
// and removed at the end.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

func main() {
	n := flag.Int("n", 50, "launches for the latency figure")
	bulk := flag.Int("bulk", 100, "containers started at once for the bulk figure")
	network := flag.String("network", "BRIDGE", "network of the containers: BRIDGE, HOST or NONE")
	apiN := flag.Int("api-n", 20, "apps for the API-to-TASK_RUNNING figure through a real `weft up` (needs root; 0 skips)")
	flag.Parse()
	if err := run(*n, *bulk, *apiN, strings.ToUpper(*network)); err != nil {
		fmt.Fprintln(os.Stderr, "bench/containers:", err)
		os.Exit(1)
	}
}

func randHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func run(n, bulk, apiN int, network string) error {
	ctx := context.Background()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("no Docker Engine: %w", err)
	}
	agentID := "weft-bench-" + randHex()
	img, err := buildImage(ctx, cli)
	if err != nil {
		return err
	}
	defer func() {
		removeAll(cli, agentID)
		_, _ = cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true, PruneChildren: true})
	}()

	cfg := agent.DefaultDockerConfig()
	cfg.AgentID = agentID
	e, err := agent.NewDockerExecutor(cfg)
	if err != nil {
		return err
	}
	defer e.Close()

	fmt.Printf("weft Docker executor vs the same SDK calls without weft, engine %s, network %s, image FROM scratch (%s), %d CPUs, load average %s\n\n", engineVersion(ctx, cli), network, img, runtime.NumCPU(), loadavg())
	sandboxes, err := os.MkdirTemp("", "weft-bench-sandboxes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sandboxes)

	// Launch latency, alternating executor and CLI launches.
	var weft, peer []time.Duration
	var handles []agent.Handle
	for i := 0; i < n; i++ {
		l := launch(img, agentID, network, i, sandboxes)
		t0 := time.Now()
		h, err := e.Start(ctx, l)
		if err != nil {
			return fmt.Errorf("executor launch %d: %w", i, err)
		}
		weft = append(weft, time.Since(t0))
		handles = append(handles, h)

		t0 = time.Now()
		if err := peerStart(ctx, cli, img, agentID, network, fmt.Sprintf("weft-bench-peer-%s-%d", agentID, i)); err != nil {
			return fmt.Errorf("peer launch %d: %w", i, err)
		}
		peer = append(peer, time.Since(t0))
	}
	stopAll(handles)
	removeAll(cli, agentID)
	fmt.Println("launch latency (Start until the container runs)")
	fmt.Printf("  %-16s %s\n", "weft executor", summary(weft))
	fmt.Printf("  %-16s %s\n", "SDK create+start", summary(peer))
	fmt.Printf("  ratio p99 weft/SDK-peer: %.2f\n\n", float64(pct(weft, 99))/float64(pct(peer, 99)))

	// The figure: from the API call to TASK_RUNNING, whole stack.
	var apiLat []time.Duration
	if apiN > 0 {
		var err error
		apiLat, err = apiLatency(apiN, img, cli)
		if err != nil {
			fmt.Printf("API to TASK_RUNNING: skipped (%v)\n\n", err)
		} else {
			fmt.Println("from PUT /v2/apps to TASK_RUNNING in /v2/apps/ID/tasks (weft up, host networking)")
			fmt.Printf("  %-16s %s\n\n", "weft up", summary(apiLat))
		}
	}

	// Bulk start on one executor.
	runtime.GC()
	rssBefore := rssKB()
	handles = make([]agent.Handle, bulk)
	errs := make([]error, bulk)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < bulk; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			handles[i], errs[i] = e.Start(ctx, launch(img, agentID, network, n+i, sandboxes))
		}(i)
	}
	wg.Wait()
	bulkTime := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("bulk launch %d: %w", i, err)
		}
	}
	rssAfter := rssKB()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goroutines := runtime.NumGoroutine()
	running := 0
	list, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", agent.LabelAgentID+"="+agentID))})
	if err == nil {
		running = len(list)
	}
	t1 := time.Now()
	stopAll(handles)
	stopTime := time.Since(t1)
	removeAll(cli, agentID)

	// The peer: the same number of SDK create+start at once.
	t2 := time.Now()
	peerErrs := make([]error, bulk)
	for i := 0; i < bulk; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			peerErrs[i] = peerStart(ctx, cli, img, agentID, network, fmt.Sprintf("weft-bench-peer-%s-b%d", agentID, i))
		}(i)
	}
	wg.Wait()
	peerBulk := time.Since(t2)
	removeAll(cli, agentID)
	for _, err := range peerErrs {
		if err != nil {
			return fmt.Errorf("bulk peer launch: %w", err)
		}
	}
	rate := float64(bulk) / bulkTime.Seconds()
	fmt.Printf("bulk start of %d containers on one executor\n", bulk)
	fmt.Printf("  all started in %v (%.1f containers/s), %d running per the engine\n", bulkTime.Round(time.Millisecond), rate, running)
	fmt.Printf("  agent process RSS %d MB with %d containers monitored (%d MB before; Go heap in use %d MB, %d goroutines)\n", rssAfter/1024, bulk, rssBefore/1024, ms.HeapInuse>>20, goroutines)
	fmt.Printf("  all stopped and removed in %v\n", stopTime.Round(time.Millisecond))
	fmt.Printf("  peer: %d x SDK create+start at once: %v (%.1f/s); ratio weft/peer time %.2f\n", bulk, peerBulk.Round(time.Millisecond), float64(bulk)/peerBulk.Seconds(), bulkTime.Seconds()/peerBulk.Seconds())
	fmt.Printf("  (quoted, not run here: Mesos 1.7 reports about 1,000 containers in 30 s on one agent)\n\n")

	verdict := "meets"
	target := weft
	if len(apiLat) > 0 {
		target = apiLat
	}
	if pct(target, 99) > 2*time.Second {
		verdict = "MISSES"
	}
	apiPart := ""
	if len(apiLat) > 0 {
		apiPart = fmt.Sprintf("API to TASK_RUNNING p99 %v, ", pct(apiLat, 99).Round(time.Millisecond))
	}
	const peerName = "the same Engine API calls through the same SDK (ContainerCreate+ContainerStart+ContainerInspect)"
	benchkit.EmitRow(benchkit.Row{Bench: "containers", Figure: "executor launch p99 (Start until running)", Weft: pct(weft, 99).Round(time.Millisecond).String(),
		Peer: peerName, PeerValue: pct(peer, 99).Round(time.Millisecond).String(), Ratio: float64(pct(weft, 99)) / float64(pct(peer, 99)), Target: "≤ 2s", Met: pct(weft, 99) <= 2*time.Second})
	if len(apiLat) > 0 {
		benchkit.EmitRow(benchkit.Row{Bench: "containers", Figure: "PUT /v2/apps to TASK_RUNNING p99 (weft up)", Weft: pct(apiLat, 99).Round(time.Millisecond).String(),
			Peer: benchkit.NoPeer, Target: "≤ 2s", Met: pct(apiLat, 99) <= 2*time.Second})
	}
	benchkit.EmitRow(benchkit.Row{Bench: "containers", Figure: fmt.Sprintf("bulk start of %d containers (time)", bulk), Weft: bulkTime.Round(time.Millisecond).String(),
		Peer: peerName, PeerValue: peerBulk.Round(time.Millisecond).String(), Ratio: bulkTime.Seconds() / peerBulk.Seconds(), Met: true})
	fmt.Printf("SUMMARY containers: %slaunch p99 %v (%s the 2 s target; SDK peer on the same engine p99 %v, ratio %.2f); %d containers started in %v (%.1f/s; SDK peer %v), agent RSS %d MB; load average %s\n",
		apiPart, pct(weft, 99).Round(time.Millisecond), verdict, pct(peer, 99).Round(time.Millisecond), float64(pct(weft, 99))/float64(pct(peer, 99)), bulk, bulkTime.Round(time.Millisecond), rate, peerBulk.Round(time.Millisecond), rssAfter/1024, loadavg())
	return nil
}

func launch(img, agentID, network string, i int, sandboxes string) agent.Launch {
	id := fmt.Sprintf("bench.%s-%d", agentID, i)
	d := &api.Docker{Image: img}
	switch network {
	case "BRIDGE":
		d.Network = "BRIDGE"
	case "NONE":
		d.Network = "NONE"
	default:
		d.Network = "HOST"
	}
	return agent.Launch{
		Task: api.Task{ID: id, AppID: "/bench"},
		Spec: api.TaskSpec{
			Args:      []string{"serve", "127.0.0.1:0"},
			Resources: api.Resources{Cpus: 0.1, Mem: 32},
			Container: &api.Container{Type: "DOCKER", Docker: d},
		},
		Env:     map[string]string{"MARATHON_APP_ID": "/bench", "HOST": "127.0.0.1"},
		Sandbox: filepath.Join(sandboxes, id),
	}
}

// peerStart is the side-by-side peer: the same Engine API calls the
// executor makes (ContainerCreate, ContainerStart, ContainerInspect) through
// the same SDK client, with the options the executor sets (label, cpu
// shares, memory), and nothing else of weft. The difference between the two
// is weft's own overhead.
func peerStart(ctx context.Context, cli *client.Client, img, agentID, network, name string) error {
	cfg := &container.Config{
		Image:  img,
		Cmd:    []string{"serve", "127.0.0.1:0"},
		Env:    []string{"MARATHON_APP_ID=/bench", "HOST=127.0.0.1"},
		Labels: map[string]string{agent.LabelAgentID: agentID},
	}
	host := &container.HostConfig{Resources: container.Resources{CPUShares: 102, Memory: 32 << 20, MemorySwap: 32 << 20}}
	switch network {
	case "HOST":
		host.NetworkMode = "host"
	case "NONE":
		host.NetworkMode = "none"
	default:
		host.NetworkMode = "bridge"
	}
	created, err := cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		return fmt.Errorf("creating container: %w", err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting container: %w", err)
	}
	if _, err := cli.ContainerInspect(ctx, created.ID); err != nil {
		return fmt.Errorf("inspecting container: %w", err)
	}
	return nil
}

func stopAll(hs []agent.Handle) {
	var wg sync.WaitGroup
	for _, h := range hs {
		if h == nil {
			continue
		}
		wg.Add(1)
		go func(h agent.Handle) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = h.Stop(ctx, 2*time.Second)
		}(h)
	}
	wg.Wait()
}

func removeAll(cli *client.Client, agentID string) {
	ctx := context.Background()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", agent.LabelAgentID+"="+agentID))})
	if err != nil {
		return
	}
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p+99)/100 - 1
	if i < 0 {
		i = 0
	}
	return s[i]
}

func summary(ds []time.Duration) string {
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v  (n=%d)",
		pct(ds, 50).Round(time.Millisecond), pct(ds, 90).Round(time.Millisecond),
		pct(ds, 99).Round(time.Millisecond), pct(ds, 100).Round(time.Millisecond), len(ds))
}

func rssKB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.Atoi(f[1])
				return v
			}
		}
	}
	return 0
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func engineVersion(ctx context.Context, cli *client.Client) string {
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		return "?"
	}
	return v.Version
}

// buildImage compiles the test server statically and builds a FROM-scratch
// image around it.
func buildImage(ctx context.Context, cli *client.Client) (string, error) {
	dir, err := os.MkdirTemp("", "weft-bench-containers-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "weftsrv")
	src := "./agent/testdata/weftsrv"
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("run from the repository root (%s not found)", src)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test server: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY weftsrv /weftsrv\nENTRYPOINT [\"/weftsrv\"]\n")},
		{"weftsrv", 0o755, data},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	tag := "weft-bench-" + randHex() + ":latest"
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return "", fmt.Errorf("building the image: %w", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		return "", fmt.Errorf("building the image: %s", out)
	}
	return tag, nil
}
