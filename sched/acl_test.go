package sched

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		name, body string
		wantErr    string // substring; "" means valid
	}{
		{"json", `{"apps": {"/team-a/*": "write", "/*": "read"}, "jobs": {"team-a-*": "write"}, "node": "read"}`, ""},
		{"yaml", "apps:\n  /team-a/*: write\njobs:\n  \"*\": read\noperator: write\nacl: read\n", ""},
		{"bad access", `{"apps": {"/x/*": "admin"}}`, `access "admin" is not deny, read or write`},
		{"unknown key json", `{"app": {"/x/*": "read"}}`, `unknown field "app"`},
		{"unknown key yaml", "nodes: read\n", "field nodes not found"},
		{"path without slash", `{"apps": {"team-a/*": "write"}}`, `Marathon paths start with '/'`},
		{"star inside", `{"jobs": {"a*b": "read"}}`, `'*' may only end a pattern`},
		{"bad global", `{"node": "yes"}`, `node: "yes" is not deny, read or write`},
		{"not yaml", "apps: [1, 2\n", "neither JSON nor valid YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicy("p", []byte(c.body))
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("want an error with %q, got %v", c.wantErr, err)
			}
		})
	}
	if _, err := ParsePolicy("bad name!", []byte(`{}`)); err == nil {
		t.Fatal("a policy name with '!' and a space was accepted")
	}
}

func TestPolicyMatching(t *testing.T) {
	pol, err := ParsePolicy("p", []byte(`{
		"apps": {"/team-a/*": "write", "/*": "read", "/team-a/secret/*": "deny", "/exact": "write"},
		"jobs": {"etl-*": "write", "*": "read"},
		"secrets": {"team-a/*": "read"}}`))
	if err != nil {
		t.Fatal(err)
	}
	a := compileAuthz(&ACLToken{ACLToken: api.ACLToken{Name: "alice"}}, []*api.ACLPolicy{pol})
	apps := []struct {
		id   string
		want Access
	}{
		{"/team-a/x", AccessWrite},
		{"/team-a", AccessWrite}, // the group itself
		{"/team-a/deep/er", AccessWrite},
		{"/team-ab/x", AccessRead}, // not under /team-a/
		{"/team-a/secret/db", AccessNone},
		{"/team-b/x", AccessRead},
		{"/exact", AccessWrite},
		{"/exact/child", AccessRead},
		{"/", AccessRead},
	}
	for _, c := range apps {
		if got := a.App(c.id); got != c.want {
			t.Errorf("App(%q) = %s, want %s", c.id, got, c.want)
		}
	}
	if a.Job("etl-load") != AccessWrite || a.Job("other") != AccessRead {
		t.Errorf("jobs: etl-load %s, other %s", a.Job("etl-load"), a.Job("other"))
	}
	if a.Secret("team-a/db") != AccessRead || a.Secret("team-b/db") != AccessNone {
		t.Errorf("secrets: team-a/db %s, team-b/db %s", a.Secret("team-a/db"), a.Secret("team-b/db"))
	}
	if a.NodeRights() != AccessNone || a.Operator() != AccessNone || a.ACL() != AccessNone || a.Full() {
		t.Error("a policy without node, operator and acl rules granted them")
	}
	// Two policies: the stronger grant of the same pattern wins.
	more, _ := ParsePolicy("q", []byte(`{"apps": {"/*": "write"}, "node": "read"}`))
	b := compileAuthz(&ACLToken{ACLToken: api.ACLToken{Name: "bob"}}, []*api.ACLPolicy{pol, more})
	if b.App("/team-b/x") != AccessWrite || b.NodeRights() != AccessRead {
		t.Errorf("merged: /team-b/x %s, node %s", b.App("/team-b/x"), b.NodeRights())
	}
	var open *Authz
	if !open.CanWriteApp("/anything") || open.ACL() != AccessWrite {
		t.Error("the open API (nil Authz) refused something")
	}
}

func TestTokenHashing(t *testing.T) {
	s1, acc1 := newSecret()
	s2, acc2 := newSecret()
	if len(s1) != 64 || s1 == s2 || acc1 == acc2 {
		t.Fatalf("secrets %q %q accessors %q %q", s1, s2, acc1, acc2)
	}
	sum := sha256.Sum256([]byte(s1))
	if hashSecret(s1) != hex.EncodeToString(sum[:]) || hashSecret(s1) == s1 {
		t.Fatal("the stored form is not the SHA-256 of the secret")
	}
}

func TestTokenFromRequest(t *testing.T) {
	cases := []struct {
		header, want string
		has          bool
	}{
		{"", "", false},
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"token=abc", "abc", true},
		{`token="abc"`, "abc", true},
		{api.BasicAuth("jenkins", "abc"), "abc", true},
		{api.BasicAuth("", "abc"), "abc", true},
		{"Basic !!!", "", true},
		{"Digest x", "", true},
	}
	for _, c := range cases {
		r, _ := http.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		got, has := tokenFromRequest(r)
		if got != c.want || has != c.has {
			t.Errorf("%q: got %q %v, want %q %v", c.header, got, has, c.want, c.has)
		}
	}
}

func TestSecretSealing(t *testing.T) {
	key, err := DeriveSecretsKey("cluster-token")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := sealSecret(key, "db", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("the sealed value contains the plain value")
	}
	if v, err := openSecret(key, "db", sealed); err != nil || string(v) != "hunter2" {
		t.Fatalf("open: %q %v", v, err)
	}
	if _, err := openSecret(key, "other", sealed); err == nil {
		t.Fatal("a sealed value opened under another name")
	}
	other, _ := DeriveSecretsKey("another-token")
	if _, err := openSecret(other, "db", sealed); err == nil {
		t.Fatal("a sealed value opened with another cluster's key")
	}
	if _, err := DeriveSecretsKey(""); err == nil {
		t.Fatal("a key was derived from no token")
	}
}

// syncBuffer is a log sink tests read while the master writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestACLOnMaster(t *testing.T) {
	logs := &syncBuffer{}
	key, _ := DeriveSecretsKey("tok")
	tm := startMasterWith(t, NewStaticMembers(agentNode("n1", 1, 1024)), func(c *MasterConfig) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		c.NodeSecret = "node-secret"
		c.SecretsKey = key
	})
	ctx := context.Background()
	anon := api.NewClient(tm.srv.URL)
	status := func(err error) int { return api.StatusCode(err) }

	// Open until bootstrap, and the master says so once at start.
	eventually(t, 5*time.Second, "the open-API line", func() bool { return strings.Contains(logs.String(), "the API is open") })
	if _, err := anon.Nodes(ctx); err != nil {
		t.Fatalf("open API refused: %v", err)
	}
	boot, err := anon.ACLBootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.ACLBootstrap(ctx); status(err) != 401 {
		t.Fatalf("second anonymous bootstrap: %v", err)
	}
	mgmt := api.NewClient(tm.srv.URL)
	mgmt.Token = boot.SecretID
	if _, err := mgmt.ACLBootstrap(ctx); status(err) != 409 {
		t.Fatalf("second bootstrap: %v, want 409", err)
	}
	if _, err := anon.Nodes(ctx); status(err) != 401 {
		t.Fatalf("no token: %v, want 401", err)
	}
	var body api.ErrorBody
	resp, err := http.Get(tm.srv.URL + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(raw), `"message":"Not Authenticated`) {
		t.Fatalf("401 body: %d %s", resp.StatusCode, raw)
	}
	_ = body
	bad := api.NewClient(tm.srv.URL)
	bad.Token = strings.Repeat("0", 64)
	if _, err := bad.Nodes(ctx); status(err) != 401 {
		t.Fatalf("unknown token: %v, want 401", err)
	}
	if _, err := mgmt.ACLPolicyApply(ctx, "team", strings.NewReader("apps:\n  /team-a/*: write\nsecrets:\n  team-a/*: read\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.ACLPolicyApply(ctx, "bad", strings.NewReader(`{"apps": {"/x": "admin"}}`)); status(err) != 422 {
		t.Fatalf("bad policy: %v, want 422", err)
	}
	if _, err := mgmt.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "x", Policies: []string{"nope"}}); status(err) != 422 {
		t.Fatalf("token with an unknown policy: %v, want 422", err)
	}
	alice, err := mgmt.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "alice", Policies: []string{"team"}})
	if err != nil {
		t.Fatal(err)
	}
	ac := api.NewClient(tm.srv.URL)
	ac.Token = alice.SecretID
	self, err := ac.ACLTokenSelf(ctx)
	if err != nil || self.Name != "alice" || len(self.Rules) != 1 || self.Rules[0].Apps["/team-a/*"] != "write" {
		t.Fatalf("self: %+v %v", self, err)
	}
	if _, err := ac.Nodes(ctx); status(err) != 403 {
		t.Fatalf("team token on /v1/nodes: %v, want 403", err)
	}
	if _, err := ac.ACLTokens(ctx); status(err) != 403 {
		t.Fatalf("team token listing tokens: %v, want 403", err)
	}
	toks, err := mgmt.ACLTokens(ctx)
	if err != nil || len(toks) != 2 {
		t.Fatalf("tokens: %v %v", toks, err)
	}
	for _, tk := range toks {
		if tk.SecretID != "" {
			t.Fatal("a token listing shows a secret")
		}
	}
	if err := mgmt.ACLTokenDelete(ctx, boot.AccessorID); status(err) != 409 {
		t.Fatalf("deleting the last management token: %v, want 409", err)
	}

	// Secrets: write needs write on the name; values never come back.
	const value = "s3cr3t-value-4711"
	if err := ac.SecretPut(ctx, "team-a/db", strings.NewReader(value)); status(err) != 403 {
		t.Fatalf("team token writing a secret: %v, want 403", err)
	}
	if err := mgmt.SecretPut(ctx, "team-a/db", strings.NewReader(value)); err != nil {
		t.Fatal(err)
	}
	if err := mgmt.SecretPut(ctx, "team-b/db", strings.NewReader(value)); err != nil {
		t.Fatal(err)
	}
	list, err := ac.Secrets(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "team-a/db" {
		t.Fatalf("team secrets: %+v %v", list, err)
	}
	e, _ := tm.Store().Get(TableSecrets, "team-a/db")
	if bytes.Contains(e.Value.(*SecretRecord).Sealed, []byte(value)) {
		t.Fatal("the store keeps the value in clear")
	}
	if v, err := tm.secretValue("team-a/db"); err != nil || string(v) != value {
		t.Fatalf("secret value: %q %v", v, err)
	}

	// A node (the node secret) reads the state; people without node rights do not.
	node := api.NewClient(tm.srv.URL)
	node.Token = "node-secret"
	if _, err := node.Watch(ctx, 0, 0); err != nil {
		t.Fatalf("node watch: %v", err)
	}
	if _, err := ac.Watch(ctx, 0, 0); status(err) != 403 {
		t.Fatalf("team token watch: %v, want 403", err)
	}

	// Audit lines name the token, never a secret.
	out := logs.String()
	if !strings.Contains(out, "msg=audit") || !strings.Contains(out, "token=bootstrap") || !strings.Contains(out, "path=/v1/secrets/team-a/db") {
		t.Fatalf("audit lines missing:\n%s", out)
	}
	for _, s := range []string{boot.SecretID, alice.SecretID, value} {
		if strings.Contains(out, s) {
			t.Fatalf("the log contains a secret %q", s)
		}
	}
	if n := strings.Count(out, "the API is open"); n != 1 {
		t.Fatalf("the open-API line appears %d times", n)
	}
}

func TestSecretsNeedAKey(t *testing.T) {
	tm := startMaster(t, NewStaticMembers(agentNode("n1", 1, 1024)))
	err := tm.client.SecretPut(context.Background(), "db", strings.NewReader("x"))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusPreconditionFailed || !strings.Contains(ae.Body.Message, "join token") {
		t.Fatalf("secret put without a key: %v", err)
	}
}

// Deployment events carry Marathon's plan, which names its apps and pods
// only in its steps: a token that reads /team-a/* sees the deployments of
// /team-a's apps and pods, and not those that touch anything else.
func TestDeploymentEventsVisibleToTokensOfTheirApps(t *testing.T) {
	pol, err := ParsePolicy("p", []byte(`{"apps": {"/team-a/*": "read"}}`))
	if err != nil {
		t.Fatal(err)
	}
	a := compileAuthz(&ACLToken{ACLToken: api.ACLToken{Name: "alice"}}, []*api.ACLPolicy{pol})
	plan := func(actions string) api.Event {
		return api.Event{Type: "deployment_info", Data: []byte(`{"eventType":"deployment_info","plan":{"id":"d1","version":"v","steps":[{"actions":[` +
			actions + `]}]},"currentStep":{"actions":[` + actions + `]}}`)}
	}
	for _, c := range []struct {
		actions string
		want    bool
	}{
		{`{"action":"StartApplication","app":"/team-a/web"}`, true},
		{`{"action":"StartPod","pod":"/team-a/db"}`, true},
		{`{"action":"StartApplication","app":"/team-a/web"},{"action":"ScaleApplication","app":"/team-b/web"}`, false},
		{`{"action":"StopPod","pod":"/other"}`, false},
	} {
		if got := eventVisible(a, plan(c.actions)); got != c.want {
			t.Errorf("deployment of %s: visible %v, want %v", c.actions, got, c.want)
		}
	}
}
