package chronos

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestPlanOffers(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	offer := func(id, host string, cpus, mem float64, caps ...string) api.Offer {
		return api.Offer{ID: "o-" + id, AgentID: id, Hostname: host, Capabilities: caps,
			Resources: api.Resources{Cpus: cpus, Mem: mem, Disk: 100}}
	}
	job := func(name string, cpus, mem float64, mut ...func(*api.Job)) *api.Job {
		j := &api.Job{Name: name, Command: "true", Cpus: cpus, Mem: mem}
		for _, m := range mut {
			m(j)
		}
		return j
	}
	run := func(j *api.Job, n int) readyRun {
		id := fmt.Sprintf("%s-r%d", j.Name, n)
		return readyRun{key: fmt.Sprintf("%s@%d", id, 10+n), idx: uint64(10 + n), job: j,
			run: &api.JobRun{ID: id, Job: j.Name, State: RunQueued, TaskID: "ct:" + id}}
	}
	container := func(j *api.Job) { j.Container = &api.JobContainer{Image: "busybox"} }
	unique := func(j *api.Job) { j.Constraints = [][]string{{"hostname", "UNIQUE"}} }
	a, b := job("a", 1, 100), job("b", 1, 100)
	cases := []struct {
		name     string
		offers   []api.Offer
		runs     []readyRun
		placed   map[string][]api.Offer
		launches []string // "offer run"
		declines []string // "offer refuseFor reasons"
	}{
		{
			name:     "two runs share an offer",
			offers:   []api.Offer{offer("a1", "h1", 4, 1000)},
			runs:     []readyRun{run(a, 1), run(b, 1)},
			launches: []string{"o-a1 a-r1", "o-a1 b-r1"},
		},
		{
			name:     "nothing ready: declined briefly, with no reasons",
			offers:   []api.Offer{offer("a1", "h1", 4, 1000)},
			declines: []string{"o-a1 50ms"},
		},
		{
			name:     "too little memory: declined for a second, saying why",
			offers:   []api.Offer{offer("a1", "h1", 4, 50)},
			runs:     []readyRun{run(a, 1)},
			declines: []string{"o-a1 1s InsufficientMemory"},
		},
		{
			name:     "the second run does not fit what the first left",
			offers:   []api.Offer{offer("a1", "h1", 1.5, 1000)},
			runs:     []readyRun{run(a, 1), run(b, 1)},
			launches: []string{"o-a1 a-r1"},
		},
		{
			name:     "a container job goes to the agent with docker",
			offers:   []api.Offer{offer("a1", "h1", 4, 1000), offer("a2", "h2", 4, 1000, "docker")},
			runs:     []readyRun{run(job("c", 1, 100, container), 1)},
			launches: []string{"o-a2 c-r1"},
			declines: []string{"o-a1 1s NoCapability"},
		},
		{
			name:     "UNIQUE hostname skips the host already running the job",
			offers:   []api.Offer{offer("a1", "h1", 4, 1000), offer("a2", "h2", 4, 1000)},
			runs:     []readyRun{run(job("u", 1, 100, unique), 1)},
			placed:   map[string][]api.Offer{"u": {offer("a1", "h1", 4, 1000)}},
			launches: []string{"o-a2 u-r1"},
			declines: []string{"o-a1 1s UnfulfilledConstraint"},
		},
		{
			name:     "UNIQUE hostname: two runs of one job on one host, the second waits",
			offers:   []api.Offer{offer("a1", "h1", 4, 1000)},
			runs:     []readyRun{run(job("u", 1, 100, unique), 1), run(job("u", 1, 100, unique), 2)},
			placed:   map[string][]api.Offer{},
			launches: []string{"o-a1 u-r1"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fmt.Sprint(c.placed, c.runs[:len(c.runs):len(c.runs)])
			for _, r := range c.runs {
				before += fmt.Sprint(*r.run)
			}
			p := planOffers(offerInput{offers: c.offers, runs: c.runs, placed: c.placed, now: now})
			after := fmt.Sprint(c.placed, c.runs[:len(c.runs):len(c.runs)])
			for _, r := range c.runs {
				after += fmt.Sprint(*r.run)
			}
			if before != after {
				t.Error("planOffers modified its input")
			}
			var launches, declines, keys []string
			for i, l := range p.res.Launches {
				runID := strings.TrimPrefix(l.Task.Task.ID, "ct:")
				launches = append(launches, l.OfferID+" "+runID)
				// Each launch moves its run to running, guarded by the run's
				// index and the task id's absence, and says so in an event.
				ops := p.res.Ops[3*i : 3*i+3]
				var rr readyRun
				for _, r := range c.runs {
					if r.run.ID == runID {
						rr = r
					}
				}
				if ops[0] != sched.Check(sched.TableJobRuns, runID, rr.idx) || ops[1] != sched.Check(sched.TableTasks, l.Task.Task.ID, 0) ||
					ops[2].Kind != sched.OpPut || ops[2].Value.(*api.JobRun).State != RunRunning || p.res.Events[i].Type != api.EventJobRun {
					t.Errorf("launch %d ops %+v", i, ops)
				}
				keys = append(keys, rr.key)
			}
			for _, d := range p.res.Declines {
				declines = append(declines, strings.TrimSpace(fmt.Sprintf("%s %v %s", d.OfferID, d.RefuseFor, strings.Join(d.Reasons, ","))))
			}
			if !reflect.DeepEqual(launches, c.launches) || !reflect.DeepEqual(declines, c.declines) {
				t.Errorf("launches %q declines %q, want %q %q", launches, declines, c.launches, c.declines)
			}
			if !reflect.DeepEqual(p.launched, keys) {
				t.Errorf("launched keys %q, want %q", p.launched, keys)
			}
		})
	}
}
