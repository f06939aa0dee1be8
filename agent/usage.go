package agent

import (
	"errors"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/sched/api"
)

// errNoTask is taskUsage's answer for a task not running here.
var errNoTask = errors.New("no such task runs on this agent")

// taskUsage reads one running task's usage from its executor.
func (a *Agent) taskUsage(id string) (Usage, error) {
	a.mu.Lock()
	t, ok := a.tasks[id]
	var h Handle
	if ok && !t.finished {
		h = t.handle
	}
	a.mu.Unlock()
	if h == nil {
		return Usage{}, errNoTask
	}
	u, ok := h.(Usager)
	if !ok {
		return Usage{}, errors.New("this task's executor does not measure usage")
	}
	return u.Usage()
}

// TaskUsage is one task's usage as GET /v1/stats lists it.
type TaskUsage = api.TaskStats

// Usages reads the usage of every running task that measures it.
func (a *Agent) Usages() []TaskUsage {
	a.mu.Lock()
	type run struct {
		id, app string
		u       Usager
	}
	var runs []run
	for _, t := range a.tasks {
		if u, ok := t.handle.(Usager); ok && !t.finished {
			runs = append(runs, run{t.id, t.a.Task.AppID, u})
		}
	}
	a.mu.Unlock()
	out := make([]TaskUsage, 0, len(runs))
	for _, r := range runs {
		s, err := r.u.Usage()
		if err != nil {
			continue
		}
		out = append(out, TaskUsage{ID: r.id, AppID: r.app, Statistics: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// serveTaskStats answers GET /v1/tasks/{id}/stats.
func (a *Agent) serveTaskStats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	u, err := a.taskUsage(id)
	switch {
	case errors.Is(err, errNoTask):
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "task " + id + " does not run on this agent"})
	case err != nil:
		writeJSON(w, http.StatusConflict, map[string]string{"message": err.Error()})
	default:
		writeJSON(w, http.StatusOK, TaskUsage{ID: id, AppID: a.appOf(id), Statistics: u})
	}
}

func (a *Agent) appOf(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.tasks[id]; ok {
		return t.a.Task.AppID
	}
	return ""
}

var (
	descTaskCPU      = prometheus.NewDesc("weft_task_cpu_seconds_total", "CPU time used by a task's processes (user and system).", []string{"task", "app", "mode"}, nil)
	descTaskRSS      = prometheus.NewDesc("weft_task_memory_rss_bytes", "Anonymous memory (RSS) of a task's processes.", []string{"task", "app"}, nil)
	descTaskMem      = prometheus.NewDesc("weft_task_memory_usage_bytes", "Memory charged to a task's cgroup (RSS and page cache).", []string{"task", "app"}, nil)
	descTaskMemLimit = prometheus.NewDesc("weft_task_memory_limit_bytes", "A task's memory limit.", []string{"task", "app"}, nil)
	descTaskCPULimit = prometheus.NewDesc("weft_task_cpus_limit", "A task's cpus: its share, or its CFS quota in cores.", []string{"task", "app"}, nil)
)

// Collector exports the usage of the tasks running here, read when
// scraped.
func (a *Agent) Collector() prometheus.Collector { return usageCollector{a} }

type usageCollector struct{ a *Agent }

func (c usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTaskCPU, descTaskRSS, descTaskMem, descTaskMemLimit, descTaskCPULimit} {
		ch <- d
	}
}

func (c usageCollector) Collect(ch chan<- prometheus.Metric) {
	for _, tu := range c.a.Usages() {
		s := tu.Statistics
		ch <- prometheus.MustNewConstMetric(descTaskCPU, prometheus.CounterValue, s.CpusUserTimeSecs, tu.ID, tu.AppID, "user")
		ch <- prometheus.MustNewConstMetric(descTaskCPU, prometheus.CounterValue, s.CpusSystemTimeSecs, tu.ID, tu.AppID, "system")
		ch <- prometheus.MustNewConstMetric(descTaskRSS, prometheus.GaugeValue, float64(s.MemRSSBytes), tu.ID, tu.AppID)
		ch <- prometheus.MustNewConstMetric(descTaskMem, prometheus.GaugeValue, float64(s.MemTotalBytes), tu.ID, tu.AppID)
		if s.MemLimitBytes > 0 {
			ch <- prometheus.MustNewConstMetric(descTaskMemLimit, prometheus.GaugeValue, float64(s.MemLimitBytes), tu.ID, tu.AppID)
		}
		if s.CpusLimit > 0 {
			ch <- prometheus.MustNewConstMetric(descTaskCPULimit, prometheus.GaugeValue, s.CpusLimit, tu.ID, tu.AppID)
		}
	}
}
