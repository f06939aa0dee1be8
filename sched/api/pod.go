package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Pod is a Marathon 1.4+ pod definition (pod.raml, podContainer.raml): a
// group of containers placed on one agent as a unit, sharing one network
// namespace and the pod's volumes. Every field Marathon writes is kept, so a
// POST followed by a GET returns what the user sent with defaults filled in.
type Pod struct {
	ID                string              `json:"id"`
	Labels            map[string]string   `json:"labels"`
	Version           string              `json:"version,omitempty"`
	User              *string             `json:"user"`
	Environment       map[string]EnvValue `json:"environment"`
	Containers        []PodContainer      `json:"containers"`
	Secrets           map[string]Secret   `json:"secrets"`
	Volumes           []PodVolume         `json:"volumes"`
	Networks          []PodNetwork        `json:"networks"`
	Scaling           PodScaling          `json:"scaling"`
	Scheduling        PodScheduling       `json:"scheduling"`
	ExecutorResources *PodResources       `json:"executorResources,omitempty"`
}

// PodContainer is one container of a pod.
type PodContainer struct {
	Name         string              `json:"name"`
	Exec         *PodExec            `json:"exec,omitempty"`
	Resources    PodResources        `json:"resources"`
	Endpoints    []PodEndpoint       `json:"endpoints"`
	Image        *PodImage           `json:"image"`
	Environment  map[string]EnvValue `json:"environment"`
	User         *string             `json:"user"`
	HealthCheck  *PodHealthCheck     `json:"healthCheck"`
	VolumeMounts []PodVolumeMount    `json:"volumeMounts"`
	Artifacts    []Fetch             `json:"artifacts"`
	Labels       map[string]string   `json:"labels"`
	Lifecycle    *PodLifecycle       `json:"lifecycle"`
}

// PodExec is a container's command.
type PodExec struct {
	Command            PodCommand `json:"command"`
	OverrideEntrypoint *bool      `json:"overrideEntrypoint,omitempty"`
}

// PodCommand is {"shell": "..."} or {"argv": [...]}.
type PodCommand struct {
	Shell string   `json:"shell,omitempty"`
	Argv  []string `json:"argv,omitempty"`
}

// PodResources are one container's resources (or the executor's).
type PodResources struct {
	Cpus float64 `json:"cpus"`
	Mem  float64 `json:"mem"`
	Disk float64 `json:"disk"`
	Gpus int     `json:"gpus"`
}

// PodEndpoint is a named port of a container (network.raml Endpoint).
type PodEndpoint struct {
	Name          string            `json:"name"`
	ContainerPort *int              `json:"containerPort,omitempty"`
	HostPort      *int              `json:"hostPort,omitempty"`
	Protocol      Protocols         `json:"protocol"`
	Labels        map[string]string `json:"labels"`
}

// Protocols is an endpoint's protocol list. Marathon's schema says an
// array; a single string is read as a list of one.
type Protocols []string

func (p *Protocols) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = Protocols{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("expected an array of protocol names")
	}
	*p = l
	return nil
}

// PodImage is a container's filesystem image.
type PodImage struct {
	Kind       string            `json:"kind"` // DOCKER or APPC
	ID         string            `json:"id"`
	ForcePull  bool              `json:"forcePull"`
	PullConfig *PullConfig       `json:"pullConfig,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// PodHealthCheck is a container's health check: exactly one of HTTP, TCP
// and Exec.
type PodHealthCheck struct {
	HTTP                   *PodHTTPCheck `json:"http,omitempty"`
	TCP                    *PodTCPCheck  `json:"tcp,omitempty"`
	Exec                   *PodExecCheck `json:"exec,omitempty"`
	GracePeriodSeconds     int           `json:"gracePeriodSeconds"`
	IntervalSeconds        int           `json:"intervalSeconds"`
	MaxConsecutiveFailures int           `json:"maxConsecutiveFailures"`
	TimeoutSeconds         int           `json:"timeoutSeconds"`
	DelaySeconds           int           `json:"delaySeconds"`
}

// PodHTTPCheck checks an endpoint over HTTP.
type PodHTTPCheck struct {
	Endpoint string `json:"endpoint"`
	Path     string `json:"path,omitempty"`
	Scheme   string `json:"scheme,omitempty"` // HTTP or HTTPS
}

// PodTCPCheck checks that an endpoint accepts connections.
type PodTCPCheck struct {
	Endpoint string `json:"endpoint"`
}

// PodExecCheck runs a command in the container.
type PodExecCheck struct {
	Command PodCommand `json:"command"`
}

// PodVolumeMount mounts a pod volume into a container.
type PodVolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// PodVolume is a pod-level volume: ephemeral (a name alone) or a host path.
type PodVolume struct {
	Name       string          `json:"name"`
	Host       string          `json:"host,omitempty"`
	Persistent json.RawMessage `json:"persistent,omitempty"`
	Secret     string          `json:"secret,omitempty"`
}

// PodNetwork is the pod's network: host, container (named) or
// container/bridge.
type PodNetwork struct {
	Mode   string            `json:"mode"`
	Name   *string           `json:"name"`
	Labels map[string]string `json:"labels"`
}

// PodLifecycle is a container's kill grace period.
type PodLifecycle struct {
	KillGracePeriodSeconds *float64 `json:"killGracePeriodSeconds,omitempty"`
}

// PodScaling is the fixed scaling policy.
type PodScaling struct {
	Kind         string `json:"kind"`
	Instances    int    `json:"instances"`
	MaxInstances *int   `json:"maxInstances"`
}

// PodScheduling is where and how a pod's instances are launched.
type PodScheduling struct {
	Backoff             PodBackoff           `json:"backoff"`
	Upgrade             UpgradeStrategy      `json:"upgrade"`
	Placement           PodPlacement         `json:"placement"`
	KillSelection       string               `json:"killSelection,omitempty"`
	UnreachableStrategy *UnreachableStrategy `json:"unreachableStrategy,omitempty"`
}

// PodBackoff is the launch backoff.
type PodBackoff struct {
	Backoff        float64 `json:"backoff"`
	BackoffFactor  float64 `json:"backoffFactor"`
	MaxLaunchDelay float64 `json:"maxLaunchDelay"`
}

// PodPlacement holds constraints and roles.
type PodPlacement struct {
	Constraints           []PodConstraint `json:"constraints"`
	AcceptedResourceRoles []string        `json:"acceptedResourceRoles"`
}

// PodConstraint is {fieldName, operator, value}; the array form of apps
// (["field","OP","value"]) is read too.
type PodConstraint struct {
	FieldName string `json:"fieldName"`
	Operator  string `json:"operator"`
	Value     string `json:"value,omitempty"`
}

func (c *PodConstraint) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		if len(l) < 2 || len(l) > 3 {
			return fmt.Errorf("a constraint is [field, operator] or [field, operator, value]")
		}
		*c = PodConstraint{FieldName: l[0], Operator: l[1]}
		if len(l) == 3 {
			c.Value = l[2]
		}
		return nil
	}
	type plain PodConstraint
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*c = PodConstraint(p)
	return nil
}

// PodTaskSpec is how an agent runs one instance of a pod: the containers,
// started together and stopped together. The instance's task carries the
// pod's network, host ports and summed resources; each container here has
// its own command, image, environment and mounts.
type PodTaskSpec struct {
	Containers []PodTaskContainer `json:"containers"`
	// Volumes are the pod's volumes: name → host path ("" for an
	// ephemeral volume, made in the instance's sandbox).
	Volumes map[string]string `json:"volumes,omitempty"`
}

// PodTaskContainer is one container of a pod instance.
type PodTaskContainer struct {
	Name      string            `json:"name"`
	Image     string            `json:"image,omitempty"` // "" runs a process on the host network
	ForcePull bool              `json:"forcePull,omitempty"`
	Shell     string            `json:"shell,omitempty"`
	Argv      []string          `json:"argv,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Resources Resources         `json:"resources"`
	Mounts    []PodVolumeMount  `json:"mounts,omitempty"`
	Fetch     []Fetch           `json:"fetch,omitempty"`
	// ExecCheck is the container's exec health check command, when it has
	// one: COMMAND checks of the instance run in this container.
	ExecCheck string `json:"execCheck,omitempty"`
}

// PodStatus is GET /v2/pods/{id}::status (podStatus.raml PodStatus).
type PodStatus struct {
	ID                 string               `json:"id"`
	Spec               *Pod                 `json:"spec"`
	Status             string               `json:"status"` // DEGRADED, STABLE, TERMINAL
	StatusSince        string               `json:"statusSince"`
	Message            string               `json:"message,omitempty"`
	Instances          []PodInstanceStatus  `json:"instances"`
	TerminationHistory []TerminationHistory `json:"terminationHistory"`
	LastUpdated        string               `json:"lastUpdated"`
	LastChanged        string               `json:"lastChanged"`
}

// PodInstanceStatus is one instance of a pod.
type PodInstanceStatus struct {
	ID            string               `json:"id"`
	Status        string               `json:"status"` // PENDING, STAGING, STABLE, DEGRADED, TERMINAL
	StatusSince   string               `json:"statusSince"`
	Message       string               `json:"message,omitempty"`
	Conditions    []any                `json:"conditions"`
	AgentHostname string               `json:"agentHostname,omitempty"`
	AgentID       string               `json:"agentId,omitempty"`
	Resources     PodResources         `json:"resources"`
	Networks      []PodNetworkStatus   `json:"networks"`
	Containers    []PodContainerStatus `json:"containers"`
	SpecReference string               `json:"specReference"`
	LastUpdated   string               `json:"lastUpdated"`
	LastChanged   string               `json:"lastChanged"`
	LocalVolumes  []LocalVolume        `json:"localVolumes,omitempty"`
}

// PodNetworkStatus is a network an instance is attached to.
type PodNetworkStatus struct {
	Name      string   `json:"name,omitempty"`
	Addresses []string `json:"addresses"`
}

// PodContainerStatus is one container of an instance.
type PodContainerStatus struct {
	Name        string                `json:"name"`
	Status      string                `json:"status"` // the Mesos task state
	StatusSince string                `json:"statusSince"`
	Message     string                `json:"message,omitempty"`
	Conditions  []any                 `json:"conditions"`
	ContainerID string                `json:"containerId"`
	Endpoints   []PodEndpointStatus   `json:"endpoints"`
	Resources   PodResources          `json:"resources"`
	Termination *PodTerminationStatus `json:"termination,omitempty"`
	LastUpdated string                `json:"lastUpdated"`
	LastChanged string                `json:"lastChanged"`
}

// PodEndpointStatus is an endpoint's allocated host port and health.
type PodEndpointStatus struct {
	Name              string `json:"name"`
	AllocatedHostPort int    `json:"allocatedHostPort,omitempty"`
	Healthy           *bool  `json:"healthy,omitempty"`
}

// PodTerminationStatus is how a container ended.
type PodTerminationStatus struct {
	ExitCode *int   `json:"exitCode,omitempty"`
	Message  string `json:"message,omitempty"`
}

// TerminationHistory is a recent instance termination.
type TerminationHistory struct {
	InstanceID   string `json:"instanceID"`
	StartedAt    string `json:"startedAt"`
	TerminatedAt string `json:"terminatedAt"`
	Message      string `json:"message,omitempty"`
}
