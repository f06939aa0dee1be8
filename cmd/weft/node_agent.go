package main

import (
	"os"
	"path/filepath"

	"github.com/weftnet/weft/agent"
)

// setupAgent builds the agent with the process executor and, when the
// Docker Engine answers, the Docker executor.
func (n *node) setupAgent() error {
	res, err := n.detectResources()
	if err != nil {
		return err
	}
	attrs, err := parseAttributes(n.c.StringSlice("attribute"))
	if err != nil {
		return err
	}
	dir, err := n.subdir("agent")
	if err != nil {
		return err
	}
	var execs []agent.Executor
	var docker *agent.DockerExecutor
	var problems []string
	if !n.c.Bool("no-docker") {
		dcfg := agent.DefaultDockerConfig()
		dcfg.Host = n.c.String("docker-host")
		dcfg.AgentID = n.name
		dcfg.StateDir = filepath.Join(dir, "docker")
		dcfg.VolumeRoot = n.c.String("volume-root")
		dcfg.Logger = n.log
		if self := n.mesh.Self(); n.meshOverlay && self.Block != "" {
			dcfg.WeftNetwork = &agent.WeftNetConfig{
				Block:     self.Block,
				Bridge:    "weftbr0",
				StateFile: filepath.Join(dir, "weft-net.json"),
				// Containers reach addresses outside the overlay through the host.
				Masquerade: n.c.String("overlay-cidr"),
			}
			dcfg.DNS = []string{self.OverlayIP}
		}
		de, err := agent.NewDockerExecutor(dcfg)
		if err != nil {
			problems = append(problems, "docker: "+err.Error())
			n.log.Warn("docker tasks will not run on this agent", "err", err)
		} else {
			execs = append(execs, de)
			docker = de
			n.closers = append(n.closers, func() { de.Close() })
		}
	}
	pcfg := agent.DefaultProcessConfig(filepath.Join(dir, "process"))
	pcfg.Logger = n.log
	pcfg.TaskUser = n.c.String("task-user")
	pcfg.AllowedUsers = n.c.StringSlice("allowed-task-users")
	if os.Geteuid() == 0 && pcfg.TaskUser != "" {
		// The task user must reach its sandbox: the data dir and the
		// agent's dir are traversable (not listable) by others.
		for _, d := range []string{n.dataDir, dir} {
			if err := os.Chmod(d, 0o711); err != nil {
				n.log.Warn("making the data dir traversable for the task user", "dir", d, "err", err)
			}
		}
	}
	if n.c.Bool("no-cgroups") {
		pcfg.CgroupsProblem = "--no-cgroups"
	} else {
		pcfg.Cgroups, pcfg.CgroupsProblem = agent.CgroupsFor(n.name, dir, n.c.Bool("cgroups-cpu-quota"))
	}
	if pcfg.Cgroups != nil {
		n.log.Info("process tasks get cpu and memory limits", "cgroups", pcfg.Cgroups.Version().String(), "parents", pcfg.Cgroups.Parents())
	} else {
		n.log.Warn("process tasks run without cpu or memory limits", "reason", pcfg.CgroupsProblem)
	}
	pe, err := agent.NewProcessExecutor(pcfg)
	if err != nil {
		return err
	}
	execs = append(execs, pe)
	// Pods first: their instances carry a container spec the others would take.
	execs = append([]agent.Executor{agent.NewPodExecutor(docker, pe)}, execs...)

	acfg := agent.DefaultConfig()
	acfg.ID = n.name
	acfg.Name = n.name
	acfg.Site = n.site
	acfg.Master = n.finder
	acfg.DataDir = dir
	acfg.HostIP = n.advertiseHost()
	acfg.AgentEndpoint = n.advertisedOn(n.agentLns)
	acfg.Executors = execs
	acfg.SandboxKeep = n.c.Duration("gc-delay")
	acfg.GCDiskHeadroom = n.c.Float64("gc-disk-headroom")
	// `weft up` is a playground: Ctrl-C stops its tasks too. A real agent
	// leaves them running and re-adopts them when it comes back.
	acfg.StopTasksOnExit = n.role == roleUp
	acfg.Logger = n.log
	acfg.OnCapabilities = func(caps, probs []string) {
		n.setTags(func() {
			n.tags.Capabilities = caps
			n.tags.Problems = append(append([]string{}, problems...), probs...)
		})
		if err := n.publishTags(); err != nil {
			n.log.Warn("publishing capabilities", "err", err)
		}
	}
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	n.firstRuns = append(n.firstRuns, a.Run)
	n.localMux.Handle("/", a.Handler())
	n.registry.MustRegister(a.Collector())
	n.setTags(func() {
		n.tags.ID = n.name
		n.tags.AgentAPI = n.advertisedOn(n.agentLns)
		n.tags.Resources = res
		n.tags.Attributes = attrs
		n.tags.AgentRole = n.c.String("role")
		n.tags.Problems = problems
	})
	return nil
}
