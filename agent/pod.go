package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// LabelPodInstance marks a container of a pod instance other than the first:
// the instance's task id. The Docker executor's Recover does not adopt such
// a container as a task of its own, and its Cleanup keeps it while the
// instance is kept.
const LabelPodInstance = "weft.pod-instance"

// LabelPodPart is on every container of a pod instance: its PodPart, as
// JSON.
const LabelPodPart = "weft.pod-part"

// PodPart identifies one container of a pod instance, so that a restarted
// agent can reassemble the whole instance from what it finds running
// (PodExecutor.Recover).
type PodPart struct {
	Name  string `json:"name"`  // the container's name in the pod
	Index int    `json:"index"` // its place among the pod's containers; 0 holds the network
	Count int    `json:"count"` // how many containers the instance has
	// ExecCheck is the container's exec health check command, run in it.
	ExecCheck string `json:"execCheck,omitempty"`
}

// podPartOf is the PodPart of container i of l's pod.
func podPartOf(l Launch, i int) *PodPart {
	c := l.Spec.Pod.Containers[i]
	return &PodPart{Name: c.Name, Index: i, Count: len(l.Spec.Pod.Containers), ExecCheck: c.ExecCheck}
}

// PodExecutor runs pod instances (spec.Pod).
//
// Containers with images are Docker containers: the first one is started
// as a Docker task of the instance's id, with the instance's network, host
// ports and addresses, and the others join its network namespace
// (NetworkMode container:<id>), so they all reach each other on 127.0.0.1.
// Pod volumes are bound into the containers that mount them: host paths
// (under the agent's volume root, as for apps) and ephemeral directories in
// the instance's sandbox.
//
// A pod whose containers have no image (Mesos command containers; the
// master accepts them on host networking only) runs them as processes
// through the process executor, each in its own sandbox directory (the
// first in the instance's sandbox, the others in containers/<name>), where
// each volume mount is a symlink at its relative mountPath.
//
// The instance lives and dies as a unit: when one container exits, the
// others are stopped, and the instance's exit is that container's.
type PodExecutor struct {
	d *DockerExecutor  // nil: no Docker on this agent
	p *ProcessExecutor // nil: no process containers
}

var (
	_ Executor = (*PodExecutor)(nil)
	_ Prober   = (*PodExecutor)(nil)
)

// NewPodExecutor returns a pod executor running image containers through
// d and command containers through p; either may be nil.
func NewPodExecutor(d *DockerExecutor, p *ProcessExecutor) *PodExecutor {
	return &PodExecutor{d: d, p: p}
}

// Name is "pod".
func (p *PodExecutor) Name() string { return "pod" }

// Handles reports whether spec is a pod instance.
func (p *PodExecutor) Handles(spec api.TaskSpec) bool { return spec.Pod != nil }

// Available is the Docker Engine's availability (pods of command
// containers need none).
func (p *PodExecutor) Available(ctx context.Context) error {
	if p.d == nil {
		return nil
	}
	return p.d.Available(ctx)
}

// Recover reassembles the instances that outlived a previous agent from
// the containers the Docker and process executors find (each labelled or
// recorded with its PodPart), keyed by instance id. An instance one of
// whose containers did not survive comes back ended, with that container
// named, and the containers that did survive are stopped: an instance
// lives and dies as a unit.
func (p *PodExecutor) Recover(ctx context.Context) (map[string]Handle, error) {
	var parts []recoveredPart
	if p.d != nil {
		ds, err := p.d.recoverPodParts(ctx)
		if err != nil {
			return nil, err
		}
		parts = append(parts, ds...)
	}
	if p.p != nil {
		ps, err := p.p.recoverPodParts()
		if err != nil {
			return nil, err
		}
		parts = append(parts, ps...)
	}
	return assemblePods(parts), nil
}

// recoveredPart is one container of a pod instance found after an agent
// restart.
type recoveredPart struct {
	instance string // the instance's task id
	part     PodPart
	h        Handle
	docker   bool
}

// assemblePods groups recovered containers by instance into instance
// handles. A container that is missing from its instance becomes a part
// that has ended, so the instance ends at once with its name.
func assemblePods(parts []recoveredPart) map[string]Handle {
	byInstance := map[string][]recoveredPart{}
	for _, rp := range parts {
		byInstance[rp.instance] = append(byInstance[rp.instance], rp)
	}
	out := map[string]Handle{}
	for id, ps := range byInstance {
		count, docker := 0, false
		for _, rp := range ps {
			count = max(count, rp.part.Count, rp.part.Index+1)
			docker = docker || rp.docker
		}
		h := &podHandle{names: make([]string, count), parts: make([]Handle, count), checks: map[string]int{},
			done: make(chan struct{})}
		for _, rp := range ps {
			if h.parts[rp.part.Index] != nil {
				// Two containers claim one place (they cannot, unless
				// labels were forged): keep the first, stop the other.
				go func(x Handle) { _ = x.Stop(context.Background(), 0) }(rp.h)
				continue
			}
			h.names[rp.part.Index] = rp.part.Name
			h.parts[rp.part.Index] = rp.h
			if rp.part.ExecCheck != "" {
				h.checks[rp.part.ExecCheck] = rp.part.Index
			}
		}
		for i := range h.parts {
			if h.parts[i] == nil {
				if h.names[i] == "" {
					h.names[i] = fmt.Sprintf("#%d", i)
				}
				h.parts[i] = goneHandle(Exit{Code: -1, Message: "did not survive the agent restart"})
			}
		}
		go h.watch()
		if docker {
			out[id] = &dockerPodHandle{h}
		} else {
			out[id] = h
		}
	}
	return out
}

// endedHandle is a container that has ended (or is gone) for good.
type endedHandle struct {
	exit Exit
	done chan struct{}
}

func goneHandle(ex Exit) *endedHandle {
	h := &endedHandle{exit: ex, done: make(chan struct{})}
	close(h.done)
	return h
}

func (h *endedHandle) Done() <-chan struct{}                     { return h.done }
func (h *endedHandle) Exit() Exit                                { return h.exit }
func (h *endedHandle) Stop(context.Context, time.Duration) error { return nil }
func (h *endedHandle) IPAddresses() []api.IPAddress              { return nil }

// Cleanup leaves containers to the Docker executor's Cleanup.
func (p *PodExecutor) Cleanup(context.Context, map[string]bool) error { return nil }

// podMounts returns the binds of container c: host volumes checked against
// the volume root, ephemeral ones made under the instance's sandbox.
func (p *PodExecutor) podMounts(l Launch, c api.PodTaskContainer) ([]api.Volume, []string, error) {
	var vols []api.Volume
	var binds []string
	for i, m := range c.Mounts {
		where := fmt.Sprintf("containers[%s].volumeMounts[%d]", c.Name, i)
		host, ok := l.Spec.Pod.Volumes[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("%s: the pod has no volume %q", where, m.Name)
		}
		target := m.MountPath
		if !strings.HasPrefix(target, "/") {
			target = path.Join(containerSandbox, target) // relative to the sandbox, as Mesos mounts them
		}
		mode := "RW"
		if m.ReadOnly {
			mode = "RO"
		}
		if host != "" {
			vols = append(vols, api.Volume{HostPath: host, ContainerPath: target, Mode: mode})
			continue
		}
		if l.Sandbox == "" {
			return nil, nil, fmt.Errorf("%s: an ephemeral volume needs the instance's sandbox", where)
		}
		dir := filepath.Join(l.Sandbox, "volumes", m.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return nil, nil, fmt.Errorf("%s: creating ephemeral volume %q: %w", where, m.Name, err)
		}
		_ = os.Chmod(dir, 0o777) // any container user may write it
		b := dir + ":" + target
		if m.ReadOnly {
			b += ":ro"
		}
		binds = append(binds, b)
	}
	return vols, binds, nil
}

// containerLaunch is the Docker launch of one container of the instance.
func (p *PodExecutor) containerLaunch(l Launch, i int) (Launch, error) {
	pc := l.Spec.Pod.Containers[i]
	if pc.Image == "" {
		return Launch{}, fmt.Errorf("containers[%s]: weft runs pod containers from images; this one has none", pc.Name)
	}
	vols, binds, err := p.podMounts(l, pc)
	if err != nil {
		return Launch{}, err
	}
	cl := l
	cl.Spec = api.TaskSpec{
		Resources:              pc.Resources,
		KillGracePeriodSeconds: l.Spec.KillGracePeriodSeconds,
		Container: &api.Container{Type: "DOCKER", Volumes: vols,
			Docker: &api.Docker{Image: pc.Image, ForcePullImage: pc.ForcePull}},
	}
	if pc.Shell != "" {
		sh := pc.Shell
		cl.Spec.Cmd = &sh
	} else {
		cl.Spec.Args = pc.Argv
	}
	env := map[string]string{}
	for k, v := range l.Env {
		env[k] = v
	}
	for k, v := range pc.Env {
		env[k] = v
	}
	cl.Env = env
	cl.ExtraBinds = binds
	cl.PodPart = podPartOf(l, i)
	if i == 0 {
		// The first container holds the instance's network and ports.
		cl.Spec.Networks = l.Spec.Networks
		cl.Spec.Ports = l.Spec.Ports
		if l.Spec.Container != nil {
			cl.Spec.Container.PortMappings = l.Spec.Container.PortMappings
		}
		return cl, nil
	}
	cl.Task.ID = l.Task.ID + "." + pc.Name
	cl.PodInstance = l.Task.ID
	if l.Sandbox != "" {
		cl.Sandbox = filepath.Join(l.Sandbox, "containers", pc.Name)
	}
	return cl, nil
}

// Start starts the instance's containers, the first one first.
func (p *PodExecutor) Start(ctx context.Context, l Launch) (Handle, error) {
	if l.Spec.Pod == nil || len(l.Spec.Pod.Containers) == 0 {
		return nil, errors.New("a pod instance needs at least one container")
	}
	images := 0
	for _, c := range l.Spec.Pod.Containers {
		if c.Image != "" {
			images++
		}
	}
	switch {
	case images == 0:
		if p.p == nil {
			return nil, errors.New("this agent runs no process tasks, so it cannot run a pod of command containers")
		}
		return p.startProcesses(ctx, l)
	case images < len(l.Spec.Pod.Containers):
		return nil, errors.New("a pod's containers either all have images or none has one")
	case p.d == nil:
		return nil, errors.New("this agent has no Docker Engine, so it cannot run a pod of image containers")
	}
	first, err := p.containerLaunch(l, 0)
	if err != nil {
		return nil, err
	}
	main, err := p.d.Start(ctx, first)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", l.Spec.Pod.Containers[0].Name, err)
	}
	h := &podHandle{names: []string{l.Spec.Pod.Containers[0].Name}, parts: []Handle{main}, done: make(chan struct{}),
		checks: map[string]int{}}
	if c := l.Spec.Pod.Containers[0].ExecCheck; c != "" {
		h.checks[c] = 0
	}
	joinID := ""
	if dh, ok := main.(*dockerHandle); ok {
		joinID = dh.containerID
	}
	for i := 1; i < len(l.Spec.Pod.Containers); i++ {
		pc := l.Spec.Pod.Containers[i]
		cl, err := p.containerLaunch(l, i)
		if err == nil {
			cl.JoinNetworkOf = joinID
			var sub Handle
			if sub, err = p.d.Start(ctx, cl); err == nil {
				h.names = append(h.names, pc.Name)
				h.parts = append(h.parts, sub)
				if pc.ExecCheck != "" {
					h.checks[pc.ExecCheck] = len(h.parts) - 1
				}
				continue
			}
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		h.stopAll(sctx, 0)
		cancel()
		return nil, fmt.Errorf("container %s: %w", pc.Name, err)
	}
	go h.watch()
	return &dockerPodHandle{h}, nil
}

// startProcesses runs a pod of command containers as processes.
func (p *PodExecutor) startProcesses(ctx context.Context, l Launch) (Handle, error) {
	h := &podHandle{done: make(chan struct{})}
	for i, pc := range l.Spec.Pod.Containers {
		cl, err := p.processLaunch(l, i)
		var part Handle
		if err == nil {
			part, err = p.p.Start(ctx, cl)
		}
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			h.stopAll(sctx, 0)
			cancel()
			return nil, fmt.Errorf("container %s: %w", pc.Name, err)
		}
		h.names = append(h.names, pc.Name)
		h.parts = append(h.parts, part)
	}
	go h.watch()
	return h, nil
}

// processLaunch is the process launch of command container i: its own
// sandbox directory, its volume mounts as symlinks there.
func (p *PodExecutor) processLaunch(l Launch, i int) (Launch, error) {
	pc := l.Spec.Pod.Containers[i]
	if l.Sandbox == "" {
		return Launch{}, errors.New("a pod of command containers needs the instance's sandbox")
	}
	cl := l
	if i > 0 {
		cl.Task.ID = l.Task.ID + "." + pc.Name
		cl.PodInstance = l.Task.ID
		cl.Sandbox = filepath.Join(l.Sandbox, "containers", pc.Name)
		if err := os.MkdirAll(cl.Sandbox, 0o755); err != nil {
			return Launch{}, fmt.Errorf("creating the container's sandbox: %w", err)
		}
	}
	for j, m := range pc.Mounts {
		where := fmt.Sprintf("volumeMounts[%d]", j)
		host, ok := l.Spec.Pod.Volumes[m.Name]
		if !ok {
			return Launch{}, fmt.Errorf("%s: the pod has no volume %q", where, m.Name)
		}
		rel := filepath.Clean(m.MountPath)
		if filepath.IsAbs(rel) || rel == "." || strings.HasPrefix(rel, "..") {
			return Launch{}, fmt.Errorf("%s.mountPath: %q: a command container mounts volumes at a path inside its sandbox", where, m.MountPath)
		}
		src := host
		if src == "" {
			src = filepath.Join(l.Sandbox, "volumes", m.Name)
			if err := os.MkdirAll(src, 0o777); err != nil {
				return Launch{}, fmt.Errorf("%s: creating ephemeral volume %q: %w", where, m.Name, err)
			}
			_ = os.Chmod(src, 0o777)
		}
		link := filepath.Join(cl.Sandbox, rel)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return Launch{}, fmt.Errorf("%s: %w", where, err)
		}
		if err := os.Symlink(src, link); err != nil && !errors.Is(err, os.ErrExist) {
			return Launch{}, fmt.Errorf("%s: linking the volume: %w", where, err)
		}
	}
	cl.Spec = api.TaskSpec{User: l.Spec.User, Resources: pc.Resources, KillGracePeriodSeconds: l.Spec.KillGracePeriodSeconds}
	if pc.Shell != "" {
		sh := pc.Shell
		cl.Spec.Cmd = &sh
	} else {
		cl.Spec.Args = pc.Argv
	}
	env := map[string]string{}
	for k, v := range l.Env {
		env[k] = v
	}
	for k, v := range pc.Env {
		env[k] = v
	}
	env["MESOS_SANDBOX"] = cl.Sandbox
	cl.Env = env
	cl.PodPart = podPartOf(l, i)
	return cl, nil
}

// podHandle is a running pod instance: its containers' handles, the
// first one holding the network.
type podHandle struct {
	names  []string
	parts  []Handle
	checks map[string]int // exec health check command → container index

	done chan struct{}
	mu   sync.Mutex
	exit Exit
	// left: the agent that started or re-adopted the instance stopped
	// without stopping its tasks (abandon); it no longer ends the instance
	// when a container ends, as the agent that comes back does.
	left atomic.Bool
}

// abandon is the agent stopping with the instance left running.
func (h *podHandle) abandon() { h.left.Store(true) }

var (
	_ CommandRunner = (*dockerPodHandle)(nil)
	_ Pider         = (*podHandle)(nil)
)

// dockerPodHandle is a pod instance of Docker containers: exec health
// checks run in the container that declared them. (A pod of processes has
// its command checks run by the agent in the instance's sandbox.)
type dockerPodHandle struct{ *podHandle }

// watch waits for the first container to end, stops the others and ends
// the instance with that container's exit.
func (h *podHandle) watch() {
	cases := make(chan int, len(h.parts))
	for i, part := range h.parts {
		go func() {
			<-part.Done()
			cases <- i
		}()
	}
	i := <-cases
	if h.left.Load() {
		return
	}
	ex := h.parts[i].Exit()
	ex.Message = "container " + h.names[i] + ": " + ex.Message
	h.mu.Lock()
	h.exit = ex
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	h.stopAll(ctx, 10*time.Second)
	cancel()
	close(h.done)
}

// stopAll stops every container, the joined ones before the first.
func (h *podHandle) stopAll(ctx context.Context, grace time.Duration) {
	var wg sync.WaitGroup
	for i := len(h.parts) - 1; i >= 1; i-- {
		wg.Add(1)
		go func(part Handle) {
			defer wg.Done()
			_ = part.Stop(ctx, grace)
		}(h.parts[i])
	}
	wg.Wait()
	if len(h.parts) > 0 {
		_ = h.parts[0].Stop(ctx, grace)
	}
}

func (h *podHandle) Done() <-chan struct{} { return h.done }

func (h *podHandle) Exit() Exit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exit
}

// Stop stops every container of the instance.
func (h *podHandle) Stop(ctx context.Context, grace time.Duration) error {
	h.stopAll(ctx, grace)
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IPAddresses are the first container's: the instance's.
func (h *podHandle) IPAddresses() []api.IPAddress { return h.parts[0].IPAddresses() }

// Pid is the first container's main process.
func (h *podHandle) Pid() int {
	if p, ok := h.parts[0].(Pider); ok {
		return p.Pid()
	}
	return 0
}

// RunCommand runs an exec health check in the container that declared it.
func (h *dockerPodHandle) RunCommand(ctx context.Context, cmd string) (int, string, error) {
	i := h.checks[cmd]
	r, ok := h.parts[i].(CommandRunner)
	if !ok {
		return -1, "", fmt.Errorf("container %s cannot run commands", h.names[i])
	}
	return r.RunCommand(ctx, cmd)
}
