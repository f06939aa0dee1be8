package sched

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// Problems the load balancers report reach /v2/events once per change,
// however many nodes report them, and are listed until they clear.
func TestLBProblemsAreDeduplicatedEventsAndListed(t *testing.T) {
	tm := startMaster(t, NewStaticMembers())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := tm.client.Events(ctx, api.EventLBConfigProblem)
	if err != nil {
		t.Fatal(err)
	}
	report := func(node string, problems ...string) {
		t.Helper()
		body := map[string]any{"appId": "/b", "node": node, "problems": problems}
		if _, err := tm.client.Do(ctx, http.MethodPost, "/v1/lb/problems", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []LBProblem {
		var out struct {
			Problems []LBProblem `json:"problems"`
		}
		if _, err := tm.client.Do(ctx, http.MethodGet, "/v1/lb/problems", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out.Problems
	}
	next := func() api.Event {
		t.Helper()
		for {
			select {
			case ev := <-evs:
				if ev.Type == api.EventStreamAttached {
					continue
				}
				return ev
			case <-time.After(5 * time.Second):
				t.Fatal("no event")
			}
		}
	}
	msg := "service port 10001 is held by the older app /a"
	report("n1", msg)
	report("n2", msg) // the same table on another node: no second event
	ev := next()
	if ev.Type != api.EventLBConfigProblem || !strings.Contains(string(ev.Data), msg) {
		t.Fatalf("event %s %s", ev.Type, ev.Data)
	}
	if l := list(); len(l) != 1 || l[0].AppID != "/b" || l[0].Problems[0] != msg {
		t.Fatalf("listed %+v", l)
	}
	report("n1") // cleared
	ev = next()
	if ev.Type != api.EventLBConfigProblem || strings.Contains(string(ev.Data), msg) {
		t.Fatalf("clearing event %s %s (the duplicate report must not have produced one)", ev.Type, ev.Data)
	}
	if l := list(); len(l) != 0 {
		t.Fatalf("listed after clearing: %+v", l)
	}
	if _, err := tm.client.Do(ctx, http.MethodPost, "/v1/lb/problems", map[string]any{"node": "n1"}, nil); api.StatusCode(err) != 400 {
		t.Fatalf("report without appId: %v, want 400", err)
	}
}
