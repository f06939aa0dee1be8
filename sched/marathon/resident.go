package marathon

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// This file holds resident apps: apps with local persistent volumes
// (Marathon's persistent-volumes.md). An instance's volumes live in a
// reservation (sched.TableReservations) on the agent the instance first
// landed on; every relaunch goes back to that agent and gets the same
// volumes. Reservations outlive scale-downs and are released when the app
// is deleted, when a task is killed with wipe=true, or when the app's
// residency.taskLostBehavior is RELAUNCH_AFTER_TIMEOUT and its agent has
// been unreachable for relaunchEscalationTimeoutSeconds.

// Marathon's defaults for resident apps.
const (
	taskLostWaitForever     = "WAIT_FOREVER"
	taskLostRelaunchTimeout = "RELAUNCH_AFTER_TIMEOUT"
	defaultRelaunchTimeout  = 3600
	// maxVolumeSize bounds persistent.size (MiB), as disk is bounded.
	maxVolumeSize = 1 << 30
)

// persistentVolumes are app's local persistent volumes (nil: not resident).
func persistentVolumes(app *api.App) []api.Volume {
	if app == nil || app.Container == nil {
		return nil
	}
	var out []api.Volume
	for _, v := range app.Container.Volumes {
		if _, ok, _ := v.ParsePersistent(); ok {
			out = append(out, v)
		}
	}
	return out
}

// isResident reports whether app's instances hold persistent volumes.
func isResident(app *api.App) bool { return len(persistentVolumes(app)) > 0 }

// residencyOf is app's residency with Marathon's defaults filled in.
func residencyOf(app *api.App) api.Residency {
	r := api.Residency{RelaunchEscalationTimeoutSeconds: defaultRelaunchTimeout, TaskLostBehavior: taskLostWaitForever}
	if len(app.Residency) > 0 {
		_ = json.Unmarshal(app.Residency, &r)
	}
	if r.TaskLostBehavior == "" {
		r.TaskLostBehavior = taskLostWaitForever
	}
	return r
}

// normalizeResident fills a resident app's residency and, when the user
// gave none, Marathon's upgrade strategy for resident apps (0.5, 0).
func normalizeResident(app *api.App, present map[string]bool) {
	if !isResident(app) {
		return
	}
	r := residencyOf(app)
	app.Residency, _ = json.Marshal(r)
	if !present["upgradeStrategy"] {
		app.UpgradeStrategy = api.UpgradeStrategy{MinimumHealthCapacity: 0.5, MaximumOverCapacity: 0}
	}
}

// validateVolumes checks the volumes weft must provide and refuses, naming
// the field, those it cannot: persistent volumes other than type root,
// external volumes other than Docker named volumes of the local driver.
func validateVolumes(app *api.App, add func(path, msg string)) {
	resident := false
	if app.Container != nil {
		docker := strings.EqualFold(app.Container.Type, "DOCKER")
		for i, v := range app.Container.Volumes {
			at := fmt.Sprintf("/container/volumes(%d)", i)
			p, isP, err := v.ParsePersistent()
			if err != nil {
				add(at+"/persistent", "error.expected.jsobject: "+err.Error())
				continue
			}
			e, isE, err := v.ParseExternal()
			if err != nil {
				add(at+"/external", "error.expected.jsobject: "+err.Error())
				continue
			}
			switch {
			case isP && isE:
				add(at, "a volume is either persistent or external, not both")
			case isP:
				resident = true
				validatePersistent(at, v, p, add)
			case isE:
				validateExternal(at, v, e, docker, add)
			}
		}
	}
	if !resident {
		if len(app.Residency) > 0 && string(app.Residency) != "null" {
			add("/residency", "residency needs at least one persistent volume in container.volumes")
		}
		return
	}
	var r api.Residency
	if len(app.Residency) > 0 {
		if err := json.Unmarshal(app.Residency, &r); err != nil {
			add("/residency", "error.expected.jsobject: "+err.Error())
			return
		}
	}
	switch r.TaskLostBehavior {
	case "", taskLostWaitForever, taskLostRelaunchTimeout:
	default:
		add("/residency/taskLostBehavior", "is not one of (WAIT_FOREVER,RELAUNCH_AFTER_TIMEOUT)")
	}
	if r.RelaunchEscalationTimeoutSeconds < 0 {
		add("/residency/relaunchEscalationTimeoutSeconds", fmt.Sprintf("got %d, expected 0 or more", r.RelaunchEscalationTimeoutSeconds))
	}
	// Marathon's rule: a resident instance must stop before its
	// replacement takes over its volumes.
	if us := app.UpgradeStrategy; us.MinimumHealthCapacity > 0.5 {
		add("/upgradeStrategy/minimumHealthCapacity", fmt.Sprintf("got %s, expected 0.5 or less (an app with persistent volumes)", fmtFloat(us.MinimumHealthCapacity)))
	}
	if us := app.UpgradeStrategy; us.MaximumOverCapacity != 0 {
		add("/upgradeStrategy/maximumOverCapacity", fmt.Sprintf("got %s, expected 0.0 (an app with persistent volumes)", fmtFloat(us.MaximumOverCapacity)))
	}
}

func validatePersistent(at string, v api.Volume, p api.PersistentVolume, add func(path, msg string)) {
	switch p.Type {
	case "", "root":
	default:
		add(at+"/persistent/type", fmt.Sprintf("type %q is not provided by weft: only root persistent volumes (a directory under the agent's work dir)", p.Type))
	}
	if p.Size <= 0 {
		add(at+"/persistent/size", fmt.Sprintf("got %s, expected more than 0 (MiB)", fmtFloat(p.Size)))
	} else if p.Size > maxVolumeSize {
		add(at+"/persistent/size", fmt.Sprintf("got %s, expected %s or less (MiB)", fmtFloat(p.Size), fmtFloat(maxVolumeSize)))
	}
	if p.MaxSize != nil {
		add(at+"/persistent/maxSize", "maxSize applies to mount disks, which weft does not provide")
	}
	if p.ProfileName != "" {
		add(at+"/persistent/profileName", "disk profiles are not provided by weft")
	}
	if len(p.Constraints) > 0 {
		add(at+"/persistent/constraints", "path constraints apply to path and mount disks, which weft does not provide")
	}
	if v.HostPath != "" {
		add(at+"/hostPath", "a persistent volume has no hostPath")
	}
	cp := v.ContainerPath
	if cp == "" || strings.Contains(cp, "/") || cp == "." || cp == ".." {
		add(at+"/containerPath", "a persistent volume's containerPath is one relative path element, without '/' (\"data\", not \"/data\" or \"var/data\")")
	}
	if v.Mode != "" && v.Mode != "RW" {
		add(at+"/mode", "a persistent volume's mode is RW")
	}
}

func validateExternal(at string, v api.Volume, e api.ExternalVolume, docker bool, add func(path, msg string)) {
	if !docker {
		add(at+"/external", "weft provides external volumes as Docker named volumes: they need a DOCKER container")
	}
	if e.Provider != "dvdi" {
		add(at+"/external/provider", fmt.Sprintf("got %q, expected dvdi", e.Provider))
	}
	if e.Name == "" || !dockerVolumeName(e.Name) {
		add(at+"/external/name", "a Docker volume name: letters, digits, '_', '.', '-', starting with a letter or digit")
	}
	for k, val := range e.Options {
		switch {
		case k == "dvdi/driver" && (val == "" || val == "local"):
		case k == "dvdi/driver":
			add(at+"/external/options", fmt.Sprintf("dvdi/driver %q is not provided by weft: only the Docker local volume driver (\"local\")", val))
		default:
			add(at+"/external/options", fmt.Sprintf("option %q is not honoured by weft's local volume driver", k))
		}
	}
	if e.Size != nil {
		add(at+"/external/size", "the Docker local volume driver has no size; leave size out")
	}
	if v.HostPath != "" {
		add(at+"/hostPath", "an external volume has no hostPath")
	}
	if !strings.HasPrefix(v.ContainerPath, "/") {
		add(at+"/containerPath", "an external volume's containerPath is an absolute path in the container")
	}
	switch v.Mode {
	case "", "RW", "RO":
	default:
		add(at+"/mode", "is not one of (RW,RO)")
	}
}

func dockerVolumeName(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// reservationsOf lists the reservations of app, oldest first.
func reservationsOf(st *sched.Store, appID string) []*api.Reservation {
	return reservationsByApp(st)[appID]
}

// reservationsByApp lists every reservation by app id, oldest first.
func reservationsByApp(st *sched.Store) map[string][]*api.Reservation {
	out := map[string][]*api.Reservation{}
	for _, e := range st.List(sched.TableReservations) {
		if r, ok := e.Value.(*api.Reservation); ok {
			out[r.AppID] = append(out[r.AppID], r)
		}
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool {
			if rs[i].CreatedAt != rs[j].CreatedAt {
				return rs[i].CreatedAt < rs[j].CreatedAt
			}
			return rs[i].ID < rs[j].ID
		})
	}
	return out
}

// residentPlan is what one round of offers may do for a resident app:
// relaunch on its free reservations (whose last task has ended), and create
// new ones while the app has fewer reservations than instances.
type residentPlan struct {
	free    []*api.Reservation
	newLeft int
	volDisk float64
	tried   map[string]bool
}

func newResidentPlan(rs []*api.Reservation, app *api.App, tasks []taskEntry) *residentPlan {
	busy := map[string]bool{}
	for _, te := range tasks {
		if !api.Terminal(te.rec.Task.State) {
			busy[te.rec.Task.ID] = true
		}
	}
	p := &residentPlan{newLeft: app.Instances - len(rs), tried: map[string]bool{}}
	for _, r := range rs {
		if r.TaskID == "" || !busy[r.TaskID] {
			p.free = append(p.free, r)
		}
	}
	for _, v := range persistentVolumes(app) {
		pv, _, _ := v.ParsePersistent()
		p.volDisk += pv.Size
	}
	return p
}

// next is the free reservation to relaunch on whose agent is offered, or
// nil (then a new reservation, if newLeft allows).
func (p *residentPlan) next(offered func(agent string) bool) *api.Reservation {
	for _, r := range p.free {
		if !p.tried[r.ID] && offered(r.AgentID) {
			return r
		}
	}
	return nil
}

// take marks r used in this round.
func (p *residentPlan) take(r *api.Reservation) { p.tried[r.ID] = true }

// newReservation builds a reservation of app's persistent volumes on an
// agent; id is its unique part.
func newReservation(app *api.App, o *api.Offer, id string, now time.Time) *api.Reservation {
	prefix := taskIDPrefix(app.ID)
	r := &api.Reservation{
		ID: prefix + "#" + id, AppID: app.ID, AgentID: o.AgentID, Host: o.Hostname, Site: o.Site,
		CreatedAt: api.Timestamp(now),
	}
	for _, v := range persistentVolumes(app) {
		pv, _, _ := v.ParsePersistent()
		mode := v.Mode
		if mode == "" {
			mode = "RW"
		}
		r.Volumes = append(r.Volumes, api.LocalVolumeSpec{
			ContainerPath: v.ContainerPath, PersistenceID: prefix + "#" + v.ContainerPath + "#" + id,
			Size: pv.Size, Mode: mode,
		})
	}
	return r
}

// onReservation binds a task being launched to reservation r and returns
// the op that records it.
func onReservation(rec *sched.TaskRecord, r *api.Reservation) sched.Op {
	n := *r
	n.TaskID = rec.Task.ID
	n.Volumes = append([]api.LocalVolumeSpec(nil), r.Volumes...)
	rec.Spec.LocalVolumes = n.Volumes
	rec.Task.LocalVolumes = n.LocalVolumes()
	return sched.Put(sched.TableReservations, n.ID, &n)
}

// residentInactive is inactive for a resident app: a task on an unreachable
// agent is waited for (WAIT_FOREVER) or, with RELAUNCH_AFTER_TIMEOUT, given
// up after relaunchEscalationTimeoutSeconds.
func residentInactive(app *api.App, rec *sched.TaskRecord, now time.Time) bool {
	r := residencyOf(app)
	if r.TaskLostBehavior != taskLostRelaunchTimeout {
		return false
	}
	since, err := time.Parse(time.RFC3339Nano, rec.UpdatedAt)
	if err != nil {
		return true
	}
	return now.Sub(since) >= time.Duration(r.RelaunchEscalationTimeoutSeconds)*time.Second
}

// releaseReservations deletes the reservations nothing holds any more: of
// apps that were deleted, and of resident
// tasks given up on a lost agent (RELAUNCH_AFTER_TIMEOUT). The volume
// directories stay on the agents, as Mesos leaves a destroyed volume's data.
func (f *Framework) releaseReservations(ctx context.Context, st *sched.Store) error {
	es := st.List(sched.TableReservations)
	if len(es) == 0 {
		return nil
	}
	now := f.now()
	var ops []sched.Op
	for _, e := range es {
		r, ok := e.Value.(*api.Reservation)
		if !ok {
			continue
		}
		ae, ok := st.Get(sched.TableApps, r.AppID)
		var app *api.App
		if ok {
			app, _ = ae.Value.(*api.App)
		}
		release := false
		switch {
		case app == nil:
			release = true
		case r.TaskID != "":
			if te, ok := st.Get(sched.TableTasks, r.TaskID); ok {
				if rec, ok := te.Value.(*sched.TaskRecord); ok &&
					(rec.Task.State == api.TaskUnreachable || rec.Task.State == api.TaskUnknown) &&
					residentInactive(app, rec, now) {
					release = true
				}
			}
		}
		if release {
			ops = append(ops, sched.Check(sched.TableReservations, e.Key, e.ModifyIndex), sched.Delete(sched.TableReservations, e.Key))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := st.Apply(ctx, ops)
	return err
}

// wipeOps releases the reservations of the given tasks (wipe=true).
func wipeOps(st *sched.Store, taskIDs map[string]bool) []sched.Op {
	var ops []sched.Op
	for _, e := range st.List(sched.TableReservations) {
		if r, ok := e.Value.(*api.Reservation); ok && taskIDs[r.TaskID] {
			ops = append(ops, sched.Check(sched.TableReservations, e.Key, e.ModifyIndex), sched.Delete(sched.TableReservations, e.Key))
		}
	}
	return ops
}

// reservedTask is a free reservation as /v2/apps/{id}/tasks lists it: a
// task with its host and volumes and no state (Marathon's suspended
// resident task).
type reservedTask struct {
	ID           string            `json:"id"`
	AppID        string            `json:"appId"`
	Host         string            `json:"host"`
	SlaveID      string            `json:"slaveId"`
	LocalVolumes []api.LocalVolume `json:"localVolumes"`
}

func reservedTasks(st *sched.Store, appID string, tasks []taskEntry) []reservedTask {
	live := map[string]bool{}
	for _, te := range tasks {
		if !api.Terminal(te.rec.Task.State) {
			live[te.rec.Task.ID] = true
		}
	}
	var out []reservedTask
	for _, r := range reservationsOf(st, appID) {
		if r.TaskID != "" && live[r.TaskID] {
			continue
		}
		id := r.TaskID
		if id == "" {
			id = r.ID
		}
		out = append(out, reservedTask{ID: id, AppID: r.AppID, Host: r.Host, SlaveID: r.AgentID, LocalVolumes: r.LocalVolumes()})
	}
	return out
}
