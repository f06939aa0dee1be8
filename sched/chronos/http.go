package chronos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Routes mounts the Chronos REST API at /v1/scheduler/* (Chronos 3) and
// /scheduler/* (Chronos 2 and the scripts written for it).
func (f *Framework) Routes(mux *http.ServeMux, m sched.MasterHandle) {
	f.setMaster(m)
	for _, base := range []string{"/v1/scheduler", "/scheduler"} {
		mux.HandleFunc("POST "+base+"/iso8601", f.handleSubmit(true))
		mux.HandleFunc("PUT "+base+"/iso8601", f.handleSubmit(true))
		mux.HandleFunc("POST "+base+"/dependency", f.handleSubmit(false))
		mux.HandleFunc("PUT "+base+"/dependency", f.handleSubmit(false))
		mux.HandleFunc("GET "+base+"/jobs", f.handleJobs)
		mux.HandleFunc("GET "+base+"/jobs/summary", f.handleSummary)
		mux.HandleFunc("GET "+base+"/jobs/search", f.handleSearch)
		mux.HandleFunc("GET "+base+"/job/{name}", guard(sched.AccessRead, f.handleJob))
		mux.HandleFunc("DELETE "+base+"/job/{name}", guard(sched.AccessWrite, f.handleDelete))
		mux.HandleFunc("PUT "+base+"/job/{name}", guard(sched.AccessWrite, f.handleRun))
		mux.HandleFunc("PUT "+base+"/job/success/{name}", guard(sched.AccessWrite, f.handleSuccess))
		mux.HandleFunc("DELETE "+base+"/task/kill/{name}", guard(sched.AccessWrite, f.handleKill))
		mux.HandleFunc("GET "+base+"/job/stat/{name}", guard(sched.AccessRead, f.handleStat))
		mux.HandleFunc("GET "+base+"/job/runs/{name}", guard(sched.AccessRead, f.handleRuns))
		mux.HandleFunc("GET "+base+"/graph/dot", f.handleDot)
		mux.HandleFunc("GET "+base+"/graph/csv", f.handleCSV)
		mux.HandleFunc("GET "+base+"/leader", f.handleLeader)
		mux.HandleFunc("GET "+base+"/stats/{percentile}", f.handleStats)
		mux.HandleFunc("POST "+base+"/job/{name}/task/{taskId}/progress", guard(sched.AccessWrite, f.handleProgress))
		mux.HandleFunc(base+"/", func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("%s %s is not a Chronos API path", r.Method, r.URL.Path))
		})
	}
}

// MaxBody is the largest job definition a request may carry.
const MaxBody = 1 << 20

// apiError is Chronos's error body.
type apiError struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Status: http.StatusText(code), Message: msg})
}

func (f *Framework) fail(w http.ResponseWriter, err error) {
	var br *badRequest
	switch {
	case errors.As(err, &br):
		writeErr(w, http.StatusBadRequest, br.msg)
	case errors.Is(err, sched.ErrNotLeader):
		writeErr(w, http.StatusServiceUnavailable, "this master is not the leader; retry against the leader (GET /v1/scheduler/leader)")
	default:
		f.log.Warn("chronos api", "err", err)
		writeErr(w, http.StatusInternalServerError, err.Error())
	}
}

func (f *Framework) handleSubmit(scheduled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
		if err != nil {
			writeErr(w, http.StatusBadRequest, "reading the job: "+err.Error())
			return
		}
		if len(raw) > MaxBody {
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the job definition is larger than %d bytes, the limit (see docs/limits.md)", MaxBody))
			return
		}
		j, err := f.decodeJob(raw)
		if err != nil {
			f.fail(w, err)
			return
		}
		if a := sched.AuthzFrom(r.Context()); a.Job(j.Name) < sched.AccessWrite {
			sched.WriteForbidden(w, fmt.Sprintf("token %q has no write access to job %s", a.Label(), j.Name))
			return
		}
		if err := f.Submit(r.Context(), j, scheduled); err != nil {
			f.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// jobsFor is every job the request's token may read.
func (f *Framework) jobsFor(r *http.Request) []api.Job {
	a := sched.AuthzFrom(r.Context())
	var out []api.Job
	for _, e := range f.master().Store().List(sched.TableJobs) {
		j := e.Value.(*api.Job)
		if a.Job(j.Name) < sched.AccessRead {
			continue
		}
		out = append(out, withSlices(*j))
	}
	return out
}

// guard refuses a request about job {name} unless the token has want on it.
func guard(want sched.Access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := sched.AuthzFrom(r.Context())
		if name := r.PathValue("name"); a.Job(name) < want {
			sched.WriteForbidden(w, fmt.Sprintf("token %q has no %s access to job %s", a.Label(), want, name))
			return
		}
		h(w, r)
	}
}

// withSlices renders absent lists as [] as Chronos does.
func withSlices(j api.Job) api.Job {
	if j.Arguments == nil {
		j.Arguments = []string{}
	}
	if j.EnvironmentVariables == nil {
		j.EnvironmentVariables = []api.NameValue{}
	}
	if j.Constraints == nil {
		j.Constraints = [][]string{}
	}
	if j.Fetch == nil {
		j.Fetch = []api.Fetch{}
	}
	if j.Uris == nil {
		j.Uris = []string{}
	}
	if j.Container != nil {
		c := *j.Container
		if c.Network == "" {
			c.Network = "HOST" // Chronos's default network mode
		}
		if c.Volumes == nil {
			c.Volumes = []api.Volume{}
		}
		if c.Parameters == nil {
			c.Parameters = []api.NameValue{}
		}
		j.Container = &c
	}
	return j
}

func (f *Framework) handleJobs(w http.ResponseWriter, r *http.Request) {
	jobs := f.jobsFor(r)
	if jobs == nil {
		jobs = []api.Job{}
	}
	writeJSON(w, http.StatusOK, jobs)
}

func lastStatus(j *api.Job) string {
	switch {
	case j.LastSuccess == "" && j.LastError == "":
		return "fresh"
	case parseTS(j.LastError).After(parseTS(j.LastSuccess)):
		return "failure"
	}
	return "success"
}

// jobStates returns each job's state word from the ledger.
func (f *Framework) jobStates() map[string]string {
	running, queued := map[string]int{}, map[string]int{}
	f.master().Store().Read(func(_ uint64, t map[string]map[string]*sched.Entry) {
		for _, e := range t[sched.TableJobRuns] {
			switch r := e.Value.(*api.JobRun); r.State {
			case RunRunning:
				running[r.Job]++
			case RunQueued, RunRetrying:
				queued[r.Job]++
			}
		}
	})
	out := map[string]string{}
	for j, n := range queued {
		out[j] = "queued"
		_ = n
	}
	for j, n := range running {
		out[j] = fmt.Sprintf("%d running", n)
	}
	return out
}

func (f *Framework) handleSummary(w http.ResponseWriter, r *http.Request) {
	states := f.jobStates()
	out := struct {
		Jobs []api.JobSummary `json:"jobs"`
	}{Jobs: []api.JobSummary{}}
	for _, j := range f.jobsFor(r) {
		s := states[j.Name]
		if s == "" {
			s = "idle"
		}
		p := j.Parents
		if p == nil {
			p = []string{}
		}
		out.Jobs = append(out.Jobs, api.JobSummary{Name: j.Name, Status: lastStatus(&j), State: s, Schedule: j.Schedule, Parents: p, Disabled: j.Disabled})
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Framework) handleSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, cmd, anyq := strings.ToLower(q.Get("name")), strings.ToLower(q.Get("command")), strings.ToLower(q.Get("any"))
	limit, offset := 10, 0
	if v, err := strconv.Atoi(q.Get("limit")); err == nil && v >= 0 {
		limit = v
	}
	if v, err := strconv.Atoi(q.Get("offset")); err == nil && v >= 0 {
		offset = v
	}
	out := []api.Job{}
	for _, j := range f.jobsFor(r) {
		n, c := strings.ToLower(j.Name), strings.ToLower(j.Command)
		ok := !(name != "" && !strings.Contains(n, name)) && !(cmd != "" && !strings.Contains(c, cmd))
		if anyq != "" {
			// Chronos: any rescues a job name and command filters dropped.
			// With any alone, it filters (Chronos would list everything).
			hit := strings.Contains(n, anyq) || strings.Contains(c, anyq)
			if name == "" && cmd == "" {
				ok = hit
			} else if !ok && hit {
				ok = true
			}
		}
		if ok {
			out = append(out, j)
		}
	}
	if offset > len(out) {
		offset = len(out)
	}
	end := offset + limit
	if end > len(out) {
		end = len(out)
	}
	writeJSON(w, http.StatusOK, out[offset:end])
}

func (f *Framework) handleJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e, ok := f.master().Store().Get(sched.TableJobs, name)
	if !ok {
		f.fail(w, notFound(name))
		return
	}
	writeJSON(w, http.StatusOK, withSlices(*e.Value.(*api.Job)))
}

func (f *Framework) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := f.Delete(r.Context(), r.PathValue("name")); err != nil {
		f.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Framework) handleRun(w http.ResponseWriter, r *http.Request) {
	var args []string
	if a := r.URL.Query().Get("arguments"); a != "" {
		args = strings.Fields(a)
	}
	if _, err := f.RunNow(r.Context(), r.PathValue("name"), args); err != nil {
		f.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Framework) handleSuccess(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := f.MarkSuccess(r.Context(), name); err != nil {
		f.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "marked job %s as successful: true", name)
}

func (f *Framework) handleKill(w http.ResponseWriter, r *http.Request) {
	if err := f.Kill(r.Context(), r.PathValue("name")); err != nil {
		f.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Framework) handleRuns(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := f.master().Store().Get(sched.TableJobs, name); !ok {
		f.fail(w, notFound(name))
		return
	}
	runs := f.Runs(name)
	if runs == nil {
		runs = []api.JobRun{}
	}
	writeJSON(w, http.StatusOK, runs)
}

// Histogram is GET /job/stat's run-time summary, in milliseconds.
type Histogram struct {
	P75    float64 `json:"75thPercentile"`
	P95    float64 `json:"95thPercentile"`
	P98    float64 `json:"98thPercentile"`
	P99    float64 `json:"99thPercentile"`
	Median float64 `json:"median"`
	Mean   float64 `json:"mean"`
	Count  int     `json:"count"`
}

// TaskStat is an entry of GET /job/stat's taskStatHistory.
type TaskStat struct {
	TaskID    string `json:"taskId"`
	JobName   string `json:"jobName"`
	JobStart  string `json:"jobStart,omitempty"`
	JobEnd    string `json:"jobEnd,omitempty"`
	TaskState string `json:"taskState"`
	Attempt   int    `json:"attempt"`
	Trigger   string `json:"trigger,omitempty"`
	Message   string `json:"message,omitempty"`
}

// snapshotValue is a run-time histogram's value at quantile q as
// Chronos's metrics library (Codahale Metrics 3.0, Snapshot.getValue)
// computes it over the sorted values: interpolated between the two values
// around position q*(n+1), 0 for no values.
func snapshotValue(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	pos := q * float64(n+1)
	if pos < 1 {
		return sorted[0]
	}
	if pos >= float64(n) {
		return sorted[n-1]
	}
	lower, upper := sorted[int(pos)-1], sorted[int(pos)]
	return lower + (pos-math.Floor(pos))*(upper-lower)
}

// histogram is the histogram Chronos keeps of a job's run times (ms).
// Chronos's serializer writes snapshot.getValue(0.5) under "mean" as well;
// weft writes the mean there (docs/compat.md).
func histogram(ms []float64) Histogram {
	sort.Float64s(ms)
	h := Histogram{Count: len(ms), Median: snapshotValue(ms, .5), P75: snapshotValue(ms, .75), P95: snapshotValue(ms, .95),
		P98: snapshotValue(ms, .98), P99: snapshotValue(ms, .99)}
	for _, v := range ms {
		h.Mean += v / float64(len(ms))
	}
	return h
}

func (f *Framework) handleStat(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := f.master().Store().Get(sched.TableJobs, name); !ok {
		f.fail(w, notFound(name))
		return
	}
	var ms []float64
	hist := []TaskStat{}
	for _, run := range f.Runs(name) {
		hist = append(hist, TaskStat{TaskID: run.TaskID, JobName: name, JobStart: run.StartedAt, JobEnd: run.FinishedAt,
			TaskState: run.State, Attempt: run.Attempt, Trigger: run.Trigger, Message: run.Message})
		if run.State == RunSucceeded && run.StartedAt != "" && run.FinishedAt != "" {
			ms = append(ms, float64(parseTS(run.FinishedAt).Sub(parseTS(run.StartedAt)))/float64(time.Millisecond))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"histogram": histogram(ms), "taskStatHistory": hist})
}

// handleDot is GET /graph/dot: the dependency graph as Chronos writes it
// (JGraphT's DOTExporter with integer vertex ids and the job names as
// labels): one line per job, one per parent → child edge.
func (f *Framework) handleDot(w http.ResponseWriter, r *http.Request) {
	jobs := f.jobsFor(r)
	num := map[string]int{}
	for i, j := range jobs {
		num[j.Name] = i + 1
	}
	var b strings.Builder
	b.WriteString("digraph G {\n")
	for _, j := range jobs {
		fmt.Fprintf(&b, "  %d [label = \"%s\"];\n", num[j.Name], j.Name)
	}
	for _, j := range jobs {
		for _, p := range j.Parents {
			if n, ok := num[p]; ok {
				fmt.Fprintf(&b, "  %d -> %d;\n", n, num[j.Name])
			}
		}
	}
	b.WriteString("}\n")
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, b.String())
}

// handleCSV is GET /graph/csv, Chronos's Exporter: "node,name,last
// state,current state" per job, then "link,parent,child" per edge.
func (f *Framework) handleCSV(w http.ResponseWriter, r *http.Request) {
	states := f.jobStates()
	var b strings.Builder
	jobs := f.jobsFor(r)
	listed := map[string]bool{}
	for _, j := range jobs {
		listed[j.Name] = true
		s := states[j.Name]
		if s == "" {
			s = "idle"
		}
		fmt.Fprintf(&b, "node,%s,%s,%s\n", j.Name, lastStatus(&j), s)
	}
	for _, j := range jobs {
		for _, p := range j.Parents {
			if listed[p] {
				fmt.Fprintf(&b, "link,%s,%s\n", p, j.Name)
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, b.String())
}

func (f *Framework) handleLeader(w http.ResponseWriter, r *http.Request) {
	l := r.Host
	if f.cfg.LeaderAPI != nil {
		if v := f.cfg.LeaderAPI(); v != "" {
			l = v
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": l})
}

// handleStats is GET /stats/{percentile}, Chronos's StatsResource: every
// job with its run-time histogram's value for that key, in seconds, the
// longest first. Chronos lists every job of its graph, 0 for a job that
// never ran; its keys are those of the histogram (75thPercentile,
// 95thPercentile, 98thPercentile, 99thPercentile, median, mean, count).
func (f *Framework) handleStats(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("percentile")
	pick := map[string]func(Histogram) float64{
		"median":         func(h Histogram) float64 { return h.Median },
		"75thPercentile": func(h Histogram) float64 { return h.P75 },
		"95thPercentile": func(h Histogram) float64 { return h.P95 },
		"98thPercentile": func(h Histogram) float64 { return h.P98 },
		"99thPercentile": func(h Histogram) float64 { return h.P99 },
		"mean":           func(h Histogram) float64 { return h.Mean },
		"count":          func(h Histogram) float64 { return float64(h.Count) },
	}[key]
	if pick == nil {
		f.fail(w, bad("Unknown statistic '%s': use mean, median, count, 75thPercentile, 95thPercentile, 98thPercentile or 99thPercentile", key))
		return
	}
	byJob := map[string][]float64{}
	f.master().Store().Read(func(_ uint64, t map[string]map[string]*sched.Entry) {
		for _, e := range t[sched.TableJobRuns] {
			run := e.Value.(*api.JobRun)
			if run.State == RunSucceeded && run.StartedAt != "" && run.FinishedAt != "" {
				byJob[run.Job] = append(byJob[run.Job], float64(parseTS(run.FinishedAt).Sub(parseTS(run.StartedAt)))/float64(time.Millisecond))
			}
		}
	})
	type stat struct {
		Job  string  `json:"jobNameLabel"`
		Time float64 `json:"time"`
	}
	out := []stat{}
	for _, j := range f.jobsFor(r) {
		// Chronos divides the histogram's figure (ms) by 1000.
		out = append(out, stat{Job: j.Name, Time: pick(histogram(byJob[j.Name])) / 1000})
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Time > out[b].Time })
	writeJSON(w, http.StatusOK, out)
}

// handleProgress is Chronos's POST /job/{name}/task/{taskId}/progress
// {"numAdditionalElementsProcessed": n}: a data-processing job's task
// reports the elements it has processed. weft checks the job, the task
// and the count and answers 204 as Chronos does; it keeps no progress
// figure (Chronos forwards it to its stats store, which weft does not have).
func (f *Framework) handleProgress(w http.ResponseWriter, r *http.Request) {
	name, taskID := r.PathValue("name"), r.PathValue("taskId")
	st := f.master().Store()
	if _, ok := st.Get(sched.TableJobs, name); !ok {
		f.fail(w, bad("Job '%s' not found", name))
		return
	}
	var body struct {
		N *int64 `json:"numAdditionalElementsProcessed"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || json.Unmarshal(raw, &body) != nil || body.N == nil || *body.N < 0 {
		f.fail(w, bad("want a JSON body {\"numAdditionalElementsProcessed\": n} with n >= 0"))
		return
	}
	if e, ok := st.Get(sched.TableTasks, taskID); !ok || e.Value.(*sched.TaskRecord).Task.Name != name {
		f.fail(w, bad("Task '%s' is not a task of job '%s'", taskID, name))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
