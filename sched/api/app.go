package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// App is a Marathon v2 app definition (AppDefinition in Marathon's app.raml).
// Every field of the definition is kept, honoured or not yet, so that a PUT
// followed by a GET returns what the user sent, with defaults filled in.
type App struct {
	rev                        uint64              // see Rev
	ID                         string              `json:"id"`
	Cmd                        *string             `json:"cmd"`
	Args                       []string            `json:"args"`
	User                       *string             `json:"user"`
	Env                        map[string]EnvValue `json:"env"`
	Instances                  int                 `json:"instances"`
	Cpus                       float64             `json:"cpus"`
	Mem                        float64             `json:"mem"`
	Disk                       float64             `json:"disk"`
	Gpus                       int                 `json:"gpus"`
	Executor                   string              `json:"executor"`
	Constraints                [][]string          `json:"constraints"`
	Fetch                      []Fetch             `json:"fetch"`
	Uris                       []string            `json:"uris,omitempty"`
	StoreUrls                  []string            `json:"storeUrls,omitempty"`
	BackoffSeconds             float64             `json:"backoffSeconds"`
	BackoffFactor              float64             `json:"backoffFactor"`
	MaxLaunchDelaySeconds      float64             `json:"maxLaunchDelaySeconds"`
	Container                  *Container          `json:"container,omitempty"`
	HealthChecks               []HealthCheck       `json:"healthChecks"`
	ReadinessChecks            []ReadinessCheck    `json:"readinessChecks"`
	Dependencies               []string            `json:"dependencies"`
	UpgradeStrategy            UpgradeStrategy     `json:"upgradeStrategy"`
	Labels                     map[string]string   `json:"labels"`
	AcceptedResourceRoles      []string            `json:"acceptedResourceRoles,omitempty"`
	Role                       string              `json:"role,omitempty"`
	IPAddress                  *IPAddressSpec      `json:"ipAddress,omitempty"`
	Version                    string              `json:"version,omitempty"`
	VersionInfo                *VersionInfo        `json:"versionInfo,omitempty"`
	Residency                  json.RawMessage     `json:"residency,omitempty"`
	PortDefinitions            []PortDefinition    `json:"portDefinitions"`
	Ports                      []int               `json:"ports,omitempty"`
	RequirePorts               bool                `json:"requirePorts"`
	KillSelection              string              `json:"killSelection"`
	UnreachableStrategy        UnreachableStrategy `json:"unreachableStrategy"`
	TaskKillGracePeriodSeconds *float64            `json:"taskKillGracePeriodSeconds"`
	Secrets                    map[string]Secret   `json:"secrets"`
	Networks                   []Network           `json:"networks"`
	Tty                        *bool               `json:"tty,omitempty"`
	ServiceAccount             json.RawMessage     `json:"serviceAccount,omitempty"`
	// Kept as given and returned on GET, not honoured (weft says so in
	// GET /v1/apps/problems): the Mesos check, resource limits above the
	// requests, and the executor's own resources.
	Check             json.RawMessage `json:"check,omitempty"`
	ResourceLimits    json.RawMessage `json:"resourceLimits,omitempty"`
	ExecutorResources json.RawMessage `json:"executorResources,omitempty"`
	// Pod is set on the app weft derives from a pod definition (/v2/pods)
	// to schedule it: such an app never appears in /v2/apps, and one of
	// its tasks is one instance of the pod.
	Pod *Pod `json:"pod,omitempty"`
}

// EnvValue is an env entry: a plain string, or {"secret": "name"}.
type EnvValue struct {
	Value  string
	Secret string
}

func (e EnvValue) MarshalJSON() ([]byte, error) {
	if e.Secret != "" {
		return json.Marshal(map[string]string{"secret": e.Secret})
	}
	return json.Marshal(e.Value)
}

func (e *EnvValue) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var s struct {
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*e = EnvValue{Secret: s.Secret}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*e = EnvValue{Value: s}
	return nil
}

// Secret refers to a secret store entry; weft stores it and passes it on.
type Secret struct {
	Source string `json:"source"`
}

// Fetch is a URI the executor downloads into the sandbox before the task starts.
type Fetch struct {
	URI        string `json:"uri"`
	Executable bool   `json:"executable"`
	Extract    bool   `json:"extract"`
	Cache      bool   `json:"cache"`
	DestPath   string `json:"destPath,omitempty"`
}

// Container is Marathon's container object, legacy and 1.5+ fields alike.
type Container struct {
	Type         string        `json:"type"` // DOCKER or MESOS
	Docker       *Docker       `json:"docker,omitempty"`
	Volumes      []Volume      `json:"volumes"`
	PortMappings []PortMapping `json:"portMappings,omitempty"` // 1.5+
	// LinuxInfo (seccomp, ipcInfo) is kept, not applied.
	LinuxInfo json.RawMessage `json:"linuxInfo,omitempty"`
}

// Docker is container.docker.
type Docker struct {
	Image          string        `json:"image"`
	Network        string        `json:"network,omitempty"`      // legacy: BRIDGE, HOST, USER, NONE
	PortMappings   []PortMapping `json:"portMappings,omitempty"` // legacy
	Privileged     bool          `json:"privileged"`
	Parameters     []Parameter   `json:"parameters"`
	ForcePullImage bool          `json:"forcePullImage"`
	PullConfig     *PullConfig   `json:"pullConfig,omitempty"`
	// Credential (Mesos' principal and secret for the registry) is kept,
	// not used: agents pull with their Docker Engine's own credentials.
	Credential json.RawMessage `json:"credential,omitempty"`
}

// PullConfig is container.docker.pullConfig: the secret holding a Docker
// config.json for the registry. Kept, not used yet.
type PullConfig struct {
	Secret string `json:"secret"`
}

// Parameter is a docker run parameter (key is the long flag without "--").
type Parameter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Volume is a container volume.
type Volume struct {
	ContainerPath string          `json:"containerPath"`
	HostPath      string          `json:"hostPath,omitempty"`
	Mode          string          `json:"mode,omitempty"` // RO or RW
	Persistent    json.RawMessage `json:"persistent,omitempty"`
	External      json.RawMessage `json:"external,omitempty"`
	Secret        string          `json:"secret,omitempty"` // a secret volume: the secret's name; kept, not mounted
}

// PortMapping is a container port mapping.
type PortMapping struct {
	ContainerPort int               `json:"containerPort"`
	HostPort      *int              `json:"hostPort,omitempty"` // nil: no host port (container networks); 0: dynamic
	ServicePort   int               `json:"servicePort"`
	Protocol      string            `json:"protocol,omitempty"`
	Name          string            `json:"name,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	NetworkNames  []string          `json:"networkNames,omitempty"`
}

// PortDefinition is an entry of portDefinitions (host networking).
type PortDefinition struct {
	Port     int               `json:"port"`
	Protocol string            `json:"protocol,omitempty"`
	Name     string            `json:"name,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Network is an entry of the 1.5+ networks array.
type Network struct {
	Mode   string            `json:"mode"` // host, container/bridge, container
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// IPAddressSpec is the legacy app.ipAddress (IP-per-task) object.
type IPAddressSpec struct {
	Groups      []string          `json:"groups,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	NetworkName string            `json:"networkName,omitempty"`
	Discovery   *struct {
		Ports []DiscoveryPort `json:"ports"`
	} `json:"discovery,omitempty"`
}

// DiscoveryPort is a port of ipAddress.discovery: the port a task listens
// on at its own IP address. Marathon names the port "number".
type DiscoveryPort struct {
	Number   int               `json:"number"`
	Name     string            `json:"name,omitempty"`
	Protocol string            `json:"protocol,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// UnmarshalJSON also reads "port", which weft wrote before it used
// Marathon's "number", so apps stored by an older weft keep their ports.
func (d *DiscoveryPort) UnmarshalJSON(b []byte) error {
	type plain DiscoveryPort
	var v struct {
		plain
		Port *int `json:"port"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = DiscoveryPort(v.plain)
	if d.Number == 0 && v.Port != nil {
		d.Number = *v.Port
	}
	return nil
}

// HealthCheck is a Marathon health check definition.
type HealthCheck struct {
	Protocol               string        `json:"protocol"` // HTTP HTTPS TCP COMMAND MESOS_HTTP MESOS_HTTPS MESOS_TCP
	Path                   string        `json:"path,omitempty"`
	PortIndex              *int          `json:"portIndex,omitempty"`
	Port                   *int          `json:"port,omitempty"`
	Command                *CommandCheck `json:"command,omitempty"`
	GracePeriodSeconds     int           `json:"gracePeriodSeconds"`
	IntervalSeconds        int           `json:"intervalSeconds"`
	TimeoutSeconds         int           `json:"timeoutSeconds"`
	MaxConsecutiveFailures int           `json:"maxConsecutiveFailures"`
	DelaySeconds           int           `json:"delaySeconds"`
	IgnoreHTTP1xx          bool          `json:"ignoreHttp1xx"`
	IPProtocol             string        `json:"ipProtocol,omitempty"`
}

// CommandCheck is the command of a COMMAND health check.
type CommandCheck struct {
	Value string `json:"value"`
}

// ReadinessCheck gates deployments: a task counts as ready once it answers.
type ReadinessCheck struct {
	Name                    string `json:"name"`
	Protocol                string `json:"protocol"`
	Path                    string `json:"path"`
	PortName                string `json:"portName"`
	IntervalSeconds         int    `json:"intervalSeconds"`
	TimeoutSeconds          int    `json:"timeoutSeconds"`
	HTTPStatusCodesForReady []int  `json:"httpStatusCodesForReady"`
	PreserveLastResponse    bool   `json:"preserveLastResponse"`
}

// UpgradeStrategy bounds capacity during a deployment; both values are in 0..1.
type UpgradeStrategy struct {
	MinimumHealthCapacity float64 `json:"minimumHealthCapacity"`
	MaximumOverCapacity   float64 `json:"maximumOverCapacity"`
}

// UnreachableStrategy is either {inactiveAfterSeconds, expungeAfterSeconds}
// or the string "disabled".
type UnreachableStrategy struct {
	Disabled             bool
	InactiveAfterSeconds float64
	ExpungeAfterSeconds  float64
}

func (u UnreachableStrategy) MarshalJSON() ([]byte, error) {
	if u.Disabled {
		return []byte(`"disabled"`), nil
	}
	return json.Marshal(struct {
		InactiveAfterSeconds float64 `json:"inactiveAfterSeconds"`
		ExpungeAfterSeconds  float64 `json:"expungeAfterSeconds"`
	}{u.InactiveAfterSeconds, u.ExpungeAfterSeconds})
}

func (u *UnreachableStrategy) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s != "disabled" {
			return fmt.Errorf("unreachableStrategy: expected an object or \"disabled\", got %q", s)
		}
		*u = UnreachableStrategy{Disabled: true}
		return nil
	}
	var o struct {
		InactiveAfterSeconds *float64 `json:"inactiveAfterSeconds"`
		ExpungeAfterSeconds  *float64 `json:"expungeAfterSeconds"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	u.Disabled = false
	if o.InactiveAfterSeconds != nil {
		u.InactiveAfterSeconds = *o.InactiveAfterSeconds
	}
	if o.ExpungeAfterSeconds != nil {
		u.ExpungeAfterSeconds = *o.ExpungeAfterSeconds
	}
	return nil
}

// VersionInfo is output only.
type VersionInfo struct {
	LastScalingAt      string `json:"lastScalingAt"`
	LastConfigChangeAt string `json:"lastConfigChangeAt"`
}

// AppInfo is an App as GET /v2/apps returns it: the definition plus counts and
// the embedded objects the caller asked for.
type AppInfo struct {
	App
	TasksStaged     int               `json:"tasksStaged"`
	TasksRunning    int               `json:"tasksRunning"`
	TasksHealthy    int               `json:"tasksHealthy"`
	TasksUnhealthy  int               `json:"tasksUnhealthy"`
	Deployments     []DeploymentRef   `json:"deployments"`
	Tasks           []Task            `json:"tasks,omitempty"`
	LastTaskFailure *TaskFailure      `json:"lastTaskFailure,omitempty"`
	Readiness       []ReadinessResult `json:"readinessCheckResults,omitempty"`
	TaskStats       map[string]any    `json:"taskStats,omitempty"`
}

// DeploymentRef names a deployment that touches an app.
type DeploymentRef struct {
	ID string `json:"id"`
}

// TaskFailure is app.lastTaskFailure.
type TaskFailure struct {
	AppID     string `json:"appId"`
	Host      string `json:"host"`
	Message   string `json:"message"`
	State     string `json:"state"`
	TaskID    string `json:"taskId"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
	SlaveID   string `json:"slaveId,omitempty"`
}

// ReadinessResult is one readiness check outcome.
type ReadinessResult struct {
	Name    string `json:"name"`
	TaskID  string `json:"taskId"`
	Ready   bool   `json:"ready"`
	LastRes any    `json:"lastResponse,omitempty"`
}
