package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/weftnet/weft/sched/api"
)

// An agent restart: a new executor with the same agent id finds the running
// container, monitors it and can stop it; nothing is started twice.
func TestDockerRecoverReadopts(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	cfg := DefaultDockerConfig()
	cfg.AgentID = "weft-test-agent-" + dkRand()
	first := dkExecutor(t, cli, cfg)
	hostPort := dkFreePort(t)
	l := dkLaunch(t, img, "serve", ":8080")
	l.Spec.Container.Docker.Network = "BRIDGE"
	l.Spec.Container.Docker.PortMappings = []api.PortMapping{{ContainerPort: 8080, HostPort: dkInt(0)}}
	l.Spec.Ports = []int{hostPort}
	h1 := dkStart(t, first, l)
	url := fmt.Sprintf("http://127.0.0.1:%d/", hostPort)
	dkGet(t, url)
	first.Close() // the agent dies; its containers keep running

	second := dkExecutor(t, cli, cfg)
	got, err := second.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h2, ok := got[l.Task.ID]
	if !ok || len(got) != 1 {
		t.Fatalf("Recover = %v, want exactly task %s", got, l.Task.ID)
	}
	if h2.(*dockerHandle).containerID != h1.(*dockerHandle).containerID {
		t.Errorf("re-adopted a different container")
	}
	// Recover twice returns the same handle, not a second monitor.
	again, err := second.Recover(context.Background())
	if err != nil || again[l.Task.ID] != h2 {
		t.Errorf("second Recover = %v, %v; want the same handle", again, err)
	}
	// Starting the same task again adopts instead of duplicating.
	h3, err := second.Start(context.Background(), l)
	if err != nil {
		t.Fatalf("Start of a running task: %v", err)
	}
	if h3.(*dockerHandle).containerID != h1.(*dockerHandle).containerID {
		t.Errorf("Start of a running task made a new container")
	}
	if n := len(dkContainers(t, cli, cfg.AgentID)); n != 1 {
		t.Errorf("%d containers for one task", n)
	}
	if body := dkGet(t, url); !strings.HasPrefix(body, "ok ") {
		t.Errorf("re-adopted task answers %q", body)
	}
	select {
	case <-h2.Done():
		t.Fatal("re-adopted task reported done while it runs")
	default:
	}
	// The output of the re-adopted container still reaches the sandbox.
	dkStop(t, h2)
	if ex := h2.Exit(); ex.Code != 0 {
		t.Errorf("exit after stop = %+v", ex)
	}
	dkWaitSandbox(t, l, "stdout", "got SIGTERM")
	if n := len(dkContainers(t, cli, cfg.AgentID)); n != 0 {
		t.Errorf("%d containers left after stop", n)
	}
}

// A container that exited while the agent was down comes back as a finished
// handle carrying its exit code, and is then removed.
func TestDockerRecoverExited(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	// What a dead agent leaves behind: a labelled container that ran and
	// exited with nobody watching.
	l := dkLaunch(t, img, "exit", "3")
	plan, err := planDocker(l, e.planOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	created, err := cli.ContainerCreate(ctx, plan.Config, plan.Host, nil, nil, ContainerName(l.Task.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	got, err := e.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := got[l.Task.ID]
	if !ok {
		t.Fatalf("Recover = %v; want the exited task", got)
	}
	if ex := dkWaitExit(t, h, 10*time.Second); ex.Code != 3 {
		t.Errorf("exit = %+v, want code 3", ex)
	}
	if n := len(dkContainers(t, cli, e.cfg.AgentID)); n != 0 {
		t.Errorf("%d containers left after reporting the exit", n)
	}
}

// Cleanup removes containers of tasks the agent no longer knows, and leaves
// the others and other agents' containers alone.
func TestDockerCleanupRemovesOrphans(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	e := dkExecutor(t, cli, DefaultDockerConfig())
	other := dkExecutor(t, cli, DefaultDockerConfig()) // another agent on the same daemon
	keep := dkStart(t, e, dkLaunch(t, img, "stubborn"))
	orphanL := dkLaunch(t, img, "stubborn")
	orphan := dkStart(t, e, orphanL)
	foreignL := dkLaunch(t, img, "stubborn")
	foreign := dkStart(t, other, foreignL)

	keepTask := ""
	for _, c := range dkContainers(t, cli, e.cfg.AgentID) {
		if c.ID == keep.(*dockerHandle).containerID {
			keepTask = c.Labels[LabelTaskID]
		}
	}
	if keepTask == "" {
		t.Fatal("kept task's container not labelled")
	}
	if err := e.Cleanup(context.Background(), map[string]bool{keepTask: true}); err != nil {
		t.Fatal(err)
	}
	left := dkContainers(t, cli, e.cfg.AgentID)
	if len(left) != 1 || left[0].ID != keep.(*dockerHandle).containerID {
		t.Errorf("after Cleanup: %d containers, want only the kept one", len(left))
	}
	dkWaitExit(t, orphan, 10*time.Second)
	select {
	case <-keep.Done():
		t.Error("kept task stopped")
	case <-foreign.Done():
		t.Error("another agent's task was removed")
	default:
	}
	if n := len(dkContainers(t, cli, other.cfg.AgentID)); n != 1 {
		t.Errorf("other agent has %d containers, want 1", n)
	}
}

// Two agents with the same name on one Docker daemon (two test clusters, a
// playground next to a testbed) leave each other's containers alone; a
// restart on the same state directory still re-adopts.
func TestDockerSameAgentIDOtherInstance(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	name := "weft-test-agent-" + dkRand()
	cfgA := DefaultDockerConfig()
	cfgA.AgentID, cfgA.StateDir = name, t.TempDir()
	cfgB := cfgA
	cfgB.StateDir = t.TempDir()
	a := dkExecutor(t, cli, cfgA)
	b := dkExecutor(t, cli, cfgB)
	l := dkLaunch(t, img, "stubborn")
	h := dkStart(t, a, l)
	ctx := context.Background()
	if got, err := b.Recover(ctx); err != nil || len(got) != 0 {
		t.Errorf("the other instance recovered %v, %v; want nothing", got, err)
	}
	if err := b.Cleanup(ctx, map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Done():
		t.Fatalf("the other instance's Cleanup removed the container: %+v", h.Exit())
	case <-time.After(500 * time.Millisecond):
	}
	a2 := dkExecutor(t, cli, cfgA)
	got, err := a2.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[l.Task.ID]; !ok {
		t.Errorf("restart on the same state dir did not re-adopt: %v", got)
	}
	if err := a2.Cleanup(ctx, map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	dkWaitExit(t, h, 15*time.Second)
}

// An agent restart re-adopts every container of a Docker pod instance:
// the restarted executors hand back one instance of both containers (not
// the first as a task of its own), and the death of the second one still
// ends the instance and removes the first.
func TestDockerPodRecoverReadoptsEveryContainer(t *testing.T) {
	cli := dkOrSkip(t)
	img := dkImage(t, cli)
	cfg := DefaultDockerConfig()
	cfg.AgentID = "weft-test-agent-" + dkRand()
	first := dkExecutor(t, cli, cfg)
	l := dkLaunch(t, img)
	l.Spec = api.TaskSpec{Pod: &api.PodTaskSpec{Containers: []api.PodTaskContainer{
		{Name: "ct1", Image: img, Argv: []string{"serve", ":8080"}, Resources: api.Resources{Cpus: 0.1, Mem: 32}},
		{Name: "ct2", Image: img, Argv: []string{"serve", ":8081"}, ExecCheck: "true", Resources: api.Resources{Cpus: 0.1, Mem: 32}},
	}}}
	ctx := context.Background()
	h1, err := NewPodExecutor(first, nil).Start(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{} // container name → id
	for i, part := range h1.(*dockerPodHandle).parts {
		ids[h1.(*dockerPodHandle).names[i]] = part.(*dockerHandle).containerID
	}
	first.Close() // the agent dies; its containers keep running

	second := dkExecutor(t, cli, cfg)
	pods := NewPodExecutor(second, nil)
	got, err := pods.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := second.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 0 {
		t.Errorf("the Docker executor recovered %v as tasks; the pod executor owns the instance's containers", tasks)
	}
	h2, ok := got[l.Task.ID].(*dockerPodHandle)
	if !ok || len(got) != 1 {
		t.Fatalf("pod Recover = %v, want exactly instance %s", got, l.Task.ID)
	}
	if len(h2.parts) != 2 {
		t.Fatalf("re-adopted %d containers of the instance, want 2", len(h2.parts))
	}
	for i, part := range h2.parts {
		if id := part.(*dockerHandle).containerID; id != ids[h2.names[i]] {
			t.Errorf("container %s re-adopted as %s, want %s", h2.names[i], short(id), short(ids[h2.names[i]]))
		}
	}
	if h2.names[0] != "ct1" {
		t.Errorf("the network holder is %s, want ct1", h2.names[0])
	}
	if code, out, err := h2.RunCommand(ctx, "true"); err != nil || code != 0 {
		t.Errorf("ct2's exec check after the restart: code %d, %q, %v", code, out, err)
	}
	if err := cli.ContainerKill(ctx, ids["ct2"], "KILL"); err != nil {
		t.Fatal(err)
	}
	ex := dkWaitExit(t, h2, 30*time.Second)
	if !strings.HasPrefix(ex.Message, "container ct2: ") {
		t.Errorf("instance exit %+v, want ct2's", ex)
	}
	dkEventually(t, 30*time.Second, func() error {
		if n := len(dkContainers(t, cli, cfg.AgentID)); n != 0 {
			return fmt.Errorf("%d containers left after the instance ended", n)
		}
		return nil
	})
}
