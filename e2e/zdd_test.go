package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// zddListener is one row of the lb's stats as marathon-lb's zdd.py reads
// it: the heading names the columns, each row's last (empty) field after
// the trailing comma is dropped, and a row must then have as many fields
// as the heading or zdd.py crashes.
type zddListener struct{ pxname, svname, status, qcur, scur string }

func zddStats(t *testing.T, cl *http.Client, admin string) ([]zddListener, error) {
	resp, err := cl.Get("http://" + admin + "/haproxy?stats;csv")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	heads := strings.Split(strings.TrimRight(strings.TrimLeft(lines[0], "# "), ",\n"), ",")
	col := map[string]int{}
	for i, h := range heads {
		col[h] = i
	}
	var out []zddListener
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		f = f[:len(f)-1]
		if len(f) != len(heads) {
			t.Fatalf("stats row has %d fields after dropping the last, heading %d (zdd.py's namedtuple fails):\n%s", len(f), len(heads), l)
		}
		if f[0] != "" && f[0][0] == '#' {
			continue
		}
		out = append(out, zddListener{f[col["pxname"]], f[col["svname"]], f[col["status"]], f[col["qcur"]], f[col["scur"]]})
	}
	return out, nil
}

// zddSvname is the HAProxy server name zdd.py expects for a task port:
// the host with dots as underscores, then the port (the host is the
// task's IP here).
func zddSvname(tk api.Task, port int) string {
	return strings.ReplaceAll(tk.Host, ".", "_") + "_" + strconv.Itoa(port)
}

// The protocol of marathon-lb's zdd.py against the real binary: a blue app
// serves a deployment group's port; the green app starts with one
// instance and the zdd labels; zdd reads /_haproxy_getpids and the stats
// CSV, waits for all listeners, for TARGET_INSTANCES of them UP, and for
// draining (MAINT) listeners with no sessions; finds the old tasks by their
// server names, kills them with scale, scales the green app up by half,
// and at the end deletes the blue app. A client hitting the group's port
// all along sees no failed request.
func TestZDDBlueGreenDeploy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n := startLBNode(t)
	waitLeader(t, ctx, n.c)
	sp, alt := freeServicePort(t), freeServicePort(t)
	const target = 3
	labels := func(extra map[string]string) map[string]string {
		l := map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_DEPLOYMENT_GROUP": "web",
			"HAPROXY_DEPLOYMENT_ALT_PORT": strconv.Itoa(alt), "HAPROXY_0_PORT": strconv.Itoa(sp)}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	blueDef := n.lbApp(t, "/web-blue", target, 0, labels(nil), nil,
		map[string]any{"portDefinitions": []map[string]any{{"port": sp, "name": "http"}}})
	n.deploy(t, ctx, "/web-blue", blueDef, target)

	// The client: a new connection per request to the group's port.
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for loadCtx.Err() == nil {
			resp, _, _, err := n.get(n.http1, fmt.Sprintf("127.0.0.1:%d", sp), "web", "/")
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				lastErr.Store(fmt.Sprintf("%v %v", err, resp))
			} else {
				ok.Add(1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	greenDef := n.lbApp(t, "/web-green", 1, 0, labels(map[string]string{
		"HAPROXY_DEPLOYMENT_STARTED_AT":       time.Now().Format("2006-01-02T15:04:05.000000"),
		"HAPROXY_DEPLOYMENT_TARGET_INSTANCES": strconv.Itoa(target),
	}), nil, map[string]any{"portDefinitions": []map[string]any{{"port": alt, "name": "http"}}})
	if _, err := n.c.PutApp(ctx, "/web-green", greenDef, false); err != nil {
		t.Fatalf("PUT green: %v", err)
	}

	px := fmt.Sprintf("web_%d", sp)
	do := func(method, path string, body any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		if _, err := n.c.Do(ctx, method, path, rd, nil); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	sawDraining := false
	deleted := false
	for deadline := time.Now().Add(3 * time.Minute); !deleted; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("zdd did not finish; stats:\n%s", n.getconfig())
		}
		green, err1 := n.c.App(ctx, "/web-green")
		blue, err2 := n.c.App(ctx, "/web-blue")
		if err1 != nil || err2 != nil {
			t.Fatalf("apps: %v %v", err1, err2)
		}
		if len(green.Deployments) > 0 {
			continue
		}
		// find_tasks_to_kill
		resp, err := n.http1.Get("http://" + n.adminAddr + "/_haproxy_getpids")
		if err != nil {
			t.Fatal(err)
		}
		pids, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(strings.Fields(string(pids))) != 1 {
			continue
		}
		all, err := zddStats(t, n.http1, n.adminAddr)
		if err != nil {
			t.Fatal(err)
		}
		var listeners []zddListener
		for _, l := range all {
			if l.pxname == px && l.svname != "BACKEND" && l.svname != "FRONTEND" {
				listeners = append(listeners, l)
			}
		}
		if len(listeners) != green.Instances+blue.Instances {
			continue
		}
		up, drained := 0, map[string]bool{}
		for _, l := range listeners {
			switch {
			case l.status == "UP":
				up++
			case l.status == "MAINT":
				sawDraining = true
				q, _ := strconv.Atoi("0" + l.qcur)
				s, _ := strconv.Atoi("0" + l.scur)
				if q == 0 && s == 0 {
					drained[l.svname] = true
				}
			}
		}
		if up < target || len(drained) == 0 {
			continue
		}
		var kill []string
		for _, tk := range blue.Tasks {
			for _, p := range tk.Ports {
				if drained[zddSvname(tk, p)] {
					kill = append(kill, tk.ID)
				}
			}
		}
		if green.Instances == target && len(kill) == blue.Instances {
			do("DELETE", "/v2/apps/web-blue", nil)
			deleted = true
			break
		}
		if len(kill) == 0 {
			t.Fatalf("draining listeners %v match no blue task's server name (tasks %+v)", drained, blue.Tasks)
		}
		do("POST", "/v2/tasks/delete?scale=true", map[string]any{"ids": kill})
		if green.Instances < target {
			next := int(math.Floor(float64(green.Instances) + float64(green.Instances+1)/2))
			if next >= blue.Instances {
				next = target
			}
			do("PUT", "/v2/apps/web-green", map[string]any{"instances": next})
		}
	}
	if !sawDraining {
		t.Fatal("no listener was ever MAINT: the old colour never drained")
	}
	eventually(t, 60*time.Second, "green serves alone", func() error {
		all, err := zddStats(t, n.http1, n.adminAddr)
		if err != nil {
			return err
		}
		up := 0
		for _, l := range all {
			if l.pxname == px && l.svname != "BACKEND" && l.svname != "FRONTEND" {
				if l.status != "UP" {
					return fmt.Errorf("listener %s %s", l.svname, l.status)
				}
				up++
			}
		}
		if up != target {
			return fmt.Errorf("%d listeners UP, want %d", up, target)
		}
		return nil
	})
	stopLoad()
	<-loadDone
	if failed.Load() != 0 || ok.Load() < 50 {
		t.Fatalf("during the deploy: %d requests ok, %d failed (last: %v)", ok.Load(), failed.Load(), lastErr.Load())
	}
	t.Logf("blue/green by zdd's protocol: %d requests, none failed", ok.Load())
}
