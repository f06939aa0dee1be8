package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/weftnet/weft/sched/api"
)

// DockerConfig configures the Docker executor.
type DockerConfig struct {
	// Host is the Docker Engine address (unix:///var/run/docker.sock,
	// tcp://...). Empty: DOCKER_HOST from the environment, else the default
	// socket.
	Host string
	// AgentID labels every container this agent starts (weft.agent-id);
	// Recover and Cleanup only touch containers carrying it. Empty: the
	// hostname.
	AgentID string
	// StateDir is where the executor keeps its instance id (file
	// docker-instance). Containers are labelled with it, and Recover and
	// Cleanup only touch containers carrying it, so two agents with the same
	// AgentID on one Docker daemon (tests, two clusters on one machine) never
	// adopt or remove each other's containers; an agent restarted on the
	// same StateDir re-adopts its own. Empty: containers are matched by
	// AgentID alone.
	StateDir string
	// VolumeRoot is the host directory every host-path volume must be under.
	// Empty: host volumes are refused.
	VolumeRoot string
	// AllowPrivileged lets apps run privileged containers and add
	// capabilities (cap-add). Off by default: a privileged container is root
	// on the host.
	AllowPrivileged bool
	// CPUQuota limits cpus with a CFS quota (a hard cap) instead of CPU
	// shares (a relative weight, Mesos' default).
	CPUQuota bool
	// WeftNetwork is the container network "weft" of this node. Nil: the
	// node has no overlay, and tasks asking for "weft" fail with a reason.
	WeftNetwork *WeftNetConfig
	// DNS are the resolvers of containers on the weft network: the node's
	// weft DNS.
	DNS []string
	// StopTimeout bounds how long Stop waits beyond the grace period for the
	// engine to report the container gone.
	StopTimeout time.Duration
	// Logger receives the executor's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultDockerConfig returns the defaults: the environment's Docker Engine,
// no host volumes, no privileged containers, CPU shares.
func DefaultDockerConfig() DockerConfig {
	return DockerConfig{StopTimeout: 30 * time.Second}
}

// DockerExecutor runs tasks whose container type is DOCKER through the Docker
// Engine API.
//
// Network modes: BRIDGE (host ports published from spec.Ports), HOST, NONE
// and the container network "weft" (an address of the node's overlay block on
// a veth attached to the node's weft bridge, reported as the task's
// ipAddresses; mappings with a hostPort are forwarded from the node's
// addresses by DNAT), in the legacy container.docker.network form and the
// 1.5+ networks[] form; see DockerNetworkMode. spec.Ports holds one host
// port per port mapping that has a hostPort, in mapping order.
//
// spec.User is not applied (as in Mesos' Docker containerizer): the image's
// user runs, or the user parameter. Registry credentials (pullConfig) are
// not supported.
//
// container.docker.parameters honoured (everything else is refused when the
// task starts, and the task fails with a reason naming the parameter):
//
//	label K=V        container label (weft.* is reserved)
//	env K=V          environment variable
//	user, workdir, hostname, entrypoint, stop-signal
//	memory-swap      swap limit (default: equal to mem, i.e. no swap)
//	shm-size, pids-limit, ulimit NAME=SOFT[:HARD], read-only, init, tmpfs
//	cap-drop         always; cap-add only with AllowPrivileged
//	log-driver       json-file, local or journald (the output must reach the sandbox)
//	log-opt K=V
//	add-host, dns, dns-search, dns-option
//	volume H:C[:ro]  only with H under VolumeRoot (cleaned, symlinks resolved)
//
// privileged is honoured when the agent allows it (AllowPrivileged).
// Resources: cpus become CPU shares (cpus×1024) or, with CPUQuota, a CFS
// quota; mem becomes a hard memory limit with no swap.
//
// Images are pulled when missing, or always with forcePullImage (a failed
// forced pull falls back to the local image when there is one). Output is
// copied to sandbox/stdout and sandbox/stderr. A container is removed once
// it has exited and its output is copied.
type DockerExecutor struct {
	cfg  DockerConfig
	cli  *client.Client
	log  *slog.Logger
	weft *weftNet

	instance string // see DockerConfig.StateDir

	mu      sync.Mutex
	handles map[string]*dockerHandle // by task id, while monitored
}

// loadInstance reads the executor's instance id from dir, creating it on
// first use.
func loadInstance(dir string) (string, error) {
	path := filepath.Join(dir, "docker-instance")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("docker executor: reading %s: %w", path, err)
	}
	r := make([]byte, 8)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	id := hex.EncodeToString(r)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("docker executor: creating %s: %w", dir, err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("docker executor: writing %s: %w", path, err)
	}
	return id, nil
}

var _ Executor = (*DockerExecutor)(nil)

// NewDockerExecutor makes a Docker executor. It does not contact the engine:
// Available does.
func NewDockerExecutor(cfg DockerConfig) (*DockerExecutor, error) {
	if cfg.AgentID == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("docker executor: no agent id and no hostname: %w", err)
		}
		cfg.AgentID = h
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultDockerConfig().StopTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "docker")
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker executor: engine address: %w", err)
	}
	e := &DockerExecutor{cfg: cfg, cli: cli, log: log, handles: map[string]*dockerHandle{}}
	if cfg.StateDir != "" {
		if e.instance, err = loadInstance(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	if cfg.WeftNetwork != nil {
		w, err := newWeftNet(*cfg.WeftNetwork, log)
		if err != nil {
			return nil, err
		}
		e.weft = w
	}
	return e, nil
}

// Close releases the engine connection. Running containers keep running,
// and keep their weft network; when none of this agent's containers is on
// the weft network any more, the bridge and its rules are removed too, so a
// stopped agent leaves no network state behind.
func (e *DockerExecutor) Close() error {
	if e.weft != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		list, err := e.listOwn(ctx)
		cancel()
		inUse := err != nil // unsure: keep it
		for _, c := range list {
			if c.State == "running" && c.Labels[LabelNetwork] == DockerNetWeft {
				inUse = true
			}
		}
		if !inUse {
			if err := e.weft.teardown(); err != nil {
				e.log.Warn("removing the weft network", "err", err)
			}
		}
	}
	return e.cli.Close()
}

// Client is the Docker Engine client the executor uses.
func (e *DockerExecutor) Client() *client.Client { return e.cli }

var _ Prober = (*DockerExecutor)(nil)

// Available reports whether the Docker Engine answers.
func (e *DockerExecutor) Available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine at %s does not answer (%v); start the Docker daemon (systemctl start docker) or point the agent at it with --docker-host", e.cli.DaemonHost(), err)
	}
	return nil
}

// Name is "docker".
func (e *DockerExecutor) Name() string { return "docker" }

// Handles reports whether spec is a Docker container task: container type
// DOCKER, or MESOS with a Docker image (Marathon's UCR form, which weft runs
// through the Docker Engine too).
func (e *DockerExecutor) Handles(spec api.TaskSpec) bool {
	c := spec.Container
	if c == nil {
		return false
	}
	if strings.EqualFold(c.Type, "DOCKER") {
		return true
	}
	return strings.EqualFold(c.Type, "MESOS") && c.Docker != nil && c.Docker.Image != ""
}

func (e *DockerExecutor) planOptions() dockerPlanOptions {
	return dockerPlanOptions{
		AgentID:         e.cfg.AgentID,
		Instance:        e.instance,
		VolumeRoot:      e.cfg.VolumeRoot,
		AllowPrivileged: e.cfg.AllowPrivileged,
		CPUQuota:        e.cfg.CPUQuota,
		DNS:             e.cfg.DNS,
		WeftAvailable:   e.weft != nil,
	}
}

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// ContainerName is the Docker name of a task's container.
func ContainerName(taskID string) string {
	return "weft-" + nameUnsafe.ReplaceAllString(taskID, "_")
}

// Start pulls the image if needed, creates and starts the container, attaches
// it to the weft network when asked, and starts copying its output.
func (e *DockerExecutor) Start(ctx context.Context, l Launch) (Handle, error) {
	opts := e.planOptions()
	// Persistent volumes: created once, owned by the agent's user (the
	// container's user is the image's; an app that needs another owner
	// changes it from inside, as with Mesos's Docker containerizer).
	local, err := prepareLocalVolumes(l.Spec.LocalVolumes, l.VolumesDir, l.Sandbox, -1, -1, false)
	if err != nil {
		return nil, err
	}
	opts.LocalVolumes = local
	plan, err := planDocker(l, opts)
	if err != nil {
		return nil, err
	}
	if err := e.ensureImage(ctx, plan.Image, plan.ForcePull); err != nil {
		return nil, err
	}
	name := ContainerName(l.Task.ID)
	created, err := e.cli.ContainerCreate(ctx, plan.Config, plan.Host, nil, nil, name)
	if cerrdefs.IsConflict(err) {
		// A container of this task exists: adopt it when it runs, else
		// replace it.
		if h, ok, aerr := e.adoptExisting(ctx, name); aerr != nil {
			return nil, aerr
		} else if ok {
			return h, nil
		}
		created, err = e.cli.ContainerCreate(ctx, plan.Config, plan.Host, nil, nil, name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating container for %s: %w", plan.Image, err)
	}
	id := created.ID
	fail := func(err error) (Handle, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = e.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true})
		if e.weft != nil {
			e.weft.detach(l.Task.ID, id)
		}
		return nil, err
	}
	h := e.newHandle(l.Task.ID, id, plan.MemMB)
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fail(fmt.Errorf("starting container of %s: %w", plan.Image, err))
	}
	// Output: the engine keeps it from the start, so following after start
	// loses nothing, even of a container that has exited already.
	if l.Sandbox != "" {
		if err := h.followLogs(e.cli, l.Sandbox, ""); err != nil {
			return fail(err)
		}
	}
	ins, err := e.cli.ContainerInspect(ctx, id)
	if err != nil {
		h.stopLogs()
		return fail(fmt.Errorf("inspecting container: %w", err))
	}
	if ins.State != nil {
		h.pid = ins.State.Pid
	}
	if plan.Network == DockerNetWeft {
		if ins.State == nil || ins.State.Pid == 0 {
			h.stopLogs()
			return fail(fmt.Errorf("container exited before it could join the %q network", WeftNetworkName))
		}
		ip, err := e.weft.attach(l.Task.ID, id, ins.State.Pid)
		if err != nil {
			h.stopLogs()
			return fail(fmt.Errorf("joining the %q network: %w", WeftNetworkName, err))
		}
		h.ips = []api.IPAddress{{IPAddress: ip.String(), Protocol: "IPv4"}}
		if err := e.weft.publish(l.Task.ID, ip, plan.WeftPorts); err != nil {
			h.stopLogs()
			return fail(fmt.Errorf("joining the %q network: %w", WeftNetworkName, err))
		}
	}
	e.track(h)
	go h.monitor()
	e.log.Info("container started", "task", l.Task.ID, "container", short(id), "image", plan.Image, "network", plan.Network)
	return h, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// adoptExisting handles a name conflict: a running container of ours is
// adopted (ok), any other leftover is removed so the caller can create again.
func (e *DockerExecutor) adoptExisting(ctx context.Context, name string) (Handle, bool, error) {
	ins, err := e.cli.ContainerInspect(ctx, name)
	if err != nil {
		return nil, false, fmt.Errorf("inspecting existing container %s: %w", name, err)
	}
	if ins.Config == nil || ins.Config.Labels[LabelAgentID] != e.cfg.AgentID || (e.instance != "" && ins.Config.Labels[LabelInstance] != e.instance) {
		return nil, false, fmt.Errorf("a container named %s exists and does not belong to this agent; remove it (docker rm -f %s)", name, name)
	}
	if ins.State != nil && ins.State.Running {
		e.mu.Lock()
		h := e.handles[ins.Config.Labels[LabelTaskID]]
		e.mu.Unlock()
		if h != nil && h.containerID == ins.ID {
			return h, true, nil
		}
		return e.adopt(ins), true, nil
	}
	if err := e.cli.ContainerRemove(ctx, ins.ID, container.RemoveOptions{Force: true}); err != nil {
		return nil, false, fmt.Errorf("removing leftover container %s: %w", name, err)
	}
	return nil, false, nil
}

// ensureImage makes image present locally, pulling it when missing or when
// force is set.
func (e *DockerExecutor) ensureImage(ctx context.Context, ref string, force bool) error {
	_, err := e.cli.ImageInspect(ctx, ref)
	present := err == nil
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	if present && !force {
		return nil
	}
	perr := e.pull(ctx, ref)
	if perr == nil {
		return nil
	}
	if present {
		e.log.Warn("forced pull failed; using the local image", "image", ref, "err", perr)
		return nil
	}
	return fmt.Errorf("image %s not found locally and the registry is unreachable: %v", ref, perr)
}

func (e *DockerExecutor) pull(ctx context.Context, ref string) error {
	rc, err := e.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading pull progress: %w", err)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
	}
}

func (e *DockerExecutor) track(h *dockerHandle) {
	e.mu.Lock()
	e.handles[h.taskID] = h
	e.mu.Unlock()
}

func (e *DockerExecutor) untrack(h *dockerHandle) {
	e.mu.Lock()
	if e.handles[h.taskID] == h {
		delete(e.handles, h.taskID)
	}
	e.mu.Unlock()
}

// Recover re-adopts this agent's containers: running ones are monitored
// again (output appended to their sandbox, weft addresses kept), exited ones
// come back as finished handles carrying their exit, so the agent reports
// how they ended. A task with several containers keeps one.
func (e *DockerExecutor) Recover(ctx context.Context) (map[string]Handle, error) {
	list, err := e.listOwn(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]Handle{}
	keep := map[string]bool{}
	for _, s := range list {
		task := s.Labels[LabelTaskID]
		if s.Labels[LabelPodPart] != "" {
			keep[task] = true // the pod executor reassembles its instance (and keeps its address)
			continue
		}
		if task == "" || s.Labels[LabelPodInstance] != "" {
			continue // a pod's joined container is part of its instance's task
		}
		e.mu.Lock()
		existing := e.handles[task]
		e.mu.Unlock()
		if existing != nil {
			if existing.containerID != s.ID {
				e.removeQuietly(ctx, s.ID, "duplicate of a monitored task")
				continue
			}
			out[task] = existing
			continue
		}
		if prev, ok := out[task]; ok {
			// Keep the running one.
			ph := prev.(*dockerHandle)
			if s.State != "running" {
				e.removeQuietly(ctx, s.ID, "duplicate container of a task")
				continue
			}
			e.removeQuietly(ctx, ph.containerID, "duplicate container of a task")
		}
		ins, err := e.cli.ContainerInspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspecting container %s: %w", short(s.ID), err)
		}
		out[task] = e.adopt(ins)
	}
	if e.weft != nil {
		for t := range out {
			keep[t] = true
		}
		e.weft.releaseAllBut(keep)
	}
	return out, nil
}

// recoverPodParts re-adopts this agent's containers of pod instances
// (those labelled with a PodPart), as Recover does those of tasks, for
// PodExecutor.Recover to reassemble.
func (e *DockerExecutor) recoverPodParts(ctx context.Context) ([]recoveredPart, error) {
	list, err := e.listOwn(ctx)
	if err != nil {
		return nil, err
	}
	var out []recoveredPart
	for _, s := range list {
		raw, task := s.Labels[LabelPodPart], s.Labels[LabelTaskID]
		if raw == "" || task == "" {
			continue
		}
		var part PodPart
		if err := json.Unmarshal([]byte(raw), &part); err != nil || part.Index < 0 || part.Index >= part.Count {
			e.removeQuietly(ctx, s.ID, "unreadable pod container label")
			continue
		}
		instance := task
		if part.Index > 0 {
			instance = s.Labels[LabelPodInstance]
		}
		e.mu.Lock()
		h := e.handles[task]
		e.mu.Unlock()
		if h == nil || h.containerID != s.ID {
			ins, err := e.cli.ContainerInspect(ctx, s.ID)
			if cerrdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("inspecting container %s: %w", short(s.ID), err)
			}
			h = e.adopt(ins)
		}
		out = append(out, recoveredPart{instance: instance, part: part, h: h, docker: true})
	}
	return out, nil
}

// adopt monitors an existing container.
func (e *DockerExecutor) adopt(ins container.InspectResponse) *dockerHandle {
	labels := ins.Config.Labels
	task := labels[LabelTaskID]
	mem, _ := strconv.ParseFloat(labels[LabelMemMB], 64)
	h := e.newHandle(task, ins.ID, mem)
	running := ins.State != nil && ins.State.Running
	if running {
		h.pid = ins.State.Pid
	}
	if running && labels[LabelNetwork] == DockerNetWeft && e.weft != nil {
		if ip, ok := e.weft.lookup(task); ok {
			h.ips = []api.IPAddress{{IPAddress: ip.String(), Protocol: "IPv4"}}
		}
	}
	if sb := labels[LabelSandbox]; sb != "" && running {
		since := strconv.FormatFloat(float64(time.Now().UnixNano())/1e9, 'f', 9, 64)
		if err := h.followLogs(e.cli, sb, since); err != nil {
			e.log.Warn("not copying output of re-adopted container", "task", task, "err", err)
		}
	}
	e.track(h)
	go h.monitor()
	e.log.Info("container re-adopted", "task", task, "container", short(ins.ID), "running", running)
	return h
}

func (e *DockerExecutor) listOwn(ctx context.Context) ([]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", LabelAgentID+"="+e.cfg.AgentID))
	if e.instance != "" {
		f.Add("label", LabelInstance+"="+e.instance)
	}
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing containers of agent %s: %w", e.cfg.AgentID, err)
	}
	return list, nil
}

func (e *DockerExecutor) removeQuietly(ctx context.Context, id, why string) {
	if err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		e.log.Warn("removing container", "container", short(id), "why", why, "err", err)
		return
	}
	e.log.Info("container removed", "container", short(id), "why", why)
}

// removeAndWait removes a container and returns once it is gone, also when
// someone else is removing it at the same time.
func (e *DockerExecutor) removeAndWait(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	for {
		if _, ierr := e.cli.ContainerInspect(ctx, id); cerrdefs.IsNotFound(ierr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Cleanup removes this agent's containers whose task is not in keep, and
// frees their weft addresses.
func (e *DockerExecutor) Cleanup(ctx context.Context, keep map[string]bool) error {
	list, err := e.listOwn(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range list {
		task := s.Labels[LabelTaskID]
		if keep[task] || keep[s.Labels[LabelPodInstance]] {
			continue
		}
		if err := e.removeAndWait(ctx, s.ID); err != nil {
			errs = append(errs, fmt.Errorf("removing orphan container %s of task %s: %w", short(s.ID), task, err))
			continue
		}
		if e.weft != nil {
			e.weft.detach(task, s.ID)
		}
		e.log.Info("orphan container removed", "task", task, "container", short(s.ID))
	}
	if e.weft != nil {
		e.weft.releaseAllBut(keep)
	}
	return errors.Join(errs...)
}

// dockerHandle is one monitored container.
type dockerHandle struct {
	e           *DockerExecutor
	taskID      string
	containerID string
	memMB       float64
	ips         []api.IPAddress

	done     chan struct{}
	mu       sync.Mutex
	exit     Exit
	stopping bool
	pid      int

	logsDone   chan struct{}
	cancelLogs context.CancelFunc
}

func (e *DockerExecutor) newHandle(taskID, id string, memMB float64) *dockerHandle {
	return &dockerHandle{e: e, taskID: taskID, containerID: id, memMB: memMB, done: make(chan struct{})}
}

func (h *dockerHandle) Done() <-chan struct{} { return h.done }

func (h *dockerHandle) Exit() Exit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exit
}

func (h *dockerHandle) IPAddresses() []api.IPAddress { return h.ips }

// ContainerID is the Docker id of the task's container.
func (h *dockerHandle) ContainerID() string { return h.containerID }

// Stop stops the container gracefully: the stop signal (SIGTERM unless the
// image or stop-signal says otherwise), then SIGKILL after grace.
func (h *dockerHandle) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-h.done:
		return nil
	default:
	}
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	secs := int(math.Ceil(grace.Seconds()))
	if secs < 0 {
		secs = 0
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+h.e.cfg.StopTimeout)
	defer cancel()
	err := h.e.cli.ContainerStop(sctx, h.containerID, container.StopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stopping container %s: %w", short(h.containerID), err)
	}
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// followLogs copies the container's output into the sandbox files.
func (h *dockerHandle) followLogs(cli *client.Client, sandbox, since string) error {
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return fmt.Errorf("creating sandbox %s: %w", sandbox, err)
	}
	open := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(sandbox, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	stdout, err := open("stdout")
	if err != nil {
		return fmt.Errorf("opening sandbox stdout: %w", err)
	}
	stderr, err := open("stderr")
	if err != nil {
		stdout.Close()
		return fmt.Errorf("opening sandbox stderr: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := cli.ContainerLogs(ctx, h.containerID, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Follow: true, Since: since,
	})
	if err != nil {
		cancel()
		stdout.Close()
		stderr.Close()
		return fmt.Errorf("following container output: %w", err)
	}
	h.cancelLogs = cancel
	h.logsDone = make(chan struct{})
	go func() {
		defer close(h.logsDone)
		defer stdout.Close()
		defer stderr.Close()
		defer rc.Close()
		_, _ = stdcopy.StdCopy(stdout, stderr, rc)
	}()
	return nil
}

func (h *dockerHandle) stopLogs() {
	if h.cancelLogs != nil {
		h.cancelLogs()
		<-h.logsDone
	}
}

// monitor waits for the container to exit, records how, lets the output
// drain, removes the container and frees its address.
func (h *dockerHandle) monitor() {
	e := h.e
	ctx := context.Background()
	exit := Exit{Code: -1}
	for attempt := 0; ; attempt++ {
		waitC, errC := e.cli.ContainerWait(ctx, h.containerID, container.WaitConditionNotRunning)
		var werr error
		select {
		case <-waitC:
		case werr = <-errC:
		}
		if werr == nil || cerrdefs.IsNotFound(werr) {
			break
		}
		if attempt >= 150 {
			exit.Message = fmt.Sprintf("lost track of the container: the Docker Engine has not answered for 5 minutes (%v)", werr)
			break
		}
		time.Sleep(2 * time.Second) // the engine restarts or is busy; waiting again is harmless
	}
	ins, err := e.cli.ContainerInspect(ctx, h.containerID)
	if err == nil && ins.State != nil {
		h.mu.Lock()
		stopping := h.stopping
		h.mu.Unlock()
		exit = containerExit(ins.State, stopping, h.memMB)
	} else if exit.Message == "" {
		exit.Message = "container disappeared (removed outside the agent)"
	}
	if h.logsDone != nil {
		select {
		case <-h.logsDone:
		case <-time.After(5 * time.Second):
			h.cancelLogs()
			<-h.logsDone
		}
	}
	if err := e.removeAndWait(ctx, h.containerID); err != nil {
		e.log.Warn("removing exited container", "task", h.taskID, "err", err)
	}
	if e.weft != nil {
		e.weft.detach(h.taskID, h.containerID)
	}
	h.mu.Lock()
	h.exit = exit
	h.pid = 0
	h.mu.Unlock()
	e.untrack(h)
	e.log.Info("container exited", "task", h.taskID, "code", exit.Code, "message", exit.Message)
	close(h.done)
}

// containerExit tells how a container ended from its final state.
func containerExit(s *container.State, stopRequested bool, memMB float64) Exit {
	code := s.ExitCode
	switch {
	case s.OOMKilled:
		msg := "container killed: out of memory"
		if memMB > 0 {
			msg = fmt.Sprintf("container killed: out of memory (limit %g MB)", memMB)
		}
		return Exit{Code: -1, Signal: "killed", OOM: true, Message: msg}
	case stopRequested && code > 128 && code < 128+65:
		sig := signalName(code - 128)
		return Exit{Code: -1, Signal: sig, Message: "container stopped (" + sig + ")"}
	case code == 0:
		return Exit{Code: 0, Message: "container exited with code 0"}
	}
	msg := fmt.Sprintf("container exited with code %d", code)
	if s.Error != "" {
		msg += ": " + s.Error
	}
	return Exit{Code: code, Message: msg}
}

func signalName(n int) string {
	switch n {
	case 9:
		return "killed"
	case 15:
		return "terminated"
	case 2:
		return "interrupt"
	case 1:
		return "hangup"
	case 3:
		return "quit"
	}
	return "signal " + strconv.Itoa(n)
}

// Execer is implemented by handles that can run a command inside the task
// (Docker containers): COMMAND health checks of a Docker task run there, as
// in Mesos, not on the host.
type Execer interface {
	// Exec runs argv in the task and returns its exit code and combined
	// output (capped at 64 KiB).
	Exec(ctx context.Context, argv []string) (code int, output []byte, err error)
}

var (
	_ Execer        = (*dockerHandle)(nil)
	_ CommandRunner = (*dockerHandle)(nil)
	_ Pider         = (*dockerHandle)(nil)
)

// RunCommand runs a COMMAND health check inside the container, through
// /bin/sh -c as Mesos does (an image without a shell fails the check).
func (h *dockerHandle) RunCommand(ctx context.Context, cmd string) (int, string, error) {
	code, out, err := h.Exec(ctx, []string{"/bin/sh", "-c", cmd})
	return code, string(out), err
}

// Pid is the container's main process id as the host sees it (0 once it
// has exited or when unknown).
func (h *dockerHandle) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pid
}

// Exec runs argv inside the container.
func (h *dockerHandle) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	cli := h.e.cli
	created, err := cli.ContainerExecCreate(ctx, h.containerID, container.ExecOptions{
		Cmd: argv, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return -1, nil, fmt.Errorf("exec in container %s: %w", short(h.containerID), err)
	}
	att, err := cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, nil, fmt.Errorf("exec in container %s: %w", short(h.containerID), err)
	}
	defer att.Close()
	out := &cappedBuffer{max: 64 << 10}
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(out, out, att.Reader)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return -1, out.b, ctx.Err()
	}
	if err != nil {
		return -1, out.b, fmt.Errorf("reading exec output: %w", err)
	}
	ins, err := cli.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return -1, out.b, fmt.Errorf("exec result: %w", err)
	}
	return ins.ExitCode, out.b, nil
}

type cappedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		c.b = append(c.b, p[:room]...)
	}
	return len(p), nil
}

// Usage reads the container's usage from the Docker Engine (one-shot
// stats) and its cpu limit from its host config: the same Mesos
// ResourceStatistics names as a process task's cgroup gives.
func (h *dockerHandle) Usage() (Usage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli := h.e.cli
	rd, err := cli.ContainerStatsOneShot(ctx, h.containerID)
	if err != nil {
		return Usage{}, fmt.Errorf("docker stats of %s: %w", h.containerID, err)
	}
	defer rd.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(rd.Body).Decode(&st); err != nil {
		return Usage{}, fmt.Errorf("docker stats of %s: %w", h.containerID, err)
	}
	if st.Read.IsZero() || st.CPUStats.CPUUsage.TotalUsage == 0 && st.MemoryStats.Usage == 0 {
		return Usage{}, fmt.Errorf("docker has no stats for container %s (not running)", h.containerID)
	}
	u := Usage{
		Timestamp:          float64(st.Read.UnixNano()) / 1e9,
		CpusUserTimeSecs:   float64(st.CPUStats.CPUUsage.UsageInUsermode) / 1e9,
		CpusSystemTimeSecs: float64(st.CPUStats.CPUUsage.UsageInKernelmode) / 1e9,
		MemTotalBytes:      st.MemoryStats.Usage,
		MemLimitBytes:      st.MemoryStats.Limit,
	}
	// rss (v1) or anon (v2) is the resident memory of the container's
	// processes, without the page cache.
	if v, ok := st.MemoryStats.Stats["total_rss"]; ok {
		u.MemRSSBytes = v
	} else if v, ok := st.MemoryStats.Stats["rss"]; ok {
		u.MemRSSBytes = v
	} else {
		u.MemRSSBytes = st.MemoryStats.Stats["anon"]
	}
	// user and system come in ticks; the exact total is spread over them.
	if tot, all := u.CpusUserTimeSecs+u.CpusSystemTimeSecs, float64(st.CPUStats.CPUUsage.TotalUsage)/1e9; tot > 0 {
		u.CpusUserTimeSecs = all * u.CpusUserTimeSecs / tot
		u.CpusSystemTimeSecs = all - u.CpusUserTimeSecs
	} else {
		u.CpusUserTimeSecs = all
	}
	if in, err := cli.ContainerInspect(ctx, h.containerID); err == nil && in.HostConfig != nil {
		switch {
		case in.HostConfig.NanoCPUs > 0:
			u.CpusLimit = float64(in.HostConfig.NanoCPUs) / 1e9
		case in.HostConfig.CPUQuota > 0 && in.HostConfig.CPUPeriod > 0:
			u.CpusLimit = float64(in.HostConfig.CPUQuota) / float64(in.HostConfig.CPUPeriod)
		case in.HostConfig.CPUShares > 0:
			u.CpusLimit = float64(in.HostConfig.CPUShares) / 1024
		}
	}
	return u, nil
}
