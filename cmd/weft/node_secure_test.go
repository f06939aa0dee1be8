package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/mesh"
)

// resolve runs resolveToken under the node flags of role.
func resolve(t *testing.T, role, dataDir string, args ...string) (tok, logs string, err error) {
	t.Helper()
	var buf bytes.Buffer
	app := &cli.App{
		Flags: append(meshFlags(), tlsFlags(role)...),
		Action: func(c *cli.Context) error {
			n := &node{c: c, role: role, dataDir: dataDir, log: slog.New(slog.NewTextHandler(&buf, nil))}
			err := n.resolveToken()
			tok = n.token
			if err == nil && n.token != "" && c.String("token") != n.token {
				t.Errorf("--token is %q after resolving %q: the mesh would not get it", c.String("token"), n.token)
			}
			return err
		},
	}
	err = app.Run(append([]string{"weft"}, args...))
	return tok, buf.String(), err
}

func TestResolveToken(t *testing.T) {
	t.Setenv("WEFT_TOKEN", "")
	dir := t.TempDir()
	fileTok, _ := mesh.GenerateToken()
	argTok, _ := mesh.GenerateToken()
	envTok, _ := mesh.GenerateToken()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte(fileTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tok, logs, err := resolve(t, roleMaster, dir, "--token-file", file, "--token", argTok)
	if err != nil || tok != fileTok || strings.Contains(logs, "command line") {
		t.Errorf("--token-file: %q %v %s", tok, err, logs)
	}
	tok, logs, err = resolve(t, roleMaster, dir, "--token", argTok)
	if err != nil || tok != argTok || !strings.Contains(logs, "command line") {
		t.Errorf("--token: %q %v, want it with a warning; logs: %s", tok, err, logs)
	}
	t.Setenv("WEFT_TOKEN", envTok)
	tok, logs, err = resolve(t, roleAgent, dir)
	if err != nil || tok != envTok || strings.Contains(logs, "command line") {
		t.Errorf("WEFT_TOKEN: %q %v %s", tok, err, logs)
	}
	t.Setenv("WEFT_TOKEN", "")
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600)
	if _, _, err := resolve(t, roleMaster, dir, "--token-file", empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty --token-file: %v", err)
	}
	tok, logs, err = resolve(t, roleMaster, dir)
	if err != nil || tok != "" || !strings.Contains(logs, "no join token") {
		t.Errorf("no token on a master: %q %v %s", tok, err, logs)
	}
}

func TestUpKeepsItsToken(t *testing.T) {
	t.Setenv("WEFT_TOKEN", "")
	dir := t.TempDir()
	first, _, err := resolve(t, roleUp, dir)
	if err != nil || !strings.HasPrefix(first, "weft") {
		t.Fatalf("first start: %q %v", first, err)
	}
	st, err := os.Stat(filepath.Join(dir, tokenFileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", st, err)
	}
	again, _, err := resolve(t, roleUp, dir)
	if err != nil || again != first {
		t.Fatalf("second start: %q %v, want the token of the first %q", again, err, first)
	}
}
