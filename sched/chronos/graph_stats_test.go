package chronos

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// /scheduler/graph/dot, /scheduler/graph/csv and /scheduler/stats/{key}
// byte for byte as Chronos writes them: the DOT of JGraphT's DOTExporter
// (integer ids, names as labels), the Exporter's CSV, and StatsResource's
// list — every job, its histogram figure in seconds, the longest first,
// percentiles as Codahale Metrics' Snapshot interpolates them.
func TestGraphAndStatsAsChronosWritesThem(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/scheduler/iso8601", `{"name":"a","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D"}`, 204)
	e.mustDo("POST", "/scheduler/dependency", `{"name":"b","command":"true","parents":["a"]}`, 204)
	e.mustDo("POST", "/scheduler/iso8601", `{"name":"c","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D"}`, 204)

	if got := e.mustDo("GET", "/scheduler/graph/dot", "", 200); got != "digraph G {\n  1 [label = \"a\"];\n  2 [label = \"b\"];\n  3 [label = \"c\"];\n  1 -> 2;\n}\n" {
		t.Errorf("dot:\n%s", got)
	}
	if got := e.mustDo("GET", "/scheduler/graph/csv", "", 200); got != "node,a,fresh,idle\nnode,b,fresh,idle\nnode,c,fresh,idle\nlink,a,b\n" {
		t.Errorf("csv:\n%s", got)
	}

	// Runs of a: 1, 2, 3 and 4 s; of b: 10 s; c never ran.
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	var ops []sched.Op
	for i, d := range map[string][]int{"a": {1, 2, 3, 4}, "b": {10}} {
		for n, s := range d {
			id := fmt.Sprintf("%s-run-%d", i, n)
			ops = append(ops, sched.Put(sched.TableJobRuns, id, &api.JobRun{ID: id, Job: i, State: RunSucceeded,
				StartedAt: start.Format(time.RFC3339Nano), FinishedAt: start.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano)}))
		}
	}
	if _, err := e.store.Apply(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		// a: position 0.5*(4+1) = 2.5 between 2000 and 3000 ms.
		"median":         `[{"jobNameLabel":"b","time":10},{"jobNameLabel":"a","time":2.5},{"jobNameLabel":"c","time":0}]`,
		"75thPercentile": `[{"jobNameLabel":"b","time":10},{"jobNameLabel":"a","time":3.75},{"jobNameLabel":"c","time":0}]`,
		"99thPercentile": `[{"jobNameLabel":"b","time":10},{"jobNameLabel":"a","time":4},{"jobNameLabel":"c","time":0}]`,
		"mean":           `[{"jobNameLabel":"b","time":10},{"jobNameLabel":"a","time":2.5},{"jobNameLabel":"c","time":0}]`,
		"count":          `[{"jobNameLabel":"a","time":0.004},{"jobNameLabel":"b","time":0.001},{"jobNameLabel":"c","time":0}]`,
	} {
		if got := e.mustDo("GET", "/scheduler/stats/"+key, "", 200); got != want+"\n" && got != want {
			t.Errorf("stats/%s: %s, want %s", key, got, want)
		}
	}
	var stat struct {
		Histogram map[string]float64 `json:"histogram"`
	}
	if err := json.Unmarshal([]byte(e.mustDo("GET", "/scheduler/job/stat/a", "", 200)), &stat); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range stat.Histogram {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if fmt.Sprint(keys) != "[75thPercentile 95thPercentile 98thPercentile 99thPercentile count mean median]" ||
		stat.Histogram["median"] != 2500 || stat.Histogram["75thPercentile"] != 3750 || stat.Histogram["count"] != 4 {
		t.Errorf("job/stat histogram %v", stat.Histogram)
	}
	e.mustDo("GET", "/scheduler/stats/42nd", "", 400)
}

// A job's container carries every key Chronos's JobSerializer writes, even
// empty: type, image, network (HOST by default), volumes, forcePullImage,
// parameters.
func TestJobContainerAsChronosWritesIt(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/scheduler/iso8601", `{"name":"d","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D","container":{"type":"DOCKER","image":"busybox"}}`, 204)
	for _, path := range []string{"/scheduler/job/d", "/scheduler/jobs"} {
		body := e.mustDo("GET", path, "", 200)
		var j map[string]any
		if path == "/scheduler/jobs" {
			var l []map[string]any
			if err := json.Unmarshal([]byte(body), &l); err != nil || len(l) != 1 {
				t.Fatalf("%s: %v %s", path, err, body)
			}
			j = l[0]
		} else if err := json.Unmarshal([]byte(body), &j); err != nil {
			t.Fatal(err)
		}
		c, _ := json.Marshal(j["container"])
		if string(c) != `{"forcePullImage":false,"image":"busybox","network":"HOST","parameters":[],"type":"DOCKER","volumes":[]}` {
			t.Errorf("%s: container %s", path, c)
		}
	}
}
