package chronos

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// BenchmarkPass measures one reconciliation pass (load and advance) over
// 1,000 jobs with a full ledger of 50 runs each.
func BenchmarkPass(b *testing.B) {
	t := &testing.T{}
	clk := &clock{t: mustParse("2026-11-22T01:30:00Z")}
	s, err := sched.OpenStore(sched.DefaultStoreConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	_ = t
	e := &env{clk: clk, store: s, m: &fakeMaster{store: s, now: clk.Now}}
	e.f = New(testConfig(clk))
	e.f.setMaster(e.m)
	ctx := b.Context()
	for s.Index() == 0 || !s.IsLeader() {
		s.WaitLeader(ctx)
		if _, err := s.Apply(ctx, []sched.Op{sched.Put(sched.TableMeta, "probe", []byte(`1`))}); err == nil {
			break
		}
	}
	var ops []sched.Op
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("job-%04d", i)
		ops = append(ops, sched.Put(sched.TableJobs, name, &api.Job{Name: name, Command: "true", Shell: true, Schedule: "R/2026-01-01T00:00:00Z/PT1H", Epsilon: "PT60S"}),
			sched.Put(sched.TableMeta, stateKeyPrefix+name, &jobState{Seq: 50, ScheduleKey: "R/2026-01-01T00:00:00Z/PT1H\x00", LastScheduled: "2026-11-22T01:00:00Z"}))
		for k := 1; k <= 50; k++ {
			ops = append(ops, sched.Put(sched.TableJobRuns, runID(name, int64(k)), &api.JobRun{ID: runID(name, int64(k)), Job: name, State: RunSucceeded, Attempt: 1}))
		}
		if len(ops) > 5000 {
			if _, err := s.Apply(ctx, ops); err != nil {
				b.Fatal(err)
			}
			ops = nil
		}
	}
	if _, err := s.Apply(ctx, ops); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := loadWorld(s, &e.f.cfg, clk.Now(), &e.f.states, false)
		e.f.advance(w)
	}
}

func mustParse(s string) (t time.Time) { t, _ = time.Parse(time.RFC3339, s); return }
