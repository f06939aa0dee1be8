package chronos

import (
	"strings"
	"testing"
	"time"
)

func TestScheduleLimitsAreRefusedWithTheLimit(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ name, schedule, want string }{
		{"period below a second", "R/2026-11-22T01:00:00Z/PT0.0001S", "shorter than the minimum of 1s"},
		{"zero period", "R/2026-11-22T01:00:00Z/PT0S", "shorter than the minimum"},
		{"start in year 1", "R/0001-01-01T00:00:00Z/PT1S", "outside the years 1970 to 2999"},
		{"start in year 9999", "R/9999-01-01T00:00:00Z/P1D", "outside the years 1970 to 2999"},
		{"repeat beyond int32", "R2147483648/2026-11-22T01:00:00Z/PT1S", "above the limit of 2147483647"},
		{"repeat beyond int64", "R99999999999999999999/2026-11-22T01:00:00Z/PT1S", "above the limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"x","command":"true","schedule":"`+c.schedule+`"}`, 400)
			if !strings.Contains(body, c.want) || !strings.Contains(body, `"status":"Bad Request"`) {
				t.Fatalf("body %s, want %q in Chronos's error shape", body, c.want)
			}
		})
	}
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"ok","command":"true","schedule":"R2147483647/2026-11-22T01:00:00Z/PT1S"}`, 204)
}

// A schedule's start far before now (within the window) is answered
// quickly: Next works from an estimate, not by walking every occurrence.
func TestNextFromAnOldStartIsQuick(t *testing.T) {
	s, err := ParseISO("R/1970-01-01T00:00:00Z/PT1S", time.UTC, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2999, 12, 31, 0, 0, 0, 0, time.UTC) // beyond a Duration from the start
	start := time.Now()
	next, ok := s.Next(from)
	if !ok || !next.Equal(from.Add(time.Second)) {
		t.Fatalf("Next(%s) = %s, %v", from, next, ok)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Next took %s", d)
	}
}

// A job whose runs never start (no offers) queues at most MaxQueuedRuns;
// the rest are recorded as skipped, a manual run is refused, and one pass
// looks at a bounded number of occurrences however much time has passed.
func TestQueuedRunsPerJobAreCapped(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"fast","command":"true","schedule":"R/2026-11-22T01:00:00Z/PT1S","epsilon":"P1D"}`, 204)
	e.settle()
	for i := 0; i < 5; i++ {
		e.clk.Add(20 * time.Minute) // 1,200 occurrences, each within epsilon
		e.settle()
	}
	queued := strings.Count(e.states("fast"), "queued")
	if queued != MaxQueuedRuns {
		t.Fatalf("%d queued runs, want the cap %d (ledger %s)", queued, MaxQueuedRuns, e.states("fast"))
	}
	if n := len(e.runs("fast")); n > MaxQueuedRuns+5*(maxSkipRecords+1)+DefaultConfig().RunHistory {
		t.Fatalf("ledger holds %d runs", n)
	}
	body := e.mustDo("PUT", "/v1/scheduler/job/fast", "", 400)
	if !strings.Contains(body, "queued runs, the limit") {
		t.Fatalf("manual run: %s", body)
	}
	// A pass after a long outage looks at a bounded number of occurrences.
	e.clk.Add(30 * 24 * time.Hour)
	w := loadWorld(e.store, &e.f.cfg, e.clk.Now(), &e.f.states, false)
	start := time.Now()
	e.f.advance(w)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("one pass took %s", d)
	}
	if n := len(w.ops()); n > 2*maxOccurrencesPerPass {
		t.Fatalf("one pass wrote %d ops", n)
	}
	e.mustDo("DELETE", "/v1/scheduler/job/fast", "", 204)
}
