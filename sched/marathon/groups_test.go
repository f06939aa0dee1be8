package marathon

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestGroupsWrite(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v2/groups", `{"id":"/shop","apps":[{"id":"db","cmd":"db"},{"id":"web","cmd":"web","dependencies":["db"]}],
		"groups":[{"id":"tools","apps":[{"id":"cron","cmd":"c"}]}]}`)
	if r.Status != 201 {
		t.Fatalf("POST group: %d %s", r.Status, r.Body)
	}
	var deps []api.Deployment
	e.do("GET", "/v2/deployments", "").json(t, &deps)
	if len(deps) != 1 || deps[0].TotalSteps != 2 || deps[0].Steps[1].Actions[0].App != "/shop/web" {
		t.Fatalf("group plan must start /shop/web after /shop/db: %+v", deps)
	}
	var g api.Group
	e.do("GET", "/v2/groups/shop", "").json(t, &g)
	if len(g.Apps) != 2 || len(g.Groups) != 1 || g.Groups[0].Apps[0].ID != "/shop/tools/cron" {
		t.Fatalf("group tree: %+v", g)
	}
	if r = e.do("POST", "/v2/groups", `{"id":"/shop","apps":[]}`); r.Status != 409 {
		t.Fatalf("POST existing group: %d %s", r.Status, r.Body)
	}
	// Wait for nothing: force. Scale the whole group by 3.
	if r = e.do("PUT", "/v2/groups/shop?force=true", `{"scaleBy":3}`); r.Status != 200 {
		t.Fatalf("scaleBy: %d %s", r.Status, r.Body)
	}
	var info struct{ App api.AppInfo }
	e.do("GET", "/v2/apps/shop/tools/cron", "").json(t, &info)
	if info.App.Instances != 3 {
		t.Fatalf("scaleBy: instances %d", info.App.Instances)
	}
	if r = e.do("POST", "/v2/groups", `{"id":"/x","apps":[{"id":"Bad","cmd":"c"}]}`); r.Status != 422 ||
		!strings.Contains(string(r.Body), `"path":"/apps(0)/id"`) {
		t.Fatalf("bad app in group: %d %s", r.Status, r.Body)
	}
	// DELETE the group: every app goes.
	if r = e.do("DELETE", "/v2/groups/shop?force=true", ""); r.Status != 200 {
		t.Fatalf("DELETE group: %d %s", r.Status, r.Body)
	}
	if n := len(e.m.st.List(sched.TableApps)); n != 0 {
		t.Fatalf("%d apps left", n)
	}
	if r = e.do("DELETE", "/v2/groups/shop", ""); r.Status != 404 {
		t.Fatalf("DELETE missing group: %d", r.Status)
	}
}
