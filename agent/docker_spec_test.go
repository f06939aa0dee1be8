package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

func TestDockerNetworkMode(t *testing.T) {
	docker := func(network string) *api.Container {
		return &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "x", Network: network}}
	}
	cases := []struct {
		name    string
		spec    api.TaskSpec
		want    string
		wantErr string
	}{
		{"default is host", api.TaskSpec{Container: docker("")}, DockerNetHost, ""},
		{"legacy BRIDGE", api.TaskSpec{Container: docker("BRIDGE")}, DockerNetBridge, ""},
		{"legacy HOST", api.TaskSpec{Container: docker("HOST")}, DockerNetHost, ""},
		{"legacy NONE", api.TaskSpec{Container: docker("NONE")}, DockerNetNone, ""},
		{"legacy USER", api.TaskSpec{Container: docker("USER")}, DockerNetWeft, ""},
		{"legacy USER with networkName weft", api.TaskSpec{Container: docker("USER"), Networks: []api.Network{{Mode: "container", Name: "weft"}}}, DockerNetWeft, ""},
		{"legacy unknown", api.TaskSpec{Container: docker("OVERLAY")}, "", `unknown network "OVERLAY"`},
		{"1.5 host", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "host"}}}, DockerNetHost, ""},
		{"1.5 bridge", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "container/bridge"}}}, DockerNetBridge, ""},
		{"1.5 weft", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "container", Name: "weft"}}}, DockerNetWeft, ""},
		{"1.5 unnamed container network", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "container"}}}, DockerNetWeft, ""},
		{"1.5 unknown container network", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "container", Name: "calico"}}}, "", `unknown container network "calico"`},
		{"1.5 unknown mode", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "macvlan"}}}, "", `unknown network mode "macvlan"`},
		{"two networks", api.TaskSpec{Container: docker(""), Networks: []api.Network{{Mode: "container", Name: "weft"}, {Mode: "container/bridge"}}}, "", "exactly one network"},
		{"1.5 wins over legacy", api.TaskSpec{Container: docker("HOST"), Networks: []api.Network{{Mode: "container/bridge"}}}, DockerNetBridge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DockerNetworkMode(c.spec)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("= %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestDockerPortBindings(t *testing.T) {
	cases := []struct {
		name     string
		mappings []api.PortMapping
		ports    []int
		want     map[string]string // "8080/tcp" -> host port
		wantErr  string
	}{
		{"dynamic", []api.PortMapping{{ContainerPort: 8080, HostPort: dkInt(0)}}, []int{31001}, map[string]string{"8080/tcp": "31001"}, ""},
		{"missing hostPort is dynamic", []api.PortMapping{{ContainerPort: 80}}, []int{31002}, map[string]string{"80/tcp": "31002"}, ""},
		{"fixed without allocation", []api.PortMapping{{ContainerPort: 80, HostPort: dkInt(8081)}}, nil, map[string]string{"80/tcp": "8081"}, ""},
		{"tcp,udp", []api.PortMapping{{ContainerPort: 53, Protocol: "tcp,udp"}}, []int{31053}, map[string]string{"53/tcp": "31053", "53/udp": "31053"}, ""},
		{"in order", []api.PortMapping{{ContainerPort: 80}, {ContainerPort: 443, Protocol: "tcp"}}, []int{31080, 31443}, map[string]string{"80/tcp": "31080", "443/tcp": "31443"}, ""},
		{"only mappings with a hostPort use the allocation", []api.PortMapping{{ContainerPort: 80}, {ContainerPort: 443, HostPort: dkInt(0)}, {ContainerPort: 9000, HostPort: dkInt(0)}}, []int{31443, 31900}, map[string]string{"443/tcp": "31443", "9000/tcp": "31900"}, ""},
		{"containerPort 0", []api.PortMapping{{ContainerPort: 0}}, []int{31000}, nil, "portMappings[0].containerPort: 0 is not a port"},
		{"unallocated dynamic", []api.PortMapping{{ContainerPort: 80, HostPort: dkInt(0)}}, nil, nil, "no host port was allocated"},
		{"bad protocol", []api.PortMapping{{ContainerPort: 80, Protocol: "sctp"}}, []int{31000}, nil, `unknown protocol "sctp"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exposed, bindings, err := DockerPortBindings(c.mappings, c.ports)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for p, b := range bindings {
				if len(b) != 1 {
					t.Fatalf("%s has %d bindings", p, len(b))
				}
				got[string(p)] = b[0].HostPort
				if _, ok := exposed[p]; !ok {
					t.Errorf("%s bound but not exposed", p)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("bindings = %v, want %v", got, c.want)
			}
		})
	}
}

func TestVolumeBind(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "etc-link")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, host, ctr, mode, root string
		want, wantErr               string
	}{
		{"under root", root + "/data", "/data", "RO", root, root + "/data:/data:ro", ""},
		{"root itself, rw", root, "/srv", "", root, root + ":/srv:rw", ""},
		{"not yet existing", root + "/new/dir", "/x", "RW", root, root + "/new/dir:/x:rw", ""},
		{"cleaned", root + "/data/./sub/..", "/data/", "", root, root + "/data:/data:rw", ""},
		{"outside", "/etc", "/data", "", root, "", "host volumes must be under"},
		{"dotdot escape", root + "/../../etc", "/data", "", root, "", "host volumes must be under"},
		{"sibling prefix", root + "-other/x", "/data", "", root, "", "host volumes must be under"},
		{"symlink escape", root + "/etc-link", "/data", "", root, "", "resolves to /etc, outside"},
		{"relative", "data", "/data", "", root, "", "must be an absolute path"},
		{"no root configured", "/srv/data", "/data", "", "", "", "allows no host volumes"},
		{"relative container path", root + "/data", "data", "", root, "", "containerPath"},
		{"bad mode", root + "/data", "/data", "RX", root, "", `unknown mode "RX"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := volumeBind("v", c.host, c.ctr, c.mode, c.root)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("= %q, %v; want error %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("= %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestPlanDocker(t *testing.T) {
	base := func() Launch {
		cmd := "echo hi"
		return Launch{
			Task: api.Task{ID: "etl.1", AppID: "/etl"},
			Spec: api.TaskSpec{
				Cmd:       &cmd,
				Resources: api.Resources{Cpus: 0.5, Mem: 128},
				Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "etl:1"}},
			},
			Env:     map[string]string{"PORT0": "31000", "MARATHON_APP_ID": "/etl"},
			Sandbox: "/var/lib/weft/sandbox/etl.1",
		}
	}
	opts := dockerPlanOptions{AgentID: "a1", VolumeRoot: "/srv/weft", DNS: []string{"10.47.3.1"}, WeftAvailable: true}

	t.Run("defaults", func(t *testing.T) {
		p, err := planDocker(base(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Host.CPUShares != 512 || p.Host.Memory != 128<<20 || p.Host.MemorySwap != 128<<20 {
			t.Errorf("limits: shares %d mem %d swap %d", p.Host.CPUShares, p.Host.Memory, p.Host.MemorySwap)
		}
		if !reflect.DeepEqual([]string(p.Config.Entrypoint), []string{"/bin/sh", "-c"}) || !reflect.DeepEqual([]string(p.Config.Cmd), []string{"echo hi"}) {
			t.Errorf("cmd: entrypoint %v cmd %v", p.Config.Entrypoint, p.Config.Cmd)
		}
		if p.Host.NetworkMode != "host" {
			t.Errorf("network mode %q, want host", p.Host.NetworkMode)
		}
		wantEnv := []string{"MARATHON_APP_ID=/etl", "PORT0=31000"}
		if !reflect.DeepEqual(p.Config.Env, wantEnv) {
			t.Errorf("env %v, want %v", p.Config.Env, wantEnv)
		}
		for k, v := range map[string]string{LabelTaskID: "etl.1", LabelAppID: "/etl", LabelAgentID: "a1", LabelSandbox: "/var/lib/weft/sandbox/etl.1", LabelMemMB: "128"} {
			if p.Config.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, p.Config.Labels[k], v)
			}
		}
	})
	t.Run("cpu quota", func(t *testing.T) {
		o := opts
		o.CPUQuota = true
		p, err := planDocker(base(), o)
		if err != nil {
			t.Fatal(err)
		}
		if p.Host.NanoCPUs != 5e8 || p.Host.CPUShares != 0 {
			t.Errorf("nano cpus %d shares %d", p.Host.NanoCPUs, p.Host.CPUShares)
		}
	})
	t.Run("weft network: no network at create, weft DNS", func(t *testing.T) {
		l := base()
		l.Spec.Networks = []api.Network{{Mode: "container", Name: "weft"}}
		l.Spec.Container.PortMappings = []api.PortMapping{{ContainerPort: 8080}}
		p, err := planDocker(l, opts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Network != DockerNetWeft || p.Host.NetworkMode != "none" || !reflect.DeepEqual(p.Host.DNS, []string{"10.47.3.1"}) {
			t.Errorf("network %q mode %q dns %v", p.Network, p.Host.NetworkMode, p.Host.DNS)
		}
		if len(p.Host.PortBindings) != 0 || len(p.WeftPorts) != 0 {
			t.Errorf("port bindings on the weft network: %v %v", p.Host.PortBindings, p.WeftPorts)
		}
	})
	t.Run("weft network host ports", func(t *testing.T) {
		l := base()
		l.Spec.Networks = []api.Network{{Mode: "container", Name: "weft"}}
		l.Spec.Container.PortMappings = []api.PortMapping{
			{ContainerPort: 8080}, {ContainerPort: 53, HostPort: dkInt(0), Protocol: "tcp,udp"}, {ContainerPort: 443, HostPort: dkInt(8443)},
		}
		l.Spec.Ports = []int{31053, 8443}
		p, err := planDocker(l, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := []weftPort{{"tcp", 31053, 53}, {"udp", 31053, 53}, {"tcp", 8443, 443}}
		if !reflect.DeepEqual(p.WeftPorts, want) {
			t.Errorf("weft ports %v, want %v", p.WeftPorts, want)
		}
	})
	t.Run("parameters", func(t *testing.T) {
		l := base()
		l.Spec.Container.Docker.Parameters = []api.Parameter{
			{Key: "label", Value: "team=etl"}, {Key: "env", Value: "JAVA_OPTS=-Xmx1g"},
			{Key: "user", Value: "1000:1000"}, {Key: "workdir", Value: "/opt/app"},
			{Key: "memory-swap", Value: "256m"}, {Key: "ulimit", Value: "nofile=4096:8192"},
			{Key: "cap-drop", Value: "NET_RAW"}, {Key: "volume", Value: "/srv/weft/etl:/data:ro"},
			{Key: "log-driver", Value: "json-file"}, {Key: "log-opt", Value: "max-size=10m"},
		}
		p, err := planDocker(l, opts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Config.Labels["team"] != "etl" || p.Config.User != "1000:1000" || p.Config.WorkingDir != "/opt/app" {
			t.Errorf("labels %v user %q workdir %q", p.Config.Labels, p.Config.User, p.Config.WorkingDir)
		}
		if !strings.Contains(strings.Join(p.Config.Env, " "), "JAVA_OPTS=-Xmx1g") {
			t.Errorf("env %v", p.Config.Env)
		}
		if p.Host.MemorySwap != 256<<20 || len(p.Host.Ulimits) != 1 || p.Host.Ulimits[0].Hard != 8192 {
			t.Errorf("swap %d ulimits %v", p.Host.MemorySwap, p.Host.Ulimits)
		}
		if !reflect.DeepEqual(p.Host.Binds, []string{"/srv/weft/etl:/data:ro"}) || !reflect.DeepEqual([]string(p.Host.CapDrop), []string{"NET_RAW"}) {
			t.Errorf("binds %v capdrop %v", p.Host.Binds, p.Host.CapDrop)
		}
		if p.Host.LogConfig.Type != "json-file" || p.Host.LogConfig.Config["max-size"] != "10m" {
			t.Errorf("log config %+v", p.Host.LogConfig)
		}
	})

	refusals := []struct {
		name string
		edit func(*Launch, *dockerPlanOptions)
		want string
	}{
		{"no image", func(l *Launch, _ *dockerPlanOptions) { l.Spec.Container.Docker.Image = "" }, "container.docker.image"},
		{"mem below engine minimum", func(l *Launch, _ *dockerPlanOptions) { l.Spec.Resources.Mem = 4 }, "below the Docker Engine's minimum of 6 MB"},
		{"privileged not allowed", func(l *Launch, _ *dockerPlanOptions) { l.Spec.Container.Docker.Privileged = true }, "privileged"},
		{"cap-add not allowed", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "cap-add", Value: "SYS_ADMIN"}}
		}, "parameters[0] (cap-add)"},
		{"unknown parameter names it", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "label", Value: "a=b"}, {Key: "pid", Value: "host"}}
		}, `parameters[1] (pid): parameter "pid" is not supported by weft: sharing the host's namespaces is not allowed`},
		{"network parameter", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "net", Value: "host"}}
		}, "networks[]"},
		{"forged weft label", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "label", Value: "weft.agent-id=other"}}
		}, "the agent's own"},
		{"volume parameter outside root", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "volume", Value: "/var/run/docker.sock:/var/run/docker.sock"}}
		}, "host volumes must be under /srv/weft"},
		{"log driver without output", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "log-driver", Value: "none"}}
		}, "does not let the agent read the output"},
		{"unallocated host port on weft", func(l *Launch, _ *dockerPlanOptions) {
			l.Spec.Networks = []api.Network{{Mode: "container", Name: "weft"}}
			l.Spec.Container.PortMappings = []api.PortMapping{{ContainerPort: 80, HostPort: dkInt(0)}}
		}, "no host port was allocated"},
		{"weft unavailable", func(l *Launch, o *dockerPlanOptions) {
			l.Spec.Networks = []api.Network{{Mode: "container", Name: "weft"}}
			o.WeftAvailable = false
		}, "not available on this agent"},
	}
	for _, c := range refusals {
		t.Run("refuses "+c.name, func(t *testing.T) {
			l, o := base(), opts
			c.edit(&l, &o)
			_, err := planDocker(l, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
	t.Run("allows privileged when configured", func(t *testing.T) {
		l, o := base(), opts
		o.AllowPrivileged = true
		l.Spec.Container.Docker.Privileged = true
		l.Spec.Container.Docker.Parameters = []api.Parameter{{Key: "cap-add", Value: "NET_ADMIN"}}
		p, err := planDocker(l, o)
		if err != nil || !p.Host.Privileged || len(p.Host.CapAdd) != 1 {
			t.Fatalf("plan %+v, %v", p, err)
		}
	})
}

func TestContainerName(t *testing.T) {
	if got := ContainerName("biserver_pentaho.5f0c-11ef/x y"); got != "weft-biserver_pentaho.5f0c-11ef_x_y" {
		t.Errorf("ContainerName = %q", got)
	}
}

func TestDockerCheckAddr(t *testing.T) {
	weft := api.TaskSpec{
		Networks:  []api.Network{{Mode: "container", Name: "weft"}},
		Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "x"}, PortMappings: []api.PortMapping{{ContainerPort: 8080}, {ContainerPort: 9090}}},
	}
	bridge := api.TaskSpec{
		Networks:  []api.Network{{Mode: "container/bridge"}},
		Ports:     []int{31000, 31001},
		Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "x"}, PortMappings: []api.PortMapping{{ContainerPort: 8080, HostPort: dkInt(0)}, {ContainerPort: 9090, HostPort: dkInt(0)}}},
	}
	host := api.TaskSpec{Ports: []int{31500}, Container: &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "x"}}}
	ips := []api.IPAddress{{IPAddress: "10.47.3.2", Protocol: "IPv4"}}
	cases := []struct {
		name      string
		spec      api.TaskSpec
		ips       []api.IPAddress
		hostIP    string
		portIndex *int
		port      *int
		want      string
		wantErr   string
	}{
		{"weft default index", weft, ips, "192.0.2.7", nil, nil, "10.47.3.2:8080", ""},
		{"weft index 1", weft, ips, "192.0.2.7", dkInt(1), nil, "10.47.3.2:9090", ""},
		{"weft fixed port", weft, ips, "192.0.2.7", nil, dkInt(7000), "10.47.3.2:7000", ""},
		{"weft no address yet", weft, nil, "192.0.2.7", nil, nil, "", "no address"},
		{"weft index out of range", weft, ips, "192.0.2.7", dkInt(2), nil, "", "portIndex 2 has no port mapping"},
		{"bridge host port", bridge, nil, "192.0.2.7", dkInt(1), nil, "192.0.2.7:31001", ""},
		{"bridge unspecified host", bridge, nil, "", nil, nil, "127.0.0.1:31000", ""},
		{"host", host, nil, "192.0.2.7", dkInt(0), nil, "192.0.2.7:31500", ""},
		{"host fixed", host, nil, "192.0.2.7", nil, dkInt(8443), "192.0.2.7:8443", ""},
		{"host out of range", host, nil, "192.0.2.7", dkInt(3), nil, "", "portIndex 3 has no host port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DockerCheckAddr(c.spec, c.ips, c.hostIP, c.portIndex, c.port)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("= %q, %v; want error %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("= %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestDockerHandles(t *testing.T) {
	e := &DockerExecutor{}
	cases := []struct {
		name string
		c    *api.Container
		want bool
	}{
		{"no container", nil, false},
		{"docker", &api.Container{Type: "DOCKER", Docker: &api.Docker{Image: "x"}}, true},
		{"docker lower case", &api.Container{Type: "docker", Docker: &api.Docker{Image: "x"}}, true},
		{"mesos with a docker image", &api.Container{Type: "MESOS", Docker: &api.Docker{Image: "x"}}, true},
		{"mesos without image", &api.Container{Type: "MESOS"}, false},
	}
	for _, c := range cases {
		if got := e.Handles(api.TaskSpec{Container: c.c}); got != c.want {
			t.Errorf("%s: Handles = %v, want %v", c.name, got, c.want)
		}
	}
}
