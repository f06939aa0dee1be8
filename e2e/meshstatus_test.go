package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/sched/api"
)

// `weft mesh status` finds the agent API of a `weft up` on a free port by
// itself: from the data dir the node runs on, or, without it, from the
// master's node list.
func TestMeshStatusFindsUpsAgentAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	apiPort := freePort(t)
	startWeft(t, "up", upArgs(t, data, apiPort)...)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	waitLeader(t, ctx, api.NewClient(apiAddr))

	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, testbin.Weft(t), args...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	eventually(t, 20*time.Second, "mesh status through the data dir", func() error {
		out, err := run("mesh", "status", "--data-dir", data)
		if err != nil || !strings.Contains(out, "node ") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// No data dir to read: the master's node list names the local node.
	out, err := run("--api", apiAddr, "mesh", "status", "--data-dir", filepath.Join(dir, "elsewhere"))
	if err != nil || !strings.Contains(out, "node ") {
		t.Fatalf("mesh status through the master: %v\n%s", err, out)
	}
}
