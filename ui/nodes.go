package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"

	"github.com/weftnet/weft/sched/api"
)

// ---- task logs ----

// logsPage shows a task's stdout or stderr and follows it live (the script
// polls /ui/logdata with the offset it has read up to).
func (u *UI) logsPage(w http.ResponseWriter, r *http.Request, s *session, taskID string) {
	q := r.URL.Query()
	file := q.Get("file")
	if file != "stderr" {
		file = "stdout"
	}
	back := "/ui/apps"
	if a := q.Get("app"); a != "" {
		back = "/ui/app" + pathEscape(a)
	} else if j := q.Get("job"); j != "" {
		back = "/ui/job/" + url.PathEscape(j)
	}
	v := url.Values{}
	for _, k := range []string{"app", "job"} {
		if x := q.Get(k); x != "" {
			v.Set(k, x)
		}
	}
	v.Set("file", file)
	other := "stderr"
	if file == "stderr" {
		other = "stdout"
	}
	ov := url.Values{}
	for k := range v {
		ov.Set(k, v.Get(k))
	}
	ov.Set("file", other)
	u.render(w, r, s, "logs", "Logs of "+taskID, map[string]any{
		"Task": taskID, "File": file, "Back": back,
		"Data":  "/ui/logdata/" + url.PathEscape(taskID) + "?" + v.Encode(),
		"Other": "/ui/logs/" + url.PathEscape(taskID) + "?" + ov.Encode(), "OtherName": other,
	})
}

// logData answers the log script: the bytes of the file from offset, with
// X-Log-Next naming the offset to ask for next. The task must be one the
// token may read (found through the API with the user's token).
func (u *UI) logData(w http.ResponseWriter, r *http.Request, s *session, taskID string) {
	ctx := r.Context()
	q := r.URL.Query()
	file := q.Get("file")
	if file != "stderr" {
		file = "stdout"
	}
	offset := int64(-16384) // the tail first
	if o := q.Get("offset"); o != "" {
		n, err := strconv.ParseInt(o, 10, 64)
		if err != nil {
			http.Error(w, "offset must be an integer", http.StatusBadRequest)
			return
		}
		offset = n
	}
	agents, err := u.taskAgents(ctx, s, taskID, q.Get("app"), q.Get("job"))
	if err != nil {
		code := http.StatusNotFound
		if he, ok := err.(*httpError); ok {
			code = he.Code
		}
		http.Error(w, err.Error(), code)
		return
	}
	var last error
	for _, addr := range agents {
		c, err := api.ReadSandbox(ctx, u.cfg.AgentClient, u.cfg.AgentScheme+"://"+addr, taskID, file, offset, 1<<20)
		if err != nil {
			last = fmt.Errorf("agent %s: %w", addr, err)
			continue
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Log-Next", strconv.FormatInt(c.Next(), 10))
		_, _ = w.Write(c.Data)
		return
	}
	if last == nil {
		last = fmt.Errorf("no agent holds a sandbox for task %s", taskID)
	}
	http.Error(w, last.Error(), http.StatusNotFound)
}

// taskAgents finds the agent API address(es) that may hold a task's
// sandbox: its own agent when the task is listed, else (a finished
// Chronos run) every alive agent. The task must belong to the app or job
// named, as the API shows it to this token.
func (u *UI) taskAgents(ctx context.Context, s *session, taskID, app, job string) ([]string, error) {
	var agentID string
	switch {
	case app != "":
		var ts struct {
			Tasks []api.Task `json:"tasks"`
		}
		if err := u.getJSON(ctx, s, "/v2/apps"+pathEscape(app)+"/tasks", &ts); err != nil {
			return nil, err
		}
		for _, t := range ts.Tasks {
			if t.ID == taskID {
				agentID = t.SlaveID
			}
		}
		if agentID == "" {
			return nil, fmt.Errorf("task %s is not a task of %s (it may have been replaced)", taskID, app)
		}
	case job != "":
		var runs []api.JobRun
		if err := u.getJSON(ctx, s, "/scheduler/job/runs/"+url.PathEscape(job), &runs); err != nil {
			return nil, err
		}
		found := false
		for _, run := range runs {
			found = found || run.TaskID == taskID
		}
		if !found {
			return nil, fmt.Errorf("task %s is not a run of job %s", taskID, job)
		}
	default:
		return nil, fmt.Errorf("say which app or job task %s belongs to (?app= or ?job=)", taskID)
	}
	nodes, err := u.nodes(ctx, s)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		if n.AgentAPI == "" {
			continue
		}
		if agentID != "" && n.ID == agentID {
			return []string{n.AgentAPI}, nil
		}
		if agentID == "" && n.Status == "alive" && len(out) < 32 {
			out = append(out, n.AgentAPI)
		}
	}
	if agentID != "" {
		return nil, fmt.Errorf("the agent of task %s is not a member any more", taskID)
	}
	return out, nil
}

// nodes lists the cluster's members: GET /v1/nodes.
func (u *UI) nodes(ctx context.Context, s *session) ([]api.Node, error) {
	var out struct {
		Nodes []api.Node `json:"nodes"`
	}
	err := u.getJSON(ctx, s, "/v1/nodes", &out)
	return out.Nodes, err
}

func (u *UI) agentGet(ctx context.Context, addr, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.cfg.AgentScheme+"://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	return u.cfg.AgentClient.Do(req)
}

// ---- nodes ----

type res struct{ Cpus, Mem, Disk float64 }

func (r *res) add(x api.Resources) { r.Cpus += x.Cpus; r.Mem += x.Mem; r.Disk += x.Disk }

type siteGroup struct {
	Site        string
	Nodes       []api.Node
	Used, Offer res
}

type nodesData struct {
	Sites       []*siteGroup
	Used, Offer res
	Count       int
}

// nodesPage lists nodes grouped by site with per-site and cluster totals.
func (u *UI) nodesPage(w http.ResponseWriter, r *http.Request, s *session) {
	nodes, err := u.nodes(r.Context(), s)
	if err != nil {
		u.failErr(w, r, s, err)
		return
	}
	u.render(w, r, s, "nodes", "Nodes", groupNodes(nodes))
}

func groupNodes(nodes []api.Node) *nodesData {
	d := &nodesData{Count: len(nodes)}
	by := map[string]*siteGroup{}
	for _, n := range nodes {
		site := n.Site
		if site == "" {
			site = "(no site)"
		}
		g := by[site]
		if g == nil {
			g = &siteGroup{Site: site}
			by[site] = g
			d.Sites = append(d.Sites, g)
		}
		g.Nodes = append(g.Nodes, n)
		g.Used.add(n.Used)
		g.Offer.add(n.Resources)
		d.Used.add(n.Used)
		d.Offer.add(n.Resources)
	}
	sort.Slice(d.Sites, func(i, j int) bool { return d.Sites[i].Site < d.Sites[j].Site })
	for _, g := range d.Sites {
		sort.Slice(g.Nodes, func(i, j int) bool { return g.Nodes[i].Name < g.Nodes[j].Name })
	}
	return d
}

// ---- mesh ----

// meshStatus is the part of a node's GET /v1/mesh/status the matrix needs
// (mesh.Status's JSON; ui does not import mesh).
type meshStatus struct {
	Node      string `json:"node"`
	Site      string `json:"site"`
	WireGuard bool   `json:"wireguard"`
	DataPlane string `json:"dataPlane"`
	Peers     []struct {
		Name         string  `json:"name"`
		Site         string  `json:"site"`
		Status       string  `json:"status"`
		Path         string  `json:"path"`
		Via          string  `json:"via"`
		HandshakeAge float64 `json:"handshakeAgeSeconds"`
		RTTMillis    float64 `json:"rttMillis"`
	} `json:"peers"`
}

type meshCell struct {
	Path    string // direct, relay, down, none (no overlay), self, unknown
	Class   string
	Text    string
	Title   string
	Latency string
	Shake   string
}

type meshRow struct {
	Node, Site string
	Known      bool
	Why        string // why this node's view is unknown
	DataPlane  string
	Cells      []meshCell
}

type meshData struct {
	Cols    []api.Node
	Sites   []siteSpan
	Rows    []meshRow
	Overlay bool
}

type siteSpan struct {
	Site string
	N    int
}

// meshPage asks every node's agent API for its mesh status and draws the
// site × node matrix: each row is one node's view of its peers. A node
// that cannot be asked shows as unknown, never guessed.
func (u *UI) meshPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	nodes, err := u.nodes(ctx, s)
	if err != nil {
		u.failErr(w, r, s, err)
		return
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].Site != nodes[j].Site {
			return nodes[i].Site < nodes[j].Site
		}
		return nodes[i].Name < nodes[j].Name
	})
	views := make([]*meshStatus, len(nodes))
	whys := make([]string, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i], whys[i] = u.nodeMesh(ctx, n)
		}()
	}
	wg.Wait()
	u.render(w, r, s, "mesh", "Mesh", buildMesh(nodes, views, whys))
}

// nodeMesh reads one node's mesh status: this node's in-process, others'
// through their agent API.
func (u *UI) nodeMesh(ctx context.Context, n api.Node) (*meshStatus, string) {
	var st meshStatus
	if n.Name == u.cfg.LocalNode && u.cfg.LocalMesh != nil {
		b, _ := json.Marshal(u.cfg.LocalMesh())
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, err.Error()
		}
		return &st, ""
	}
	if n.Status != "alive" {
		return nil, "node is " + n.Status
	}
	if n.AgentAPI == "" {
		return nil, "no agent API to ask"
	}
	resp, err := u.agentGet(ctx, n.AgentAPI, "/v1/mesh/status")
	if err != nil {
		return nil, "agent API unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Sprintf("agent API answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return nil, "reading its mesh status: " + err.Error()
	}
	if st.Node != n.Name {
		// e.g. an agent API advertised on loopback: another node answered.
		return nil, fmt.Sprintf("agent API %s answered as %q", n.AgentAPI, st.Node)
	}
	return &st, ""
}

// buildMesh lays the views out as a matrix, rows and columns in site order.
func buildMesh(nodes []api.Node, views []*meshStatus, whys []string) *meshData {
	d := &meshData{Cols: nodes}
	for _, n := range nodes {
		if k := len(d.Sites); k > 0 && d.Sites[k-1].Site == n.Site {
			d.Sites[k-1].N++
		} else {
			d.Sites = append(d.Sites, siteSpan{Site: n.Site, N: 1})
		}
	}
	for i, n := range nodes {
		row := meshRow{Node: n.Name, Site: n.Site, Why: whys[i]}
		v := views[i]
		if v != nil {
			row.Known = true
			row.DataPlane = v.DataPlane
			if v.WireGuard {
				d.Overlay = true
			} else {
				row.DataPlane = "no overlay"
			}
		}
		for _, col := range nodes {
			row.Cells = append(row.Cells, meshCellFor(n, col, v))
		}
		d.Rows = append(d.Rows, row)
	}
	return d
}

func meshCellFor(row, col api.Node, v *meshStatus) meshCell {
	if row.Name == col.Name {
		return meshCell{Path: "self", Class: "self", Text: "·"}
	}
	if v == nil {
		return meshCell{Path: "unknown", Class: "unknown", Text: "?", Title: "this node's view could not be read"}
	}
	for _, p := range v.Peers {
		if p.Name != col.Name {
			continue
		}
		c := meshCell{Path: p.Path, Class: p.Path}
		switch p.Path {
		case "direct":
			c.Text = "direct"
		case "relay":
			c.Text = "relay"
			if p.Via != "" {
				c.Text = "relay via " + p.Via
			}
		case "down":
			c.Text = "down"
		default:
			c.Text, c.Class = "gossip only", "none"
			if p.Status != "alive" {
				c.Text, c.Class = p.Status, "down"
			}
		}
		if p.RTTMillis >= 0 {
			c.Latency = strconv.FormatFloat(p.RTTMillis, 'f', 1, 64) + " ms"
		}
		switch {
		case p.HandshakeAge >= 0:
			c.Shake = strconv.FormatFloat(p.HandshakeAge, 'f', 0, 64) + " s ago"
		case p.Path == "direct" || p.Path == "relay" || p.Path == "down":
			c.Shake = "never"
		}
		c.Title = fmt.Sprintf("%s → %s: %s; gossip %s", row.Name, col.Name, c.Text, p.Status)
		return c
	}
	return meshCell{Path: "unknown", Class: "unknown", Text: "not seen", Title: row.Name + " does not know " + col.Name}
}
