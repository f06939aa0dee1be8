package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// heapInuse forces garbage collections through the profiler (weft up
// --pprof: /debug/pprof/heap?gc=1 runs one before answering; three clear
// sync.Pool's victim caches too) and returns go_memstats_heap_inuse_bytes
// from weft's /metrics.
func heapInuse(t *testing.T, addr string) int64 {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < 3; i++ {
		resp, err := hc.Get("http://" + addr + "/debug/pprof/heap?gc=1")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/debug/pprof/heap: %d (is --pprof on?)", resp.StatusCode)
		}
	}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "go_memstats_heap_inuse_bytes" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(v)
		}
	}
	t.Fatal("no go_memstats_heap_inuse_bytes in /metrics")
	return 0
}

// Issue #13's large labels: apps whose labels are at the size limits
// (docs/limits.md: 16 KiB a value, a 1 MiB body) are posted to a real
// `weft up`, run, are read through every view that keeps encodings (the
// app listing with and without tasks, /v1/state, deployments, the UI's
// apps page), and are deleted. Once they are gone and the views have been
// read again, the heap in use after forced collections must come back to
// within a bound of what it was before: a holder of the deleted labels
// (the raft log cache, the listing caches, ...) fails it.
func TestHardeningLargeLabelsMemoryReturned(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	apiPort := freePort(t)
	args := append(upArgs(t, filepath.Join(dir, "data"), apiPort), "--pprof")
	weft := startWeft(t, "up", args...)
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	c := api.NewClient(addr)
	waitLeader(t, ctx, c)

	views := func(what string) {
		t.Helper()
		for _, p := range []string{"/v2/apps", "/v2/apps?embed=apps.tasks", "/v2/apps?embed=apps.tasks&embed=apps.deployments", "/v1/state", "/v2/deployments", "/v2/tasks", "/v2/groups", "/ui/apps"} {
			if code, body := call(t, addr, "GET", p, ""); code != 200 {
				t.Fatalf("%s: GET %s: %d %.300s", what, p, code, body)
			}
		}
	}
	// A small app that stays, so every view has something to render.
	if _, err := c.PutApp(ctx, "/keep/small", []byte(`{"cmd":"exec sleep 600","cpus":0.01,"mem":8,"instances":1,"labels":{"team":"bi"}}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the small app running", func() error { return wantRunning(ctx, c, "/keep/small", 1) })
	views("baseline")
	base := heapInuse(t, addr)

	// 60 labels of 16,000 bytes: ~0.96 MB, just under the 1 MiB body limit.
	const apps = 8
	labels := map[string]string{}
	for k := 0; k < 60; k++ {
		labels[fmt.Sprintf("L%02d", k)] = strings.Repeat(string(rune('a'+k%26)), 16000)
	}
	stored := 0
	for i := 0; i < apps; i++ {
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("/big/a%d", i), "cmd": "exec sleep 600", "cpus": 0.01, "mem": 8, "instances": 1, "labels": labels})
		stored += len(b)
		if code, body := call(t, addr, "POST", "/v2/apps", string(b)); code != 201 {
			t.Fatalf("POST /big/a%d: %d %.300s", i, code, body)
		}
	}
	for i := 0; i < apps; i++ {
		id := fmt.Sprintf("/big/a%d", i)
		eventually(t, 60*time.Second, id+" running", func() error { return wantRunning(ctx, c, id, 1) })
	}
	views("loaded")
	loaded := heapInuse(t, addr)
	t.Logf("heap in use: %d MiB before, %d MiB with %d apps holding %.1f MB of labels", base>>20, loaded>>20, apps, float64(stored)/1e6)
	if loaded-base < int64(stored)/2 {
		t.Fatalf("the heap grew only %d KiB with %d bytes of labels stored: the measure does not see them", (loaded-base)>>10, stored)
	}

	for i := 0; i < apps; i++ {
		if code, body := call(t, addr, "DELETE", fmt.Sprintf("/v2/apps/big/a%d", i), ""); code != 200 {
			t.Fatalf("DELETE /big/a%d: %d %.300s", i, code, body)
		}
	}
	eventually(t, 60*time.Second, "the big apps, their tasks and deployments gone", func() error {
		st, err := c.Watch(ctx, 0, 0)
		if err != nil {
			return err
		}
		for _, a := range st.Apps {
			if strings.HasPrefix(a.ID, "/big/") {
				return fmt.Errorf("app %s still there", a.ID)
			}
		}
		for _, tk := range st.Tasks {
			if strings.HasPrefix(tk.AppID, "/big/") {
				return fmt.Errorf("task %s still there (%s)", tk.ID, tk.State)
			}
		}
		if len(st.Deployments) > 0 {
			return fmt.Errorf("%d deployments still running", len(st.Deployments))
		}
		return nil
	})
	views("after delete")
	after := heapInuse(t, addr)
	// The bound: a quarter of what was stored, plus 4 MiB for the
	// runtime's own slack. Before the fix ~5x what was stored stayed (the
	// raft log cache held every write, the listing caches every rendering).
	bound := int64(stored)/4 + 4<<20
	t.Logf("heap in use after delete: %d MiB (%+d KiB from before; bound %d KiB)", after>>20, (after-base)>>10, bound>>10)
	if after-base > bound {
		t.Errorf("heap in use after deleting the apps is %d KiB above what it was before them, more than %d KiB: the deleted labels are still held", (after-base)>>10, bound>>10)
	}
	if err := wantRunning(ctx, c, "/keep/small", 1); err != nil {
		t.Fatalf("the small app: %v", err)
	}
	if weft.exited() {
		t.Fatal("weft exited")
	}
}
