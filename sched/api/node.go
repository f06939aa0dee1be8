package api

// PortRange is an inclusive range of host ports.
type PortRange struct {
	Begin int `json:"begin"`
	End   int `json:"end"`
}

// Resources are what an agent offers and a task consumes.
type Resources struct {
	Cpus  float64     `json:"cpus"`
	Mem   float64     `json:"mem"`
	Disk  float64     `json:"disk"`
	Gpus  int         `json:"gpus,omitempty"`
	Ports []PortRange `json:"ports,omitempty"`
}

// Node roles.
const (
	RoleMaster = "master"
	RoleAgent  = "agent"
	RoleBoth   = "master+agent" // weft up
)

// Node is a cluster member as `weft node list` and the watch show it.
type Node struct {
	ID           string            `json:"id"` // the agent id tasks carry as slaveId
	Name         string            `json:"name"`
	Role         string            `json:"role"`
	Site         string            `json:"site"`
	Status       string            `json:"status"`                 // alive, suspect, failed, left
	Address      string            `json:"address"`                // host (underlay) address
	OverlayIP    string            `json:"overlayIp,omitempty"`    // the node's overlay address, when the mesh is on
	OverlayBlock string            `json:"overlayBlock,omitempty"` // e.g. 10.47.3.0/24
	AgentAPI     string            `json:"agentApi,omitempty"`     // host:port of the agent API
	API          string            `json:"api,omitempty"`          // host:port of the master API
	Raft         string            `json:"raft,omitempty"`         // host:port raft peers reach this master at
	DNS          string            `json:"dns,omitempty"`          // host:port of the node's DNS server
	Resources    Resources         `json:"resources"`
	Used         Resources         `json:"used"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	AgentRole    string            `json:"agentRole,omitempty"`    // Mesos resource role, e.g. slave_public
	Capabilities []string          `json:"capabilities,omitempty"` // e.g. "docker"
	Problems     []string          `json:"problems,omitempty"`     // why a capability is missing
	Version      string            `json:"version,omitempty"`
}

// Offer is a slice of one agent's free resources offered to a framework.
type Offer struct {
	ID           string            `json:"id"`
	AgentID      string            `json:"agentId"`
	Hostname     string            `json:"hostname"`
	Site         string            `json:"site"`
	Role         string            `json:"role"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Capabilities []string          `json:"capabilities,omitempty"`
	Resources    Resources         `json:"resources"`
}

// HasCapability reports whether the offer's agent has capability c.
func (o *Offer) HasCapability(c string) bool {
	for _, x := range o.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}
