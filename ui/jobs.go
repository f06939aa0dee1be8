package ui

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

type jobRow struct {
	Name, Schedule, Next, Last, LastClass, Command string
	Parents                                        []string
	Disabled                                       bool
	Success, Errors                                int64
}

type jobsData struct {
	Jobs  []jobRow
	Graph template.HTML
}

// jobsPage lists Chronos jobs with their schedule in words, next run, last
// outcome and the dependency graph.
func (u *UI) jobsPage(w http.ResponseWriter, r *http.Request, s *session) {
	var jobs []api.Job
	if err := u.getJSON(r.Context(), s, "/scheduler/jobs", &jobs); err != nil {
		u.failErr(w, r, s, err)
		return
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Name < jobs[j].Name })
	now := u.cfg.Now()
	d := &jobsData{Graph: template.HTML(jobGraphSVG(jobs))}
	for _, j := range jobs {
		d.Jobs = append(d.Jobs, newJobRow(j, now))
	}
	u.render(w, r, s, "jobs", "Jobs", d)
}

func newJobRow(j api.Job, now time.Time) jobRow {
	row := jobRow{Name: j.Name, Command: j.Command, Parents: j.Parents, Disabled: j.Disabled, Success: j.SuccessCount, Errors: j.ErrorCount}
	if j.Schedule != "" {
		words, next := scheduleWords(j.Schedule, now)
		row.Schedule = words
		if !next.IsZero() && !j.Disabled {
			row.Next = next.UTC().Format("2006-01-02 15:04:05 UTC") + " (" + untilWords(next.Sub(now)) + ")"
		}
	} else if len(j.Parents) > 0 {
		row.Schedule = "after " + strings.Join(j.Parents, " and ") + " succeed"
	}
	if row.Next == "" {
		row.Next = "-"
	}
	switch {
	case j.LastSuccess == "" && j.LastError == "":
		row.Last, row.LastClass = "never run", "fresh"
	case j.LastError > j.LastSuccess:
		row.Last, row.LastClass = "failed "+j.LastError, "failure"
	default:
		row.Last, row.LastClass = "succeeded "+j.LastSuccess, "success"
	}
	return row
}

var durRE = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// scheduleWords reads a Chronos ISO-8601 schedule "R[n]/start/period" and
// says it in words, with the next run after now (zero when none is left).
func scheduleWords(sched string, now time.Time) (string, time.Time) {
	parts := strings.Split(sched, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "R") {
		return sched, time.Time{}
	}
	repeats := -1
	if n := strings.TrimPrefix(parts[0], "R"); n != "" {
		v, err := strconv.Atoi(n)
		if err != nil {
			return sched, time.Time{}
		}
		repeats = v
	}
	start := now
	if parts[1] != "" {
		t, err := time.Parse(time.RFC3339, parts[1])
		if err != nil {
			return sched, time.Time{}
		}
		start = t
	}
	m := durRE.FindStringSubmatch(parts[2])
	if m == nil || parts[2] == "P" || parts[2] == "PT" {
		return sched, time.Time{}
	}
	num := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	secs, _ := strconv.ParseFloat(m[7], 64)
	y, mo, wk, dy, h, mi := num(1), num(2), num(3), num(4), num(5), num(6)
	units := []struct {
		n    int
		name string
	}{{y, "year"}, {mo, "month"}, {wk, "week"}, {dy, "day"}, {h, "hour"}, {mi, "minute"}, {int(secs), "second"}}
	var every []string
	for _, u := range units {
		switch {
		case u.n == 1:
			every = append(every, u.name)
		case u.n > 1:
			every = append(every, strconv.Itoa(u.n)+" "+u.name+"s")
		}
	}
	step := func(t time.Time, k int) time.Time {
		t = t.AddDate(y*k, mo*k, (wk*7+dy)*k)
		return t.Add(time.Duration(k) * (time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(secs*float64(time.Second))))
	}
	var words string
	switch repeats {
	case 0:
		words = "once, at " + start.UTC().Format("2006-01-02 15:04 UTC")
	case -1:
		words = "every " + strings.Join(every, " ") + ", from " + start.UTC().Format("2006-01-02 15:04 UTC")
	default:
		words = fmt.Sprintf("every %s, %d more time(s), from %s", strings.Join(every, " "), repeats, start.UTC().Format("2006-01-02 15:04 UTC"))
	}
	next := start
	if next.Before(now) {
		k := 1
		if fixed := step(start, 1).Sub(start); y == 0 && mo == 0 && fixed > 0 {
			k = int(math.Ceil(float64(now.Sub(start)) / float64(fixed)))
		}
		next = step(start, k)
		for i := 0; next.Before(now) && i < 10000; i++ {
			k++
			next = step(start, k)
		}
		if repeats == 0 || (repeats > 0 && k > repeats) {
			next = time.Time{}
		}
	}
	return words, next
}

func untilWords(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "in " + strconv.Itoa(int(d.Seconds())) + " s"
	case d < time.Hour:
		return "in " + strconv.Itoa(int(d.Minutes())) + " min"
	case d < 48*time.Hour:
		return "in " + strconv.FormatFloat(d.Hours(), 'f', 1, 64) + " h"
	}
	return "in " + strconv.Itoa(int(d.Hours()/24)) + " days"
}

// jobGraphSVG draws the dependency graph: jobs in columns by depth (the
// longest chain of parents before them), arrows from parent to child.
func jobGraphSVG(jobs []api.Job) string {
	if len(jobs) == 0 {
		return ""
	}
	byName := map[string]*api.Job{}
	for i := range jobs {
		byName[jobs[i].Name] = &jobs[i]
	}
	depth := map[string]int{}
	var depthOf func(n string, seen map[string]bool) int
	depthOf = func(n string, seen map[string]bool) int {
		if d, ok := depth[n]; ok {
			return d
		}
		if seen[n] {
			return 0 // a cycle: Chronos refuses them, but never loop
		}
		seen[n] = true
		d := 0
		if j := byName[n]; j != nil {
			for _, p := range j.Parents {
				if byName[p] != nil {
					d = max(d, depthOf(p, seen)+1)
				}
			}
		}
		depth[n] = d
		return d
	}
	cols := map[int][]string{}
	maxD := 0
	for _, j := range jobs {
		d := depthOf(j.Name, map[string]bool{})
		cols[d] = append(cols[d], j.Name)
		maxD = max(maxD, d)
	}
	const bw, bh, gx, gy, pad = 160, 36, 60, 18, 10
	pos := map[string][2]int{}
	rows := 0
	for d := 0; d <= maxD; d++ {
		sort.Strings(cols[d])
		for i, n := range cols[d] {
			pos[n] = [2]int{pad + d*(bw+gx), pad + i*(bh+gy)}
		}
		rows = max(rows, len(cols[d]))
	}
	wd, ht := pad*2+(maxD+1)*(bw+gx)-gx, pad*2+rows*(bh+gy)-gy
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="graph" id="job-graph" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="job dependency graph">`, wd, ht, wd, ht)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#667"/></marker></defs>`)
	for _, j := range jobs {
		c := pos[j.Name]
		for _, p := range j.Parents {
			pp, ok := pos[p]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, `<line class="edge" data-from="%s" data-to="%s" x1="%d" y1="%d" x2="%d" y2="%d" stroke="#667" stroke-width="1.5" marker-end="url(#arrow)"/>`,
				template.HTMLEscapeString(p), template.HTMLEscapeString(j.Name), pp[0]+bw, pp[1]+bh/2, c[0], c[1]+bh/2)
		}
	}
	for _, j := range jobs {
		c := pos[j.Name]
		cls := newJobRow(j, time.Time{}).LastClass
		name := j.Name
		if len(name) > 20 {
			name = name[:19] + "…"
		}
		fmt.Fprintf(&b, `<a href="/ui/job/%s"><g class="job %s" data-job="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="6"/><text x="%d" y="%d">%s</text><title>%s</title></g></a>`,
			url.PathEscape(j.Name), cls, template.HTMLEscapeString(j.Name), c[0], c[1], bw, bh, c[0]+10, c[1]+bh/2+5,
			template.HTMLEscapeString(name), template.HTMLEscapeString(j.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// graphSVG serves the graph alone, as an image.
func (u *UI) graphSVG(w http.ResponseWriter, r *http.Request, s *session) {
	var jobs []api.Job
	if err := u.getJSON(r.Context(), s, "/scheduler/jobs", &jobs); err != nil {
		u.failErr(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write([]byte(jobGraphSVG(jobs)))
}

type runRow struct {
	api.JobRun
	Log string
}

// jobPage is one job: its definition, its runs with their logs, run now.
func (u *UI) jobPage(w http.ResponseWriter, r *http.Request, s *session, name string) {
	ctx := r.Context()
	var j api.Job
	if err := u.getJSON(ctx, s, "/scheduler/job/"+url.PathEscape(name), &j); err != nil {
		u.failErr(w, r, s, err)
		return
	}
	var runs []api.JobRun
	_ = u.getJSON(ctx, s, "/scheduler/job/runs/"+url.PathEscape(name), &runs)
	sort.SliceStable(runs, func(a, b int) bool {
		return runs[a].ScheduledAt+runs[a].StartedAt > runs[b].ScheduledAt+runs[b].StartedAt
	})
	var rows []runRow
	for _, run := range runs {
		rr := runRow{JobRun: run}
		if run.TaskID != "" {
			rr.Log = "/ui/logs/" + url.PathEscape(run.TaskID) + "?job=" + url.QueryEscape(name)
		}
		rows = append(rows, rr)
	}
	u.render(w, r, s, "job", j.Name, map[string]any{
		"Job": j, "Row": newJobRow(j, u.cfg.Now()), "Runs": rows, "CanWrite": s.rules.canWriteJob(j.Name),
	})
}

// jobAction runs a job now.
func (u *UI) jobAction(w http.ResponseWriter, r *http.Request, s *session, name string) {
	if r.PostFormValue("action") != "run" {
		u.fail(w, r, s, http.StatusBadRequest, "unknown job action: only run")
		return
	}
	path := "/scheduler/job/" + url.PathEscape(name)
	code, out := u.call(r.Context(), s, http.MethodPut, path, nil)
	if code/100 != 2 {
		u.failErr(w, r, s, apiErr(path, code, out))
		return
	}
	http.Redirect(w, r, "/ui/job/"+url.PathEscape(name), http.StatusSeeOther)
}
