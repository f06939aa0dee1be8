package api

import "encoding/json"

// Deployment is a Marathon deployment plan as GET /v2/deployments shows it.
type Deployment struct {
	ID             string             `json:"id"`
	Version        string             `json:"version"`
	AffectedApps   []string           `json:"affectedApps"`
	AffectedPods   []string           `json:"affectedPods"`
	Steps          []DeploymentStep   `json:"steps"`
	CurrentActions []DeploymentAction `json:"currentActions"`
	CurrentStep    int                `json:"currentStep"`
	TotalSteps     int                `json:"totalSteps"`
}

// DeploymentStep is one step of a plan; its actions run together.
type DeploymentStep struct {
	Actions []DeploymentAction `json:"actions"`
}

// DeploymentAction acts on one app (StartApplication, StopApplication,
// ScaleApplication, RestartApplication, ResolveArtifacts) or, as the API
// shows it, one pod (StartPod, StopPod, ScalePod, RestartPod, with Pod set
// instead of App).
type DeploymentAction struct {
	Action string `json:"action"`
	App    string `json:"app,omitempty"`
	Pod    string `json:"pod,omitempty"`
	// Marathon sends it, always, in currentActions (as [] when no check
	// runs) and never in steps: set (non-nil) only in currentActions.
	ReadinessCheckResults []ReadinessResult `json:"readinessCheckResults,omitzero"`
}

// DeploymentResult is what every deployable call returns.
type DeploymentResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
}

// QueueItem is an entry of GET /v2/queue: an app with tasks waiting to launch.
type QueueItem struct {
	App                    App                     `json:"app"` // the definition, as Marathon shows it
	Count                  int                     `json:"count"`
	Delay                  QueueDelay              `json:"delay"`
	Since                  string                  `json:"since"`
	ProcessedOffersSummary *ProcessedOffersSummary `json:"processedOffersSummary,omitempty"`
	LastUnusedOffers       []UnusedOffer           `json:"lastUnusedOffers,omitempty"`
}

// QueueDelay is the launch backoff of a queued app.
type QueueDelay struct {
	TimeLeftSeconds float64 `json:"timeLeftSeconds"`
	Overdue         bool    `json:"overdue"`
}

// ProcessedOffersSummary says why offers were declined: Marathon 1.5's shape.
type ProcessedOffersSummary struct {
	ProcessedOffersCount       int             `json:"processedOffersCount"`
	UnusedOffersCount          int             `json:"unusedOffersCount"`
	LastUnusedOfferAt          string          `json:"lastUnusedOfferAt,omitempty"`
	LastUsedOfferAt            string          `json:"lastUsedOfferAt,omitempty"`
	RejectSummaryLastOffers    []DeclineReason `json:"rejectSummaryLastOffers"`
	RejectSummaryLaunchAttempt []DeclineReason `json:"rejectSummaryLaunchAttempt"`
}

// DeclineReason counts offers declined for one reason (InsufficientCpus,
// InsufficientMemory, InsufficientDisk, InsufficientPorts,
// UnfulfilledConstraint, UnfulfilledRole, NoCapability).
type DeclineReason struct {
	Reason    string `json:"reason"`
	Declined  int    `json:"declined"`
	Processed int    `json:"processed"`
}

// UnusedOffer is one recently declined offer and its reasons.
type UnusedOffer struct {
	Offer     Offer    `json:"offer"`
	Reason    []string `json:"reason"`
	Timestamp string   `json:"timestamp"`
}

// Group is a Marathon group tree node. Apps, Groups and Pods are left out
// of its JSON when nil: what the query's embed did not ask for, as
// Marathon leaves those keys out; an empty list is [].
type Group struct {
	ID           string      `json:"id"`
	Apps         []AppInfo   `json:"apps"`
	Groups       []Group     `json:"groups"`
	Pods         []PodStatus `json:"pods"` // each pod's ::status (Marathon's embed=group.pods)
	Dependencies []string    `json:"dependencies"`
	Version      string      `json:"version,omitempty"`
}

// MarshalJSON writes g with its nil lists left out.
func (g Group) MarshalJSON() ([]byte, error) {
	type embedded struct {
		ID           string       `json:"id"`
		Apps         *[]AppInfo   `json:"apps,omitempty"`
		Groups       *[]Group     `json:"groups,omitempty"`
		Pods         *[]PodStatus `json:"pods,omitempty"`
		Dependencies []string     `json:"dependencies"`
		Version      string       `json:"version,omitempty"`
	}
	e := embedded{ID: g.ID, Dependencies: g.Dependencies, Version: g.Version}
	if g.Apps != nil {
		e.Apps = &g.Apps
	}
	if g.Groups != nil {
		e.Groups = &g.Groups
	}
	if g.Pods != nil {
		e.Pods = &g.Pods
	}
	return json.Marshal(e)
}

// Deployment outcomes, as weft's GET /v1/deployments/{id} reports them.
const (
	DeploymentRunning   = "running"
	DeploymentSucceeded = "succeeded"
	DeploymentFailed    = "failed"
)

// DeploymentOutcome is weft's GET /v1/deployments/{id}: where a
// deployment stands or how it ended (kept for an hour after its end).
type DeploymentOutcome struct {
	ID     string `json:"id"`
	Status string `json:"status"`           // running, succeeded or failed
	Reason string `json:"reason,omitempty"` // why it failed
	At     string `json:"at,omitempty"`     // when it ended
	// AffectedApps are the deployment's apps: a token sees the outcome
	// only if it may read all of them.
	AffectedApps []string `json:"affectedApps,omitempty"`
}
