package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// The [security] story for people and pipelines, on the real binary: ACLs
// bootstrapped once, a team token that writes and sees only its path, each
// of the three header forms, a secret from `weft secret put` in a task's
// environment and nowhere else, a process task running as nobody.
func TestACLTokensSecretsAndTaskUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The task user (nobody) must reach its sandbox: a data dir under a
	// traversable directory (t.TempDir's parents are 0700).
	base, err := os.MkdirTemp("", "weft-acl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	outDir := filepath.Join(base, "out")
	if err := os.MkdirAll(outDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(outDir, 0o777); err != nil { // the task, as nobody, writes here
		t.Fatal(err)
	}
	apiPort := freePort(t)
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	weft := startWeft(t, "up", upArgs(t, filepath.Join(base, "data"), apiPort)...)
	anon := api.NewClient(apiURL)
	waitLeader(t, ctx, anon)
	// The master says whether its API is open once it leads (polled every
	// 50 ms): a bootstrap sent sooner would rightly make it say "ACLs are
	// on" instead. Wait for the start line, as a user reads it first.
	openAt := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(weft.log)
		if strings.Contains(string(b), "the API is open") {
			break
		}
		if time.Now().After(openAt) {
			t.Fatalf("no open-API line 10 s after the master led:\n%s", tail(string(b), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}

	cli := func(token, stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, testbin.Weft(t), append([]string{"--api", apiURL}, args...)...)
		cmd.Env = append(os.Environ(), "WEFT_API_TOKEN="+token)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	secretOf := func(out string) string {
		m := regexp.MustCompile(`(?m)^SecretID:\s+([0-9a-f]{64})$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no SecretID in:\n%s", out)
		}
		return m[1]
	}
	var printed bytes.Buffer // everything the CLI printed
	run := func(token, stdin string, args ...string) string {
		t.Helper()
		out, err := cli(token, stdin, args...)
		printed.WriteString(out)
		if err != nil {
			t.Fatalf("weft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	admin := secretOf(run("", "", "acl", "bootstrap"))
	if out, err := cli(admin, "", "acl", "bootstrap"); err == nil || !strings.Contains(out, "already bootstrapped") {
		t.Fatalf("second bootstrap: %v\n%s", err, out)
	}
	pol := filepath.Join(base, "team-a.yaml")
	if err := os.WriteFile(pol, []byte("apps:\n  /team-a/*: write\nsecrets:\n  db: read\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(admin, "", "acl", "policy", "apply", "team-a", pol)
	alice := secretOf(run(admin, "", "acl", "token", "create", "--policy", "team-a", "--name", "alice"))
	const value = "pw-7c1e9a-never-shown"
	run(admin, value+"\n", "secret", "put", "db")
	if list := run(admin, "", "secret", "list"); !strings.Contains(list, "db") {
		t.Fatalf("secret list: %s", list)
	}

	// The event stream, read raw as a strict SSE client would.
	var evMu sync.Mutex
	var events bytes.Buffer
	evReq, _ := http.NewRequestWithContext(ctx, "GET", apiURL+"/v2/events", nil)
	evReq.Header.Set("Authorization", "Bearer "+admin)
	evResp, err := http.DefaultClient.Do(evReq)
	if err != nil || evResp.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, evResp)
	}
	go func() {
		sc := bufio.NewScanner(evResp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			evMu.Lock()
			events.WriteString(sc.Text() + "\n")
			evMu.Unlock()
		}
	}()
	t.Cleanup(func() { evResp.Body.Close() })

	var responses bytes.Buffer
	call := func(method, path, auth, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, apiURL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		responses.Write(b)
		return resp.StatusCode, string(b)
	}
	app := fmt.Sprintf(`{"cmd":"printf %%s \"$DB_PW\" > %[1]s/pw; id -u > %[1]s/uid; exec sleep 600","cpus":0.1,"mem":16,`+
		`"env":{"DB_PW":{"secret":"s1"}},"secrets":{"s1":{"source":"db"}}}`, outDir)
	plain := `{"cmd":"sleep 600","cpus":0.1,"mem":16}`

	// The three header forms, and the answers outside them.
	if code, body := call("PUT", "/v2/apps/team-a/x", "Bearer "+alice, app); code != 201 {
		t.Fatalf("alice (Bearer) PUT /team-a/x: %d %s", code, body)
	}
	if code, body := call("PUT", "/v2/apps/team-b/x", "token="+alice, plain); code != 403 || !strings.HasPrefix(body, `{"message":"Not Authorized`) {
		t.Fatalf("alice (token=) PUT /team-b/x: %d %s, want 403 with Marathon's body", code, body)
	}
	if code, body := call("PUT", "/v2/apps/team-b/y", api.BasicAuth("jenkins", admin), plain); code != 201 {
		t.Fatalf("admin (Basic) PUT /team-b/y: %d %s", code, body)
	}
	if code, body := call("GET", "/v2/apps", "token="+alice, ""); code != 200 || !strings.Contains(body, "/team-a/x") || strings.Contains(body, "team-b") {
		t.Fatalf("alice (token=) GET /v2/apps: %d %s", code, body)
	}
	if code, body := call("GET", "/v2/apps?embed=apps.tasks", api.BasicAuth("", alice), ""); code != 200 || strings.Contains(body, "team-b") {
		t.Fatalf("alice (Basic) GET /v2/apps?embed=apps.tasks: %d %s", code, body)
	}
	if code, body := call("GET", "/v2/apps", "Bearer "+admin, ""); code != 200 || !strings.Contains(body, "/team-b/y") {
		t.Fatalf("admin GET /v2/apps: %d %s", code, body)
	}
	if code, body := call("GET", "/v2/apps", "", ""); code != 401 || !strings.HasPrefix(body, `{"message":"Not Authenticated`) {
		t.Fatalf("no token: %d %s, want 401 with Marathon's body", code, body)
	}
	if code, _ := call("GET", "/v2/apps", "Bearer "+strings.Repeat("a", 64), ""); code != 401 {
		t.Fatalf("unknown token: %d, want 401", code)
	}

	// The secret reaches the task; the task runs as nobody when we are root.
	c := api.NewClient(apiURL)
	c.Token = admin
	eventually(t, 60*time.Second, "/team-a/x running and its files written", func() error {
		if err := wantRunning(ctx, c, "/team-a/x", 1); err != nil {
			return err
		}
		// The shell creates the file before id writes to it: wait for
		// the whole line.
		b, err := os.ReadFile(filepath.Join(outDir, "uid"))
		if err != nil {
			return err
		}
		if !strings.HasSuffix(string(b), "\n") {
			return fmt.Errorf("uid file not written yet: %q", b)
		}
		return nil
	})
	pw, _ := os.ReadFile(filepath.Join(outDir, "pw"))
	if string(pw) != value {
		t.Fatalf("the task's DB_PW is %q, want the secret's value", pw)
	}
	uid, _ := os.ReadFile(filepath.Join(outDir, "uid"))
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("no user nobody on this machine: %v", err)
		}
		if strings.TrimSpace(string(uid)) != nobody.Uid {
			t.Fatalf("the process task ran as uid %s, want nobody (%s)", strings.TrimSpace(string(uid)), nobody.Uid)
		}
	} else {
		t.Logf("not root: the task ran as uid %s (the agent's own user)", strings.TrimSpace(string(uid)))
	}

	// The value appears in no response, event, log line or CLI output.
	for _, p := range []string{"/v2/apps?embed=apps.tasks", "/v2/apps/team-a/x", "/v2/apps/team-a/x/versions", "/v2/tasks",
		"/v2/groups?embed=group.apps", "/v1/state", "/v2/deployments", "/v2/queue", "/v1/secrets"} {
		if code, _ := call("GET", p, "Bearer "+admin, ""); code != 200 {
			t.Errorf("GET %s: %d", p, code)
		}
	}
	run(admin, "", "app", "show", "/team-a/x")
	run(admin, "", "app", "list")
	run(admin, "", "acl", "token", "list")
	time.Sleep(500 * time.Millisecond) // the last events reach the stream
	evMu.Lock()
	evText := events.String()
	evMu.Unlock()
	logText, _ := os.ReadFile(weft.log)
	for what, text := range map[string]string{"an API response": responses.String(), "an event": evText, "the log": string(logText), "the CLI's output": printed.String()} {
		if strings.Contains(text, value) {
			t.Errorf("the secret's value appears in %s", what)
		}
	}
	for what, text := range map[string]string{"the log": string(logText), "an event": evText} {
		if strings.Contains(text, alice) || strings.Contains(text, admin) {
			t.Errorf("a token's secret appears in %s", what)
		}
	}
	// Audit and events name the token.
	if !regexp.MustCompile(`msg=audit .*token=alice .*method=PUT path=/v2/apps/team-a/x`).Match(logText) {
		t.Error("no audit line names alice's PUT of /team-a/x")
	}
	if !strings.Contains(evText, "event: api_post_event\nweft-token: alice\ndata: ") {
		t.Errorf("alice's api_post_event does not carry her token name; events:\n%s", tail(evText, 3000))
	}
	if n := strings.Count(string(logText), "the API is open"); n != 1 {
		t.Errorf("the open-API line appears %d times at start", n)
	}
}
