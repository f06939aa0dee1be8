package sched

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// eventsBuffer is how many events a /v2/events client may fall behind
// before it is dropped (it reconnects and re-reads the state). A variable
// so tests can shrink it.
var eventsBuffer = 4096

// eventWriteTimeout bounds one write to an event stream client.
var eventWriteTimeout = 10 * time.Second

// handleEvents serves GET /v2/events: Marathon's Server-Sent Events stream.
func (m *Master) handleEvents(w http.ResponseWriter, r *http.Request) {
	var filter map[string]bool
	for _, v := range r.URL.Query()["event_type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				if filter == nil {
					filter = map[string]bool{}
				}
				filter[t] = true
			}
		}
	}
	pass := func(typ string) bool { return filter == nil || filter[typ] }
	authz := AuthzFrom(r.Context())

	sub, cancel := m.store.Subscribe(eventsBuffer)
	defer cancel()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(ev api.Event) error {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		var err error
		if ev.Token != "" {
			_, err = fmt.Fprintf(w, "event: %s\nweft-token: %s\ndata: %s\n\n", ev.Type, sseField.Replace(ev.Token), ev.Data)
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, ev.Data)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	if pass(api.EventStreamAttached) {
		if err := send(api.NewEvent(api.EventStreamAttached, map[string]any{"remoteAddress": hostOnly(r.RemoteAddr)})); err != nil {
			return
		}
	} else if err := rc.Flush(); err != nil {
		return
	}
	m.metrics.eventClients.Inc()
	defer m.metrics.eventClients.Dec()

	keep := time.NewTicker(m.cfg.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := w.Write([]byte(":\n\n")); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		case ev, ok := <-sub:
			if !ok {
				return // the store closed
			}
			if len(sub) >= cap(sub)-1 {
				// The store may have dropped events for this client: end
				// the stream so it reconnects and re-reads the state.
				m.log.Warn("dropping a slow /v2/events client", "remote", r.RemoteAddr)
				m.metrics.eventClientsDropped.Inc()
				return
			}
			if !pass(ev.Type) || !eventVisible(authz, ev) {
				continue
			}
			if send(ev) != nil {
				return
			}
		}
	}
}

// handleInfo serves GET /v2/info in Marathon's shape.
func (m *Master) handleInfo(w http.ResponseWriter, r *http.Request) {
	leader := m.leaderAPI()
	host := hostOnly(m.cfg.APIAdvertise)
	port := 8080
	if i := strings.LastIndex(m.cfg.APIAdvertise, ":"); i >= 0 {
		fmt.Sscanf(m.cfg.APIAdvertise[i+1:], "%d", &port)
	}
	var leaderVal any = leader
	if leader == "" {
		leaderVal = nil
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":        "marathon",
		"version":     m.cfg.Version,
		"buildref":    "weft-" + m.cfg.Version,
		"elected":     m.store.IsLeader(),
		"leader":      leaderVal,
		"frameworkId": m.getFrameworkID(),
		"marathon_config": map[string]any{
			"access_control_allow_origin":        nil,
			"checkpoint":                         true,
			"decline_offer_duration":             m.cfg.RefuseDefault.Milliseconds(),
			"default_network_name":               nil,
			"env_vars_prefix":                    nil,
			"executor":                           "//cmd",
			"failover_timeout":                   604800,
			"features":                           []string{},
			"framework_name":                     "marathon",
			"ha":                                 true,
			"hostname":                           host,
			"launch_token":                       100,
			"launch_token_refresh_interval":      30000,
			"leader_proxy_connection_timeout_ms": 5000,
			"leader_proxy_read_timeout_ms":       10000,
			"local_port_max":                     20000,
			"local_port_min":                     10000,
			"master":                             "weft://" + m.cfg.APIAdvertise,
			"max_instances_per_offer":            nil,
			"mesos_bridge_name":                  "mesos-bridge",
			"mesos_heartbeat_failure_threshold":  5,
			"mesos_heartbeat_interval":           15000,
			"mesos_leader_ui_url":                "http://" + leader + "/",
			"mesos_role":                         nil,
			"mesos_user":                         "root",
			"min_revive_offers_interval":         5000,
			"offer_matching_timeout":             3000,
			"on_elected_prepare_timeout":         180000,
			"reconciliation_initial_delay":       15000,
			"reconciliation_interval":            600000,
			"revive_offers_for_new_apps":         true,
			"revive_offers_repetitions":          3,
			"scale_apps_initial_delay":           15000,
			"scale_apps_interval":                300000,
			"store_cache":                        true,
			"task_launch_confirm_timeout":        300000,
			"task_launch_timeout":                300000,
			"task_lost_expunge_initial_delay":    300000,
			"task_lost_expunge_interval":         30000,
			"task_reservation_timeout":           20000,
			"webui_url":                          nil,
		},
		"zookeeper_config": map[string]any{
			"zk":                       "weft-raft://" + host + "/marathon",
			"zk_compression":           true,
			"zk_compression_threshold": 65536,
			"zk_connection_timeout":    10000,
			"zk_max_node_size":         1024000,
			"zk_max_versions":          50,
			"zk_session_timeout":       10000,
			"zk_timeout":               10000,
		},
		"http_config": map[string]any{
			"http_port":  port,
			"https_port": 8443,
		},
	})
}

// handleLeader serves GET /v2/leader.
func (m *Master) handleLeader(w http.ResponseWriter, r *http.Request) {
	leader := m.leaderAPI()
	if leader == "" {
		writeError(w, http.StatusNotFound, "There is no leader")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": leader})
}

// handleAbdicate serves DELETE /v2/leader: the leader hands leadership to
// another master.
func (m *Master) handleAbdicate(w http.ResponseWriter, r *http.Request) {
	if !m.store.IsLeader() {
		writeError(w, http.StatusNotFound, "There is no leader")
		return
	}
	cf := m.store.Raft().GetConfiguration()
	voters := 0
	if cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage == 0 { // raft.Voter
				voters++
			}
		}
	}
	if voters < 2 {
		writeError(w, http.StatusConflict, "leadership not abdicated: this is the only master; start more with `weft master --join` first")
		return
	}
	if err := m.store.handOff(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "leadership not abdicated: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "Leadership abdicated"})
}

// sseField keeps a value on its one SSE line.
var sseField = strings.NewReplacer("\r", " ", "\n", " ")

// eventVisible reports whether a token may see an event: one about apps
// it can read (appId, appDefinition.id, the apps and pods a deployment
// plan's steps act on), a run of a job it can read, the stream's own
// events; anything else only with read on every app.
func eventVisible(a *Authz, ev api.Event) bool {
	if a.Full() {
		return true
	}
	switch ev.Type {
	case api.EventStreamAttached, api.EventStreamDetached:
		return true
	}
	var probe struct {
		AppID         string `json:"appId"`
		AppDefinition *struct {
			ID string `json:"id"`
		} `json:"appDefinition"`
		Plan *struct {
			AffectedApps []string `json:"affectedApps"`
			Steps        []struct {
				Actions []struct {
					App string `json:"app"`
					Pod string `json:"pod"`
				} `json:"actions"`
			} `json:"steps"`
		} `json:"plan"`
		Job string `json:"job"`
	}
	if json.Unmarshal(ev.Data, &probe) != nil {
		return false
	}
	switch {
	case probe.AppID != "":
		return a.CanReadApp(probe.AppID)
	case probe.AppDefinition != nil && probe.AppDefinition.ID != "":
		return a.CanReadApp(probe.AppDefinition.ID)
	case probe.Plan != nil:
		// Deployment events carry Marathon's plan: its apps and pods
		// are those its steps act on (it has no affectedApps there).
		ids := probe.Plan.AffectedApps
		for _, st := range probe.Plan.Steps {
			for _, ac := range st.Actions {
				ids = append(ids, ac.App, ac.Pod)
			}
		}
		seen := false
		for _, id := range ids {
			if id == "" {
				continue
			}
			if !a.CanReadApp(id) {
				return false
			}
			seen = true
		}
		if seen {
			return true
		}
	case ev.Type == api.EventJobRun && probe.Job != "":
		return a.Job(probe.Job) >= AccessRead
	}
	return a.CanReadApp("/")
}
