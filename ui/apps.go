package ui

import (
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

// Statuses an app can be in, as Marathon's UI names them.
const (
	StatusRunning   = "Running"
	StatusDeploying = "Deploying"
	StatusSuspended = "Suspended"
	StatusWaiting   = "Waiting"
	StatusDelayed   = "Delayed"
)

// listApp is the part of GET /v2/apps the list needs; decoding only these
// fields keeps the page fast with thousands of apps.
type listApp struct {
	ID             string              `json:"id"`
	Instances      int                 `json:"instances"`
	Cpus           float64             `json:"cpus"`
	Mem            float64             `json:"mem"`
	Labels         map[string]string   `json:"labels"`
	TasksStaged    int                 `json:"tasksStaged"`
	TasksRunning   int                 `json:"tasksRunning"`
	TasksHealthy   int                 `json:"tasksHealthy"`
	TasksUnhealthy int                 `json:"tasksUnhealthy"`
	Deployments    []api.DeploymentRef `json:"deployments"`
	HealthChecks   []json.RawMessage   `json:"healthChecks"`
}

// queueEntry is the part of a GET /v2/queue item the status needs.
type queueEntry struct {
	App struct {
		ID string `json:"id"`
	} `json:"app"`
	Count int            `json:"count"`
	Delay api.QueueDelay `json:"delay"`
}

// appStatus derives Marathon's app status: a deployment wins, then an app
// scaled to nothing is suspended, then a launch backoff, then instances
// waiting to be placed.
func appStatus(a *listApp, q *queueEntry) string {
	switch {
	case len(a.Deployments) > 0:
		return StatusDeploying
	case a.Instances == 0 && a.TasksRunning == 0:
		return StatusSuspended
	case q != nil && q.Delay.TimeLeftSeconds > 0 && !q.Delay.Overdue:
		return StatusDelayed
	case q != nil && q.Count > 0:
		return StatusWaiting
	}
	return StatusRunning
}

// bar is a health bar: segment widths in percent.
type bar struct {
	Healthy, Unhealthy, Running, Staged, Missing float64
	Title                                        string
}

func healthBar(instances, staged, running, healthy, unhealthy int, checked bool) bar {
	unknown := running - healthy - unhealthy
	if !checked {
		healthy, unhealthy, unknown = 0, 0, running
	}
	unknown = max(unknown, 0)
	missing := max(instances-running-staged, 0)
	total := float64(max(instances, running+staged))
	b := bar{}
	if total > 0 {
		pc := func(n int) float64 { return float64(int(float64(n)*1000/total)) / 10 }
		b.Healthy, b.Unhealthy, b.Running, b.Staged, b.Missing = pc(healthy), pc(unhealthy), pc(unknown), pc(staged), pc(missing)
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(healthy, "healthy")
	add(unhealthy, "unhealthy")
	add(unknown, "running")
	add(staged, "staging")
	add(missing, "missing")
	b.Title = strings.Join(parts, ", ")
	if b.Title == "" {
		b.Title = "no instances"
	}
	return b
}

type appRow struct {
	ID, Status string
	Instances  int
	Running    int
	Cpus, Mem  float64
	Bar        bar
	Labels     map[string]string
	HTML       string // the row, rendered

	src    listApp    // what the row was built from (its status is worked out again when the queue moves)
	queue  queueEntry // the app's queue entry when queued
	queued bool
}

type groupNode struct {
	Path, Name string
	Count      int
	Children   []*groupNode
	Current    bool
}

type appsData struct {
	Rows                    []*appRow // every row the filters keep (the view's own: never modified)
	RowsHTML                template.HTML
	More                    bool   // only the first screenful of Rows is in RowsHTML
	LastID                  string // the id of the last row in RowsHTML
	AllURL                  string // the page with every row
	Index                   uint64 // the store index of the rows (0: unknown)
	Total                   int
	Status, Label, Group, Q string
	Statuses                []string
	Counts                  map[string]int
	Tree                    *groupNode
	FilterURL               func(key, val string) string
	AnyFilter               bool
	CanCreate               bool
}

// firstRows is how many rows the apps page carries itself; the script
// fetches the rest once the page is up, and "Show all" (?all=1) carries
// every row for a browser without it. A thousand rows of markup would
// hold DOMContentLoaded back on a phone or a loaded machine.
const firstRows = 60

// Headers of the live script's requests for the apps page.
const (
	hdrPartial   = "X-Weft-Partial"    // only <main>
	hdrRowsAfter = "X-Weft-Rows-After" // only the rows after this app id
	hdrSince     = "X-Weft-Since"      // a JSON delta since this store index
)

// appsPage is Marathon's main screen: every app the token may read, with
// status and health, filtered by status, label, group and text.
func (u *UI) appsPage(w http.ResponseWriter, r *http.Request, s *session) {
	canCreate := s.rules.canWriteSomeApp()
	v, err := u.appsView(r.Context(), s)
	if err != nil {
		u.failErr(w, r, s, err)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Header.Get(hdrSince) != "":
		u.appsDeltaAnswer(w, r, s, v, q, canCreate)
		return
	case r.Header.Get(hdrRowsAfter) != "":
		after := r.Header.Get(hdrRowsAfter)
		key := "after\x00" + after + "\x00" + r.URL.RawQuery
		rest := v.main(key)
		if rest == nil {
			d := buildAppsData(q, v, canCreate, 0) // the filtered rows, none rendered into the page
			i := sort.Search(len(d.Rows), func(i int) bool { return d.Rows[i].ID > after })
			rest = appendRows(nil, d.Rows[i:])
			if v.index != 0 {
				v.keepMain(key, rest)
			}
		}
		w.Header().Set("X-Weft-Index", strconv.FormatUint(v.index, 10))
		writeHTML(w, r, rest)
		return
	}
	key := mainKey(r.URL.RawQuery, canCreate)
	main := v.main(key)
	if main == nil {
		main, err = u.renderMain(s, "apps", "Applications", buildAppsData(q, v, canCreate, pageRows(q)))
		if err != nil {
			u.log.Error("rendering", "page", "apps", "err", err)
			http.Error(w, "rendering apps: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if v.index != 0 {
			v.keepMain(key, main)
		}
	}
	u.renderWith(w, r, s, "apps", "Applications", main)
}

// pageRows is how many rows the page itself carries: all with ?all=1.
func pageRows(q url.Values) int {
	if q.Get("all") != "" {
		return -1
	}
	return firstRows
}

// appsDeltaAnswer answers an open page at store index X-Weft-Since with
// the rows that changed since (appsDelta), as JSON.
func (u *UI) appsDeltaAnswer(w http.ResponseWriter, r *http.Request, s *session, v *appsView, q url.Values, canCreate bool) {
	since, err := strconv.ParseUint(r.Header.Get(hdrSince), 10, 64)
	if err != nil {
		http.Error(w, hdrSince+": want a store index (a whole number), got "+strconv.Quote(r.Header.Get(hdrSince)), http.StatusBadRequest)
		return
	}
	d := buildAppsData(q, v, canCreate, pageRows(q))
	out := appsDelta{Index: v.index}
	var ok bool
	if out.Rows, out.Removed, ok = v.delta(d, since); !ok {
		main, err := u.renderMain(s, "apps", "Applications", d)
		if err != nil {
			http.Error(w, "rendering apps: "+err.Error(), http.StatusInternalServerError)
			return
		}
		out.Full = string(main)
	} else if len(out.Rows)+len(out.Removed) > 0 {
		var b strings.Builder
		if err := u.pages["apps"].ExecuteTemplate(&b, "appsaside", d); err != nil {
			http.Error(w, "rendering apps: "+err.Error(), http.StatusInternalServerError)
			return
		}
		out.Aside = b.String()
		out.Count = fmt.Sprintf("%d of %d apps", len(d.Rows), d.Total)
	}
	body, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "encoding the delta: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeBody(w, r, "application/json", body)
}

// buildAppsData filters the view's rows as the query asks and builds the
// group tree and the status counts; the page carries the first limit
// rows (all when limit < 0).
func buildAppsData(q url.Values, v *appsView, canCreate bool, limit int) *appsData {
	all := v.rows
	d := &appsData{
		Status: q.Get("status"), Label: q.Get("label"), Group: strings.TrimRight(q.Get("group"), "/"), Q: q.Get("q"),
		Statuses: []string{StatusRunning, StatusDeploying, StatusSuspended, StatusWaiting, StatusDelayed},
		Counts:   map[string]int{},
		Index:    v.index,
	}
	d.CanCreate = canCreate
	d.AnyFilter = d.Status != "" || d.Label != "" || d.Group != "" || d.Q != ""
	d.FilterURL = func(key, val string) string {
		v := url.Values{}
		for _, k := range []string{"status", "label", "group", "q"} {
			if x := q.Get(k); x != "" && k != key {
				v.Set(k, x)
			}
		}
		if val != "" {
			v.Set(key, val)
		}
		if len(v) == 0 {
			return "/ui/apps"
		}
		return "/ui/apps?" + v.Encode()
	}
	d.Tree = &groupNode{Path: "/", Name: "/", Current: d.Group == ""}
	d.Total = len(all)
	rows := make([]*appRow, 0, len(all))
	for i := range all {
		a := &all[i]
		addToTree(d.Tree, a.ID, d.Group)
		if d.Group != "" && !strings.HasPrefix(a.ID, d.Group+"/") {
			continue
		}
		if !labelMatch(d.Label, a.Labels) || (d.Q != "" && !strings.Contains(a.ID, d.Q)) {
			continue
		}
		d.Counts[a.Status]++
		if d.Status != "" && a.Status != d.Status {
			continue
		}
		rows = append(rows, a)
	}
	d.Rows = rows
	shown := rows
	if limit >= 0 && len(rows) > limit {
		shown = rows[:limit]
		d.More = true
		all := url.Values{}
		for k, vs := range q {
			all[k] = vs
		}
		all.Set("all", "1")
		d.AllURL = "/ui/apps?" + all.Encode()
	}
	if len(shown) > 0 {
		d.LastID = shown[len(shown)-1].ID
	}
	d.RowsHTML = appRowsHTML(shown)
	return d
}

// appRowsHTML joins the rows' HTML.
func appRowsHTML(rows []*appRow) template.HTML {
	n := 0
	for i := range rows {
		n += len(rows[i].HTML)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range rows {
		b.WriteString(rows[i].HTML)
	}
	return template.HTML(b.String())
}

// appendRows appends the rows' HTML to b.
func appendRows(b []byte, rows []*appRow) []byte {
	n := len(b)
	for i := range rows {
		n += len(rows[i].HTML)
	}
	b = slices.Grow(b, n-len(b))
	for i := range rows {
		b = append(b, rows[i].HTML...)
	}
	return b
}

// writeRow writes one table row directly: with a thousand apps,
// html/template's reflection would take most of the page's time. Every
// value is escaped; links are built from escaped path segments.
func writeRow(b *strings.Builder, a *appRow) {
	esc := html.EscapeString
	{
		id := esc(a.ID)
		b.WriteString(`<tr data-app="`)
		b.WriteString(id)
		b.WriteString(`"><td><a href="/ui/app`)
		b.WriteString(esc(pathEscape(a.ID)))
		b.WriteString(`">`)
		b.WriteString(id)
		b.WriteString(`</a></td><td><span class="st `)
		b.WriteString(strings.ToLower(a.Status))
		b.WriteString(`">`)
		b.WriteString(a.Status)
		b.WriteString(`</span></td><td class="n">`)
		b.WriteString(strconv.Itoa(a.Running))
		b.WriteString(" / ")
		b.WriteString(strconv.Itoa(a.Instances))
		b.WriteString(`</td><td>`)
		writeBar(b, a.Bar)
		b.WriteString(`</td><td class="n">`)
		b.WriteString(fmtNum(a.Cpus))
		b.WriteString(`</td><td class="n">`)
		b.WriteString(fmtNum(a.Mem))
		b.WriteString(" MiB</td></tr>\n")
	}
}

// writeBar writes a health bar: coloured spans whose widths are the
// bar's percentages (the "hbar" template, by hand). Spans lay out far
// cheaper than an SVG per row when a page has a thousand of them.
func writeBar(b *strings.Builder, h bar) {
	b.WriteString(`<span class="hbar" title="`)
	b.WriteString(html.EscapeString(h.Title))
	b.WriteString(`">`)
	for _, s := range h.Segs() {
		b.WriteString(`<i class="`)
		b.WriteString(s.Class)
		b.WriteString(`" style="width:`)
		b.WriteString(strconv.FormatFloat(s.W, 'f', -1, 64))
		b.WriteString(`%"></i>`)
	}
	b.WriteString(`</span>`)
}

// labelMatch: "" matches all, "KEY" needs the label, "KEY:VALUE" or
// "KEY=VALUE" its value.
func labelMatch(sel string, labels map[string]string) bool {
	if sel == "" {
		return true
	}
	k, v, hasV := strings.Cut(sel, ":")
	if !hasV {
		k, v, hasV = strings.Cut(sel, "=")
	}
	got, ok := labels[strings.TrimSpace(k)]
	return ok && (!hasV || got == strings.TrimSpace(v))
}

// addToTree counts app id under each of its groups.
func addToTree(root *groupNode, id, current string) {
	root.Count++
	segs := strings.Split(strings.Trim(id, "/"), "/")
	n := root
	for i := 0; i < len(segs)-1; i++ {
		p := "/" + strings.Join(segs[:i+1], "/")
		var next *groupNode
		for _, c := range n.Children {
			if c.Path == p {
				next = c
				break
			}
		}
		if next == nil {
			next = &groupNode{Path: p, Name: segs[i], Current: p == current}
			n.Children = append(n.Children, next)
		}
		next.Count++
		n = next
	}
}

// appPageData is the app screen.
type appPageData struct {
	App         api.AppInfo
	Status      string
	Bar         bar
	Tasks       []taskRow
	Deployments []deployRow
	Waiting     []string // the queue's why-not-placed, in words
	Versions    []string
	DefJSON     string
	CanWrite    bool
}

type taskRow struct {
	ID, Short, Host, Site, State, Health, Started, Ports, Message string
	Log                                                           string
}

type deployRow struct {
	ID, Actions string
	Step, Steps int
	Percent     int
	Detail      string
}

func (u *UI) appRoutes(w http.ResponseWriter, r *http.Request, s *session, rest string) {
	id := "/" + strings.Trim(rest, "/")
	if id == "/" {
		u.fail(w, r, s, http.StatusNotFound, "no app id in the address")
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Query().Has("edit"):
		u.editPage(w, r, s, id)
	case r.Method == http.MethodPost && r.URL.Query().Has("edit"):
		u.editPage(w, r, s, id)
	case r.Method == http.MethodGet && r.URL.Query().Has("diff"):
		u.diffPage(w, r, s, id)
	case r.Method == http.MethodGet:
		u.appPage(w, r, s, id)
	case r.Method == http.MethodPost:
		u.appAction(w, r, s, id)
	default:
		u.fail(w, r, s, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (u *UI) appPage(w http.ResponseWriter, r *http.Request, s *session, id string) {
	ctx := r.Context()
	var one struct {
		App api.AppInfo `json:"app"`
	}
	if err := u.getJSON(ctx, s, "/v2/apps"+pathEscape(id), &one); err != nil {
		u.failErr(w, r, s, err)
		return
	}
	a := one.App
	d := &appPageData{App: a, CanWrite: s.rules.canWriteApp(a.ID)}
	var queue struct {
		Queue []api.QueueItem `json:"queue"`
	}
	_ = u.getJSON(ctx, s, "/v2/queue?embed=lastUnusedOffers", &queue)
	var qe *queueEntry
	for _, it := range queue.Queue {
		if it.App.ID == a.ID {
			qe = &queueEntry{Count: it.Count, Delay: it.Delay}
			d.Waiting = whyNotPlaced(it)
		}
	}
	la := listApp{ID: a.ID, Instances: a.Instances, TasksRunning: a.TasksRunning, Deployments: a.Deployments}
	d.Status = appStatus(&la, qe)
	d.Bar = healthBar(a.Instances, a.TasksStaged, a.TasksRunning, a.TasksHealthy, a.TasksUnhealthy, len(a.HealthChecks) > 0)
	sort.Slice(a.Tasks, func(i, j int) bool { return a.Tasks[i].ID < a.Tasks[j].ID })
	// Marathon's task JSON has no site: the agent's node has it.
	siteOf := map[string]string{}
	if nodes, err := u.nodes(ctx, s); err == nil {
		for _, n := range nodes {
			siteOf[n.ID] = n.Site
		}
	}
	for _, t := range a.Tasks {
		if t.Site == "" {
			t.Site = siteOf[t.SlaveID]
		}
		d.Tasks = append(d.Tasks, newTaskRow(t, "app="+url.QueryEscape(a.ID)))
	}
	var deps []api.Deployment
	if err := u.getJSON(ctx, s, "/v2/deployments", &deps); err == nil {
		for _, dp := range deps {
			if !contains(dp.AffectedApps, a.ID) {
				continue
			}
			d.Deployments = append(d.Deployments, newDeployRow(dp, a))
		}
	}
	var vs struct {
		Versions []string `json:"versions"`
	}
	_ = u.getJSON(ctx, s, "/v2/apps"+pathEscape(id)+"/versions", &vs)
	d.Versions = vs.Versions
	u.render(w, r, s, "app", a.ID, d)
}

func newTaskRow(t api.Task, logQuery string) taskRow {
	row := taskRow{ID: t.ID, Short: shortTask(t.ID), Host: t.Host, Site: t.Site, State: strings.TrimPrefix(t.State, "TASK_"),
		Started: t.StartedAt, Message: t.Message}
	var ports []string
	for _, p := range t.Ports {
		ports = append(ports, strconv.Itoa(p))
	}
	row.Ports = strings.Join(ports, ", ")
	switch h, ok := t.Healthy(); {
	case !ok:
		row.Health = "-"
	case h:
		row.Health = "healthy"
	default:
		row.Health = "unhealthy"
	}
	row.Log = "/ui/logs/" + url.PathEscape(t.ID) + "?" + logQuery
	return row
}

// shortTask cuts an app's task id to its tail: "web.3f9e…" reads better in
// a narrow table; the full id is the link's title.
func shortTask(id string) string {
	if i := strings.LastIndex(id, "."); i >= 0 && len(id)-i > 9 {
		return id[:i+9]
	}
	return id
}

func newDeployRow(dp api.Deployment, a api.AppInfo) deployRow {
	var acts []string
	for _, ac := range dp.CurrentActions {
		acts = append(acts, ac.Action+" "+ac.App)
	}
	row := deployRow{ID: dp.ID, Actions: strings.Join(acts, ", "), Step: dp.CurrentStep, Steps: dp.TotalSteps}
	// Progress within the current step follows the app's healthy (or,
	// without health checks, running) instances against its target.
	up := a.TasksRunning
	if len(a.HealthChecks) > 0 {
		up = a.TasksHealthy
	}
	frac := 1.0
	if a.Instances > 0 {
		frac = min(float64(up)/float64(a.Instances), 1)
	}
	if dp.TotalSteps > 0 {
		done := float64(max(dp.CurrentStep-1, 0)) + frac
		row.Percent = int(100 * done / float64(dp.TotalSteps))
	}
	row.Detail = fmt.Sprintf("step %d of %d; %d of %d instances up", dp.CurrentStep, dp.TotalSteps, up, a.Instances)
	return row
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pathEscape escapes each segment of an app id, keeping the slashes.
func pathEscape(id string) string {
	segs := strings.Split(id, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// reasonWords says in words why offers were declined (Marathon's reasons).
var reasonWords = map[string]string{
	"InsufficientCpus":                "not enough free CPUs",
	"InsufficientMemory":              "not enough free memory",
	"InsufficientDisk":                "not enough free disk",
	"InsufficientGpus":                "not enough free GPUs",
	"InsufficientPorts":               "the ports it needs are taken or outside the agent's range",
	"UnfulfilledConstraint":           "its constraints rule the agent out",
	"UnfulfilledRole":                 "the agent's resource role is not one it accepts",
	"NoCapability":                    "the agent cannot run it (a capability such as docker is missing)",
	"NoCorrespondingReservationFound": "no reservation on the agent",
	"DeclinedScarceResources":         "the agent has scarce resources (GPUs) it does not use",
}

func reasonText(r string) string {
	if w, ok := reasonWords[r]; ok {
		return w
	}
	return r
}

// whyNotPlaced turns a queue item into sentences.
func whyNotPlaced(it api.QueueItem) []string {
	var out []string
	if it.Count > 0 {
		since := ""
		if it.Since != "" {
			since = " since " + it.Since
		}
		out = append(out, fmt.Sprintf("%d instance(s) waiting to be placed%s.", it.Count, since))
	}
	if it.Delay.TimeLeftSeconds > 0 && !it.Delay.Overdue {
		out = append(out, fmt.Sprintf("Launches are delayed for another %.0f s after recent failures (backoff).", it.Delay.TimeLeftSeconds))
	}
	sum := it.ProcessedOffersSummary
	if sum == nil || sum.ProcessedOffersCount == 0 {
		if it.Count > 0 {
			out = append(out, "No offer has been considered yet: no alive agent has free resources for it.")
		}
	} else {
		for _, rs := range sum.RejectSummaryLastOffers {
			if rs.Declined == 0 {
				continue
			}
			why := reasonText(rs.Reason)
			if rs.Reason == "UnfulfilledConstraint" && len(it.App.Constraints) > 0 {
				var cs []string
				for _, c := range it.App.Constraints {
					cs = append(cs, strings.Join(c, " "))
				}
				why += " (" + strings.Join(cs, "; ") + ")"
			}
			out = append(out, fmt.Sprintf("%d of %d recent offers declined: %s.", rs.Declined, rs.Processed, why))
		}
	}
	seen := map[string]bool{}
	for _, uo := range it.LastUnusedOffers {
		host := uo.Offer.Hostname
		if host == "" || seen[host] {
			continue
		}
		seen[host] = true
		var rs []string
		for _, x := range uo.Reason {
			rs = append(rs, reasonText(x))
		}
		site := ""
		if uo.Offer.Site != "" {
			site = " (site " + uo.Offer.Site + ")"
		}
		out = append(out, fmt.Sprintf("Node %s%s: %s.", host, site, strings.Join(rs, "; ")))
	}
	return out
}
