package marathon

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Outcomes go after an hour or beyond the 1,000 newest; each app keeps its
// 50 newest versions and always its current one.
func TestPruneBoundsOutcomesAndVersions(t *testing.T) {
	now := time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)
	var outcomes []sched.Entry
	for i := range 1200 {
		at := now.Add(-time.Duration(i) * time.Second)
		outcomes = append(outcomes, sched.Entry{Key: fmt.Sprintf("%sd%04d", metaOutcome, i), Value: api.DeploymentOutcome{ID: fmt.Sprint(i), At: api.Timestamp(at)}})
	}
	outcomes = append(outcomes, sched.Entry{Key: metaOutcome + "old", Value: api.DeploymentOutcome{ID: "old", At: api.Timestamp(now.Add(-2 * time.Hour))}})
	version := func(i int) string { return api.Timestamp(now.Add(-time.Hour + time.Duration(i)*time.Second)) }
	var versions []sched.Entry
	for i := range 5 {
		versions = append(versions, sched.Entry{Key: "/a/b@" + version(i)})
	}
	for i := range 60 {
		versions = append(versions, sched.Entry{Key: "/a@" + version(i)})
	}
	apps := []sched.Entry{{Key: "/a", Value: &api.App{ID: "/a", Version: version(3)}}, {Key: "/a/b", Value: &api.App{ID: "/a/b", Version: version(4)}}}

	deleted := map[string]bool{}
	for _, op := range pruneOps(outcomes, versions, apps, now) {
		if op.Kind != sched.OpDelete {
			t.Fatalf("prune makes %+v, only deletes", op)
		}
		deleted[op.Table+" "+op.Key] = true
	}
	for i := range 1200 {
		k := fmt.Sprintf("%s %sd%04d", sched.TableMeta, metaOutcome, i)
		if deleted[k] != (i >= maxOutcomes) {
			t.Errorf("outcome %d of 1,200 (newest first): deleted %v", i, deleted[k])
		}
	}
	if !deleted[sched.TableMeta+" "+metaOutcome+"old"] {
		t.Error("an outcome of two hours ago was kept")
	}
	for i := range 60 {
		k := sched.TableAppVersions + " /a@" + version(i)
		if want := i < 10 && i != 3; deleted[k] != want {
			t.Errorf("version %d of /a's 60 (oldest first, current 3): deleted %v, want %v", i, deleted[k], want)
		}
	}
	for i := range 5 {
		if deleted[sched.TableAppVersions+" /a/b@"+version(i)] {
			t.Errorf("version %d of /a/b's 5 was deleted", i)
		}
	}
	if n := len(deleted); n != 200+1+9 {
		t.Errorf("%d deletes, want 210", n)
	}
}
