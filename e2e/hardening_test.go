package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// argValue returns the value of flag in a command line.
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// call sends one request to the API and returns its status and body.
func call(t *testing.T, api, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+api+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rss is a process's resident set in bytes.
func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// Every case of issue #13's "What is wrong today", sent to a real `weft up`
// under a file limit of 1024: each gets its status and message, weft stays
// up, and the app and job that were there stay intact. Then a runaway-prone
// job runs for 30 s with weft's RSS and raft.db flat, and the lb's
// connections are saturated while the master API answers within 100 ms.
func TestHardeningBadInputAgainstUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	apiPort := freePort(t)
	dataDir := filepath.Join(dir, "data")
	args := upArgs(t, dataDir, apiPort)
	weft := startCmd(t, "up", append([]string{"prlimit", "--nofile=1024:1024", "--", testbin.Weft(t)}, args...)...)
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	c := api.NewClient(addr)
	waitLeader(t, ctx, c)

	if _, err := c.PutApp(ctx, "/keep/app", []byte(`{"cmd":"exec sleep 600","cpus":0.1,"mem":16,"instances":1,"labels":{"team":"bi"}}`), false); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, addr, "POST", "/v1/scheduler/iso8601", `{"name":"keep","command":"true","schedule":"R/2030-01-01T00:00:00Z/PT1H"}`); code != 204 {
		t.Fatalf("job keep: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "the app running", func() error { return wantRunning(ctx, c, "/keep/app", 1) })
	intact := func(what string) {
		t.Helper()
		if code, body := call(t, addr, "GET", "/ping", ""); code != 200 {
			t.Fatalf("after %s: /ping %d %s", what, code, body)
		}
		if weft.exited() {
			t.Fatalf("weft exited after %s", what)
		}
		if err := wantRunning(ctx, c, "/keep/app", 1); err != nil {
			t.Fatalf("after %s: %v", what, err)
		}
		code, body := call(t, addr, "GET", "/v1/scheduler/job/keep", "")
		if code != 200 || !strings.Contains(body, `"schedule":"R/2030-01-01T00:00:00`) {
			t.Fatalf("after %s: job keep: %d %s", what, code, body)
		}
	}

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path, body string
			status                   int
			want                     string
		}{
			{"PT0.0001S", "POST", "/v1/scheduler/iso8601", `{"name":"tiny","command":"true","schedule":"R//PT0.0001S"}`, 400, "shorter than the minimum of 1s"},
			{"year 0001", "POST", "/v1/scheduler/iso8601", `{"name":"old","command":"true","schedule":"R/0001-01-01T00:00:00Z/PT1S"}`, 400, "outside the years 1970 to 2999"},
			{"huge repeat", "POST", "/v1/scheduler/iso8601", `{"name":"many","command":"true","schedule":"R99999999999/2030-01-01T00:00:00Z/PT1S"}`, 400, "above the limit of 2147483647"},
			{"7 MB label", "POST", "/v2/apps", `{"id":"/big","cmd":"true","labels":{"A":"` + strings.Repeat("x", 7<<20) + `"}}`, 413, "larger than 1048576 bytes"},
			{"2,000-character id", "POST", "/v2/apps", `{"id":"/` + strings.Repeat("a", 2000) + `","cmd":"true"}`, 422, `"path":"/id"`},
			{"a%2Fb", "PUT", "/v2/apps/a%2Fb", `{"cmd":"true"}`, 422, "%2F"},
			{"cpus 1e308", "POST", "/v2/apps", `{"id":"/x","cmd":"true","cpus":1e308}`, 422, `"path":"/cpus","errors":["got 1e+308, expected 4096.0 or less"]`},
			{"mem 1e18", "POST", "/v2/apps", `{"id":"/x","cmd":"true","mem":1e18}`, 422, `"path":"/mem"`},
			{"MAX_PER -1", "POST", "/v2/apps", `{"id":"/x","cmd":"true","constraints":[["hostname","MAX_PER","-1"]]}`, 422, "expected 1 or more"},
			{"label newline", "POST", "/v2/apps", `{"id":"/x","cmd":"true","labels":{"A":"a\nb"}}`, 422, "must not contain CR or LF"},
		} {
			code, body := call(t, addr, c.method, c.path, c.body)
			if code != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%s: %d %.300s; want %d with %q", c.name, code, body, c.status, c.want)
			}
			intact(c.name)
		}
	})

	t.Run("strict lb front", func(t *testing.T) {
		lbAddr := argValue(args, "--lb-http-addr")
		for name, head := range map[string]string{
			"space before colon": "Content-Length : 5\r\n\r\nhello",
			"obs-fold":           "X-A: a\r\n b\r\n\r\n",
			"xchunked":           "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
			"CL and TE":          "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"two lengths":        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
			"NUL in a value":     "X-A: a\x00b\r\n\r\n",
		} {
			conn, err := net.DialTimeout("tcp", lbAddr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: keep.example\r\n%s", head)
			line, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if !strings.HasPrefix(line, "HTTP/1.1 400 ") {
				t.Errorf("%s: lb answered %q (%v), want 400", name, line, err)
			}
		}
		intact("the lb's 400s")
	})

	t.Run("runaway-prone jobs stay bounded", func(t *testing.T) {
		start := time.Now().UTC().Format("2006-01-02T15:04:05Z")
		for _, j := range []string{
			`{"name":"each-second","command":"true","schedule":"R2147483647/` + start + `/PT1S"}`,
			`{"name":"never-done","command":"exec sleep 600","schedule":"R2147483647/` + start + `/PT1S"}`,
		} {
			if code, body := call(t, addr, "POST", "/v1/scheduler/iso8601", j); code != 204 {
				t.Fatalf("%d %s", code, body)
			}
		}
		raftDB := filepath.Join(dataDir, "raft", "raft.db")
		time.Sleep(10 * time.Second) // warm up: first runs, caches, bolt's first growth
		rss0, db0 := rss(t, weft.cmd.Process.Pid), fileSize(t, raftDB)
		time.Sleep(30 * time.Second)
		rss1, db1 := rss(t, weft.cmd.Process.Pid), fileSize(t, raftDB)
		t.Logf("30 s of two PT1S jobs: RSS %d → %d MiB, raft.db %d → %d MiB", rss0>>20, rss1>>20, db0>>20, db1>>20)
		// The failure this guards against grew raft.db by ~9 MB/s and RSS
		// to an OOM kill within 90 s.
		if rss1-rss0 > 64<<20 {
			t.Errorf("RSS grew by %d MiB in 30 s", (rss1-rss0)>>20)
		}
		if db1-db0 > 32<<20 {
			t.Errorf("raft.db grew by %d MiB in 30 s", (db1-db0)>>20)
		}
		_, runs := call(t, addr, "GET", "/v1/scheduler/job/runs/never-done", "")
		if n := strings.Count(runs, `"state":"queued"`); n > 10 {
			t.Errorf("never-done has %d queued runs", n)
		}
		for _, name := range []string{"each-second", "never-done"} {
			t0 := time.Now()
			if code, body := call(t, addr, "DELETE", "/v1/scheduler/job/"+name, ""); code != 204 {
				t.Errorf("DELETE %s: %d %s", name, code, body)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("DELETE %s took %s", name, d)
			}
		}
		intact("the PT1S jobs")
	})

	t.Run("lb saturated, master API answers", func(t *testing.T) {
		// 1,500 connections against a file limit of 1,024: without the
		// lb's own limit (a quarter of the file limit here) they would
		// take every descriptor and the API could accept nothing.
		lbAddr := argValue(args, "--lb-http-addr")
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < 1500; i++ {
			conn, err := net.DialTimeout("tcp", lbAddr, time.Second)
			if err != nil {
				break // the backlog is full: saturated
			}
			conns = append(conns, conn)
		}
		if len(conns) < 300 {
			t.Fatalf("only %d connections to the lb", len(conns))
		}
		cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		var worst time.Duration
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			t0 := time.Now()
			resp, err := cl.Get("http://" + addr + "/v2/apps/keep/app")
			if err != nil {
				t.Fatalf("master API with the lb saturated: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("master API: %d", resp.StatusCode)
			}
			worst = max(worst, time.Since(t0))
		}
		t.Logf("%d connections held to the lb; slowest master API answer %s", len(conns), worst)
		if worst > 100*time.Millisecond {
			t.Errorf("the master API took %s with the lb saturated", worst)
		}
		intact("saturating the lb")
	})
}

// jobSuccesses is a Chronos job's successCount.
func jobSuccesses(t *testing.T, addr, name string) int64 {
	t.Helper()
	code, body := call(t, addr, "GET", "/v1/scheduler/job/"+name, "")
	if code != 200 {
		t.Fatalf("job %s: %d %s", name, code, body)
	}
	var j api.Job
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		t.Fatal(err)
	}
	return j.SuccessCount
}

// `weft up --safe` on the data dir of a weft whose job runs every second:
// nothing runs, `weft node list` says safe mode, the job can be deleted,
// and a normal start afterwards comes up without it.
func TestUpSafeModeLetsTheOperatorDeleteAJob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "data")
	apiPort := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	c := api.NewClient(addr)
	first := startWeft(t, "up", upArgs(t, dataDir, apiPort)...)
	waitLeader(t, ctx, c)
	if code, body := call(t, addr, "POST", "/v1/scheduler/iso8601", `{"name":"busy","command":"true","schedule":"R//PT1S"}`); code != 204 {
		t.Fatalf("%d %s", code, body)
	}
	eventually(t, 30*time.Second, "busy runs", func() error {
		if n := jobSuccesses(t, addr, "busy"); n < 2 {
			return fmt.Errorf("%d successes", n)
		}
		return nil
	})
	if !first.stop(20 * time.Second) {
		t.Fatal("weft did not stop on Ctrl-C")
	}

	safe := startWeft(t, "up-safe", append(upArgs(t, dataDir, apiPort), "--safe")...)
	waitLeader(t, ctx, c)
	before := jobSuccesses(t, addr, "busy")
	out, err := exec.CommandContext(ctx, testbin.Weft(t), "--api", addr, "node", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "safe mode: every framework is paused") {
		t.Fatalf("weft node list: %v\n%s", err, out)
	}
	time.Sleep(3 * time.Second)
	if after := jobSuccesses(t, addr, "busy"); after != before {
		t.Fatalf("busy ran in safe mode: %d → %d successes", before, after)
	}
	if code, body := call(t, addr, "DELETE", "/v1/scheduler/job/busy", ""); code != 204 {
		t.Fatalf("DELETE in safe mode: %d %s", code, body)
	}
	if !safe.stop(20 * time.Second) {
		t.Fatal("weft --safe did not stop on Ctrl-C")
	}

	startWeft(t, "up-again", upArgs(t, dataDir, apiPort)...)
	waitLeader(t, ctx, c)
	if code, body := call(t, addr, "GET", "/v1/scheduler/job/busy", ""); code != 400 && code != 404 {
		t.Fatalf("busy after the safe-mode delete: %d %s", code, body)
	}
}
