package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftnet/weft/sched/api"
)

const newAppJSON = `{
  "id": "/my-app",
  "cmd": "python3 -m http.server $PORT0",
  "instances": 1,
  "cpus": 0.1,
  "mem": 64,
  "portDefinitions": [{"port": 0, "name": "http"}],
  "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}]
}`

type editData struct {
	ID      string // "" when creating
	JSON    string
	Message string
	Lines   []jsonLine // the submitted JSON with the API's errors beside their fields
	Other   []api.ErrorDetail
}

// editPage creates (id "") or edits an app as JSON. A 4xx from the API is
// shown next to the JSON field its path names.
func (u *UI) editPage(w http.ResponseWriter, r *http.Request, s *session, id string) {
	d := &editData{ID: id}
	title := "New application"
	if id != "" {
		title = "Edit " + id
	}
	if r.Method == http.MethodGet {
		if id == "" {
			d.JSON = newAppJSON
		} else {
			var one struct {
				App api.App `json:"app"`
			}
			if err := u.getJSON(r.Context(), s, "/v2/apps"+pathEscape(id), &one); err != nil {
				u.failErr(w, r, s, err)
				return
			}
			one.App.Version, one.App.VersionInfo = "", nil
			b, _ := json.MarshalIndent(one.App, "", "  ")
			d.JSON = string(b)
		}
		u.render(w, r, s, "edit", title, d)
		return
	}
	d.JSON = r.PostFormValue("json")
	method, path := http.MethodPost, "/v2/apps"
	if id != "" {
		method, path = http.MethodPut, "/v2/apps"+pathEscape(id)
	}
	code, body := u.call(r.Context(), s, method, path, []byte(d.JSON))
	if code/100 == 2 {
		target := id
		if target == "" {
			var created struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(body, &created)
			target = created.ID
		}
		http.Redirect(w, r, "/ui/app"+pathEscape(target), http.StatusSeeOther)
		return
	}
	var eb api.ErrorBody
	_ = json.Unmarshal(body, &eb)
	d.Message = fmt.Sprintf("%d: %s", code, eb.Message)
	if eb.Message == "" {
		d.Message = fmt.Sprintf("%d: %s", code, strings.TrimSpace(string(body)))
	}
	d.Lines, d.Other = annotate([]byte(d.JSON), eb.Details)
	u.render(withCode(w, code), r, s, "edit", title, d)
}

// jsonLine is one line of re-indented JSON and the errors for the field
// it starts.
type jsonLine struct {
	Text   string
	Path   string
	Errors []string
}

// annotate re-indents raw (one field a line) and puts each error detail
// beside the line of the field its path names ("/cpus",
// "/portDefinitions(0)/port"). A path with no line of its own (a missing
// field) goes to its nearest ancestor that has one; details that fit
// nowhere, or JSON that does not parse, are returned as other.
func annotate(raw []byte, details []api.ErrorDetail) ([]jsonLine, []api.ErrorDetail) {
	lines, err := jsonLines(raw)
	if err != nil {
		return nil, details
	}
	at := map[string]int{}
	for i, l := range lines {
		if _, ok := at[l.Path]; !ok {
			at[l.Path] = i
		}
	}
	var other []api.ErrorDetail
	for _, d := range details {
		p := d.Path
		if p == "" {
			p = "/"
		}
		for {
			if i, ok := at[p]; ok && p != "/" {
				lines[i].Errors = append(lines[i].Errors, d.Errors...)
				break
			}
			j := strings.LastIndexAny(p, "/(")
			if j <= 0 {
				other = append(other, d)
				break
			}
			p = p[:j]
		}
	}
	return lines, other
}

// jsonLines walks raw's tokens and writes one line per scalar or bracket,
// each with the Marathon-style path of the value it starts.
func jsonLines(raw []byte) ([]jsonLine, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out []jsonLine
	var walk func(path, prefix string, depth int) error
	ind := func(d int) string { return strings.Repeat("  ", d) }
	scalar := func(t json.Token) string {
		b, _ := json.Marshal(t)
		return string(b)
	}
	walk = func(path, prefix string, depth int) error {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'):
			out = append(out, jsonLine{Text: ind(depth) + prefix + "{", Path: path})
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := k.(string)
				kb, _ := json.Marshal(key)
				if err := walk(strings.TrimSuffix(path, "/")+"/"+key, string(kb)+": ", depth+1); err != nil {
					return err
				}
				if dec.More() {
					out[len(out)-1].Text += ","
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			out = append(out, jsonLine{Text: ind(depth) + "}", Path: path + "#end"})
		case json.Delim('['):
			out = append(out, jsonLine{Text: ind(depth) + prefix + "[", Path: path})
			for i := 0; dec.More(); i++ {
				if err := walk(path+"("+strconv.Itoa(i)+")", "", depth+1); err != nil {
					return err
				}
				if dec.More() {
					out[len(out)-1].Text += ","
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			out = append(out, jsonLine{Text: ind(depth) + "]", Path: path + "#end"})
		default:
			out = append(out, jsonLine{Text: ind(depth) + prefix + scalar(t), Path: path})
		}
		return nil
	}
	if err := walk("/", "", 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return out, nil
}

// appAction runs scale, restart, suspend or delete. Each needs a second,
// confirming POST (confirm=yes) from the page that says what will happen.
func (u *UI) appAction(w http.ResponseWriter, r *http.Request, s *session, id string) {
	verb := r.PostFormValue("action")
	var method, path, what string
	var body []byte
	switch verb {
	case "scale":
		n, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("instances")))
		if err != nil || n < 0 {
			u.fail(w, r, s, http.StatusBadRequest, "instances must be a whole number, 0 or more")
			return
		}
		method, path, body = http.MethodPut, "/v2/apps"+pathEscape(id), []byte(fmt.Sprintf(`{"instances":%d}`, n))
		what = fmt.Sprintf("Scale %s to %d instance(s)?", id, n)
	case "suspend":
		method, path, body = http.MethodPut, "/v2/apps"+pathEscape(id), []byte(`{"instances":0}`)
		what = fmt.Sprintf("Suspend %s? All its tasks are stopped; its definition is kept.", id)
	case "restart":
		method, path = http.MethodPost, "/v2/apps"+pathEscape(id)+"/restart"
		what = fmt.Sprintf("Restart %s? Every task is replaced by a rolling deployment.", id)
	case "delete":
		method, path = http.MethodDelete, "/v2/apps"+pathEscape(id)
		what = fmt.Sprintf("Delete %s? Its tasks are stopped and its definition and history are removed.", id)
	default:
		u.fail(w, r, s, http.StatusBadRequest, "unknown action "+strconv.Quote(verb)+": use scale, suspend, restart or delete")
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		u.render(w, r, s, "confirm", "Confirm", map[string]any{
			"Question": what, "Action": "/ui/app" + pathEscape(id), "Verb": verb,
			"Instances": r.PostFormValue("instances"), "Cancel": "/ui/app" + pathEscape(id),
		})
		return
	}
	if r.PostFormValue("force") == "yes" {
		path += "?force=true"
	}
	code, out := u.call(r.Context(), s, method, path, body)
	if code == http.StatusConflict && r.PostFormValue("force") != "yes" {
		// A deployment holds the app: say so, and offer to force it.
		msg := apiErr(path, code, out).(*httpError).Body.Message
		u.render(w, r, s, "confirm", "Confirm", map[string]any{
			"Question": what + " " + msg + ". Force it? The deployment is cancelled.", "Action": "/ui/app" + pathEscape(id),
			"Verb": verb, "Instances": r.PostFormValue("instances"), "Cancel": "/ui/app" + pathEscape(id), "Force": true,
		})
		return
	}
	if code/100 != 2 {
		u.failErr(w, r, s, apiErr(path, code, out))
		return
	}
	if verb == "delete" {
		http.Redirect(w, r, "/ui/apps", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/ui/app"+pathEscape(id), http.StatusSeeOther)
}

type diffData struct {
	ID       string
	Versions []string
	A, B     string
	Lines    []diffLine
}

type diffLine struct {
	Op   string // " ", "-", "+"
	Text string
}

// diffPage compares two versions of an app's definition.
func (u *UI) diffPage(w http.ResponseWriter, r *http.Request, s *session, id string) {
	ctx := r.Context()
	var vs struct {
		Versions []string `json:"versions"`
	}
	if err := u.getJSON(ctx, s, "/v2/apps"+pathEscape(id)+"/versions", &vs); err != nil {
		u.failErr(w, r, s, err)
		return
	}
	d := &diffData{ID: id, Versions: vs.Versions, A: r.URL.Query().Get("a"), B: r.URL.Query().Get("b")}
	if d.B == "" && len(vs.Versions) > 0 {
		d.B = vs.Versions[0]
	}
	if d.A == "" && len(vs.Versions) > 1 {
		d.A = vs.Versions[1]
	}
	if d.A == "" {
		d.A = d.B
	}
	load := func(v string) ([]string, error) {
		if v == "" {
			return nil, nil
		}
		var app api.App
		if err := u.getJSON(ctx, s, "/v2/apps"+pathEscape(id)+"/versions/"+pathEscape(v), &app); err != nil {
			return nil, err
		}
		app.Version, app.VersionInfo = "", nil
		b, _ := json.MarshalIndent(app, "", "  ")
		return strings.Split(string(b), "\n"), nil
	}
	a, err := load(d.A)
	if err != nil {
		u.failErr(w, r, s, err)
		return
	}
	b, err := load(d.B)
	if err != nil {
		u.failErr(w, r, s, err)
		return
	}
	d.Lines = lineDiff(a, b)
	u.render(w, r, s, "diff", "Versions of "+id, d)
}

// lineDiff is a longest-common-subsequence diff of two line lists.
func lineDiff(a, b []string) []diffLine {
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{" ", a[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", a[i]})
			i++
		default:
			out = append(out, diffLine{"+", b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, diffLine{"-", a[i]})
	}
	for ; j < m; j++ {
		out = append(out, diffLine{"+", b[j]})
	}
	return out
}
