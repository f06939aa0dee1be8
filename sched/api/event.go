package api

import (
	"encoding/json"
	"time"
)

// Event is one Marathon event. Data is the event's JSON object as Marathon
// sends it on /v2/events: it carries "eventType" and "timestamp" itself.
type Event struct {
	Index uint64          `json:"index,omitempty"` // the store index that produced it; 0 for local events
	Type  string          `json:"eventType"`
	Data  json.RawMessage `json:"data"`
	// Token names the ACL token whose API call produced the event (its
	// name, never its secret); empty for the master's own events.
	// /v2/events sends it as the SSE field "weft-token", outside the JSON
	// data, which stays exactly Marathon's shape.
	Token string `json:"token,omitempty"`
}

// NewEvent builds an event of type typ from the fields of v (a struct or a
// map), adding eventType and timestamp.
func NewEvent(typ string, v any) Event {
	m := map[string]any{}
	if v != nil {
		b, _ := json.Marshal(v)
		_ = json.Unmarshal(b, &m)
	}
	m["eventType"] = typ
	if _, ok := m["timestamp"]; !ok {
		m["timestamp"] = Timestamp(time.Now())
	}
	b, _ := json.Marshal(m)
	return Event{Type: typ, Data: b}
}

// Marathon event types weft emits.
const (
	EventStreamAttached      = "event_stream_attached"
	EventStreamDetached      = "event_stream_detached"
	EventAPIPost             = "api_post_event"
	EventStatusUpdate        = "status_update_event"
	EventInstanceChanged     = "instance_changed_event"
	EventHealthStatusChanged = "health_status_changed_event"
	EventFailedHealthCheck   = "failed_health_check_event"
	EventUnhealthyKill       = "unhealthy_instance_kill_event"
	EventDeploymentInfo      = "deployment_info"
	EventDeploymentSuccess   = "deployment_success"
	EventDeploymentFailed    = "deployment_failed"
	EventDeploymentStepOK    = "deployment_step_success"
	EventDeploymentStepFail  = "deployment_step_failure"
	EventGroupChangeSuccess  = "group_change_success"
	EventAppTerminated       = "app_terminated_event"
	EventLBConfigProblem     = "weft_lb_config_problem_event" // weft: a label the lb could not honour
	EventJobRun              = "weft_job_run_event"           // weft: a chronos run changed state
)
