package marathon

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// groupBody is what POST and PUT /v2/groups take: apps and subgroups, ids
// relative to the group.
type groupBody struct {
	ID           string            `json:"id"`
	Apps         []json.RawMessage `json:"apps"`
	Groups       []groupBody       `json:"groups"`
	Dependencies []string          `json:"dependencies"`
	ScaleBy      *float64          `json:"scaleBy"`
}

// flatApp is one app of a group body with its absolute id and JSON path.
type flatApp struct {
	id, path string
	raw      json.RawMessage
}

// metaGroup keys a group's own record in the meta table: groups that
// hold no app yet (Marathon keeps empty groups) and group dependencies.
const metaGroup = "marathon/group/" // + group id → groupRecord

// groupRecord is what weft keeps of a group beyond its apps.
type groupRecord struct {
	Dependencies []string `json:"dependencies"`
}

// readGroups returns every group record by group id.
func readGroups(st *sched.Store) map[string]groupRecord {
	out := map[string]groupRecord{}
	for _, e := range st.ListPrefix(sched.TableMeta, metaGroup) {
		var g groupRecord
		if raw, ok := e.Value.(*json.RawMessage); ok && json.Unmarshal(*raw, &g) == nil {
			out[strings.TrimPrefix(e.Key, metaGroup)] = g
		}
	}
	return out
}

// inheritedDeps are the dependencies an app takes from the groups that
// hold it: Marathon deploys an app of a group after everything the group
// (or a group above it) depends on.
func inheritedDeps(appID string, groups map[string]groupRecord) []string {
	var out []string
	for gid, g := range groups {
		if strings.HasPrefix(appID, strings.TrimSuffix(gid, "/")+"/") {
			out = append(out, g.Dependencies...)
		}
	}
	return out
}

// flattenGroup lists the apps of a group body, resolving ids against their
// groups as Marathon does; groups (when not nil) gets every group of the
// body with its dependencies, resolved the same way.
func flattenGroup(g groupBody, base, path string, out *[]flatApp, details *[]api.ErrorDetail, groups map[string]groupRecord) {
	gid := base
	if g.ID != "" {
		id, probs := canonicalID(g.ID, base)
		if len(probs) > 0 && id != "/" {
			*details = append(*details, api.ErrorDetail{Path: path + "/id", Errors: probs})
			return
		}
		gid = id
	}
	if groups != nil {
		rec := groupRecord{Dependencies: []string{}}
		for i, d := range g.Dependencies {
			did, probs := canonicalID(d, gid)
			if len(probs) > 0 {
				*details = append(*details, api.ErrorDetail{Path: fmt.Sprintf("%s/dependencies(%d)", path, i), Errors: probs})
				continue
			}
			rec.Dependencies = append(rec.Dependencies, did)
		}
		groups[gid] = rec
	}
	for i, raw := range g.Apps {
		p := fmt.Sprintf("%s/apps(%d)", path, i)
		var probe struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			*details = append(*details, api.ErrorDetail{Path: p, Errors: []string{"error.expected.jsobject"}})
			continue
		}
		if probe.ID == "" {
			*details = append(*details, api.ErrorDetail{Path: p + "/id", Errors: []string{"error.path.missing"}})
			continue
		}
		id, probs := canonicalID(probe.ID, gid)
		if len(probs) > 0 {
			*details = append(*details, api.ErrorDetail{Path: p + "/id", Errors: probs})
			continue
		}
		*out = append(*out, flatApp{id: id, path: p, raw: raw})
	}
	for i, sub := range g.Groups {
		flattenGroup(sub, gid, fmt.Sprintf("%s/groups(%d)", path, i), out, details, groups)
	}
}

// writeGroup is POST /v2/groups, PUT /v2/groups/{id} and DELETE
// /v2/groups/{id}: the group's apps change in one deployment.
func (f *Framework) writeGroup(w http.ResponseWriter, r *http.Request, m sched.MasterHandle, gid string) *apiError {
	st := m.Store()
	v := readView(st)
	now := m.Now()
	inGroup := func(id string) bool { return gid == "/" || strings.HasPrefix(id, gid+"/") }
	var (
		changes []change
		ops     []sched.Op
		evs     []api.Event
	)
	remove := func(id string) {
		app := v.apps[id]
		ops = append(ops, sched.Check(sched.TableApps, id, v.appIdx[id]), sched.Delete(sched.TableApps, id),
			sched.Delete(sched.TableMeta, metaLastFailure+id))
		for _, ve := range st.ListPrefix(sched.TableAppVersions, id+"@") {
			ops = append(ops, sched.Delete(sched.TableAppVersions, ve.Key))
		}
		changes = append(changes, change{From: app})
	}
	known := readGroups(st)
	groupOps := 0
	if r.Method == http.MethodDelete {
		for _, id := range v.appIDs {
			if inGroup(id) {
				remove(id)
			}
		}
		for id := range known {
			if id == gid || inGroup(id) {
				ops = append(ops, sched.Delete(sched.TableMeta, metaGroup+id))
				groupOps++
			}
		}
		if len(changes) == 0 && groupOps == 0 {
			return errMsg(404, "Group '%s' does not exist", gid)
		}
	} else {
		body, aerr := readBody(r)
		if aerr != nil {
			return aerr
		}
		keys, aerr := parseObject(body, reflect.TypeOf(groupBody{}), "")
		if aerr != nil {
			return aerr
		}
		var g groupBody
		_ = json.Unmarshal(body, &g)
		if r.Method == http.MethodPost {
			if g.ID == "" {
				return notValid(api.ErrorDetail{Path: "/id", Errors: []string{"error.path.missing"}})
			}
			id, probs := canonicalID(g.ID, "/")
			if len(probs) > 0 {
				return notValid(api.ErrorDetail{Path: "/id", Errors: probs})
			}
			gid = id
			_, exists := known[gid]
			for _, aid := range v.appIDs {
				exists = exists || strings.HasPrefix(aid, gid+"/")
			}
			if exists {
				return errMsg(409, "Group %s is already created. Use PUT to change this group.", gid)
			}
		}
		g.ID = gid
		if g.ScaleBy != nil {
			if _, ok := keys["apps"]; ok {
				return notValid(api.ErrorDetail{Path: "/", Errors: []string{"scaleBy may not be combined with apps"}})
			}
			if *g.ScaleBy < 0 || math.IsNaN(*g.ScaleBy) || *g.ScaleBy > 1000 {
				return notValid(api.ErrorDetail{Path: "/scaleBy", Errors: []string{fmt.Sprintf("got %s, expected between 0.0 and 1000.0", fmtFloat(*g.ScaleBy))}})
			}
			for _, id := range v.appIDs {
				if !inGroup(id) || podOf(v, id) != nil {
					continue // Marathon scales a group's apps, not its pods
				}
				old := v.apps[id]
				app := cloneApp(old)
				app.Instances = int(math.Ceil(float64(old.Instances) * *g.ScaleBy))
				app.Version = newVersion(now, old.Version)
				app.VersionInfo = &api.VersionInfo{LastScalingAt: app.Version, LastConfigChangeAt: configVersion(old)}
				c := change{From: old, To: app}
				ops = append(ops, sched.Check(sched.TableApps, id, v.appIdx[id]))
				ops = append(ops, appOps(c)...)
				changes = append(changes, c)
			}
		} else {
			var flat []flatApp
			var details []api.ErrorDetail
			groups := map[string]groupRecord{}
			flattenGroup(g, "/", "", &flat, &details, groups)
			for id, rec := range groups {
				if id == "/" {
					continue // the root group's dependencies: nothing to order against
				}
				if old, ok := known[id]; ok && reflect.DeepEqual(old, rec) {
					continue
				}
				raw, _ := json.Marshal(rec)
				msg := json.RawMessage(raw)
				ops = append(ops, sched.Put(sched.TableMeta, metaGroup+id, &msg))
				groupOps++
			}
			listed := map[string]bool{}
			claimed := map[int]string{}
			for _, fa := range flat {
				if listed[fa.id] {
					details = append(details, api.ErrorDetail{Path: fa.path + "/id", Errors: []string{"id " + fa.id + " appears more than once"}})
					continue
				}
				listed[fa.id] = true
				if !inGroup(fa.id) {
					details = append(details, api.ErrorDetail{Path: fa.path + "/id", Errors: []string{"Identifier is not child of '" + gid + "'"}})
					continue
				}
				akeys, aerr := parseObject(fa.raw, reflect.TypeOf(api.App{}), fa.path)
				if aerr != nil {
					return aerr
				}
				existing := v.apps[fa.id]
				app, aerr := f.prepare(v, existing, akeys, fa.id, fa.path, false, now, claimed)
				if aerr != nil {
					if aerr.Status == 422 {
						details = append(details, aerr.Body.Details...)
						continue
					}
					return aerr
				}
				c := change{From: existing, To: app}
				ops = append(ops, sched.Check(sched.TableApps, fa.id, v.appIdx[fa.id]))
				ops = append(ops, appOps(c)...)
				changes = append(changes, c)
				evs = append(evs, api.NewEvent(api.EventAPIPost, map[string]any{"clientIp": clientIP(r), "uri": r.URL.Path, "appDefinition": app}))
			}
			if len(details) > 0 {
				return notValid(details...)
			}
			// The deployment orders by the groups as this request leaves them.
			merged := map[string]groupRecord{}
			for id, g := range known {
				merged[id] = g
			}
			for id, g := range groups {
				merged[id] = g
			}
			for i := range changes {
				changes[i].groupDeps = append([]string{}, inheritedDeps(changes[i].id(), merged)...)
			}
			// A group definition with apps replaces the group: apps it no
			// longer lists are removed, as in Marathon. Its pods stay: a
			// group body has none (Marathon keeps the group's pods).
			if _, ok := keys["apps"]; ok && r.Method == http.MethodPut {
				for _, id := range v.appIDs {
					if inGroup(id) && !listed[id] && v.apps[id].Pod == nil {
						remove(id)
					}
				}
			}
		}
		if len(changes) == 0 && groupOps == 0 {
			return notValid(api.ErrorDetail{Path: "/", Errors: []string{"the group changes no app"}})
		}
	}
	res, aerr := f.deploy(r.Context(), m, v, changes, boolParam(r, "force"), ops, evs...)
	if aerr != nil {
		return aerr
	}
	status := 200
	if r.Method == http.MethodPost {
		status = 201
		w.Header().Set("Location", "/v2/groups"+gid)
	}
	writeDeployment(w, status, res)
	return nil
}
