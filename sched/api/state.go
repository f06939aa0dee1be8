package api

// State is a whole view of the cluster at one store index: what the watch
// returns. dns, lb and the CLI rebuild what they serve from it.
type State struct {
	Index       uint64       `json:"index"`
	Leader      string       `json:"leader"` // host:port of the leading master's API
	Domain      string       `json:"domain,omitempty"`
	Nodes       []Node       `json:"nodes"`
	Apps        []*App       `json:"apps"`
	Tasks       []*Task      `json:"tasks"`
	Deployments []Deployment `json:"deployments"`
	Jobs        []Job        `json:"jobs"`

	// A Mirror's States: their number and the Mirror's log of what each
	// changed (see ChangedSince).
	seq uint64
	log *changeLog
}

// ErrorBody is Marathon's error body.
type ErrorBody struct {
	Message     string          `json:"message"`
	Details     []ErrorDetail   `json:"details,omitempty"`
	Deployments []DeploymentRef `json:"deployments,omitempty"`
}

// ErrorDetail names a JSON path and what was wrong there.
type ErrorDetail struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}
