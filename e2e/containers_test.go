package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/mesh/meshtest"
	"github.com/weftnet/weft/sched/api"
)

// scratchImage builds an image FROM scratch around the static ctrsrv
// binary (no registry is reachable) and removes it when the test ends.
func scratchImage(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker socket at /var/run/docker.sock")
	}
	if err := exec.Command("docker", "version").Run(); err != nil {
		t.Skipf("the Docker Engine does not answer: %v", err)
	}
	ctxDir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", filepath.Join(ctxDir, "ctrsrv"), "./testdata/ctrsrv")
	build.Dir = filepath.Dir(file)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ctrsrv: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY ctrsrv /ctrsrv\nENTRYPOINT [\"/ctrsrv\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("weft-e2e-%d:latest", time.Now().UnixNano())
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v %s", err, out)
	}
	t.Cleanup(func() {
		// Containers of this image first (an agent that died leaves them).
		ids, _ := exec.Command("docker", "ps", "-aq", "--filter", "ancestor="+tag).Output()
		for _, id := range strings.Fields(string(ids)) {
			_ = exec.Command("docker", "rm", "-f", id).Run()
		}
		_ = exec.Command("docker", "rmi", "-f", tag).Run()
	})
	return tag
}

// A Docker app on the container network `weft` gets its own overlay
// address on one site and is reached from another site by that address
// and by its name.
func TestContainerOnWeftNetworkReachedFromAnotherSite(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed (Debian dnsutils; make test installs it)")
	}
	image := scratchImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := startTwoSites(t, ctx, nil, func(nodes string) error {
		if !strings.Contains(nodes, `"docker"`) {
			return fmt.Errorf("no agent with the docker capability yet: %s", nodes)
		}
		return nil
	})
	m1h, a1, m1IP, base := s.m1h, s.a1, s.m1IP, s.api
	def := fmt.Sprintf(`{"id":"/pentaho/biserver","cpus":0.1,"mem":32,"instances":1,
		"container":{"type":"DOCKER","docker":{"image":%q},"portMappings":[{"containerPort":8080,"name":"http"}]},
		"networks":[{"mode":"container","name":"weft"}],
		"healthChecks":[{"protocol":"HTTP","path":"/","portIndex":0,"gracePeriodSeconds":30,"intervalSeconds":1,"timeoutSeconds":1,"maxConsecutiveFailures":3,"delaySeconds":0}]}`, image)
	if code, b, err := hostAPI(ctx, m1h, "PUT", base+"/v2/apps/pentaho/biserver", []byte(def)); err != nil || code/100 != 2 {
		t.Fatalf("PUT: %d %s %v", code, b, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _, _ = hostAPI(c, m1h, "DELETE", base+"/v2/apps/pentaho/biserver?force=true", nil)
		_ = meshtest.Eventually(c, 15*time.Second, func() error {
			_, b, err := hostAPI(c, m1h, "GET", base+"/v2/tasks", nil)
			if err != nil || strings.Contains(string(b), "pentaho") {
				return fmt.Errorf("tasks left")
			}
			return nil
		})
	})

	// RUNNING and healthy, with its own address from a1's block.
	var task api.Task
	if err := meshtest.Eventually(ctx, 90*time.Second, func() error {
		_, b, err := hostAPI(ctx, m1h, "GET", base+"/v2/apps/pentaho/biserver", nil)
		if err != nil {
			return err
		}
		var out struct {
			App api.AppInfo `json:"app"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return err
		}
		if len(out.App.Tasks) != 1 {
			return fmt.Errorf("%d tasks; last failure: %+v", len(out.App.Tasks), out.App.LastTaskFailure)
		}
		task = out.App.Tasks[0]
		if task.State != api.TaskRunning || len(task.IPAddresses) == 0 {
			return fmt.Errorf("task %s %s ips %v", task.ID, task.State, task.IPAddresses)
		}
		if ok, known := task.Healthy(); !ok || !known {
			return fmt.Errorf("task not healthy yet: %+v", task.HealthCheckResults)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- a1:\n%s", err, a1.p.Output())
	}
	ip := task.IPAddresses[0].IPAddress
	a1IP, _ := a1.overlayIP(ctx)
	if !strings.HasPrefix(ip, a1IP[:strings.LastIndex(a1IP, ".")+1]) || ip == a1IP {
		t.Fatalf("container address %s is not in a1's block (a1 is %s)", ip, a1IP)
	}

	// From the other site, over WireGuard: by address...
	if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ip+":8080/", nil)
		resp, err := m1h.HTTPClient().Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(b)) != task.ID {
			return fmt.Errorf("answer %q, want the task id %s", b, task.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// ...and by name.
	if err := meshtest.Eventually(ctx, 20*time.Second, func() error {
		out, err := m1h.Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+m1IP, "biserver-pentaho.marathon.pcm", "A")
		if err != nil {
			return fmt.Errorf("dig: %v %s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != ip {
			return fmt.Errorf("biserver-pentaho.marathon.pcm is %q, want the container's %s", got, ip)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The agent restarts: it re-adopts the running container (same task,
	// one container, same address) instead of starting another.
	s.restartAgent(t)
	if err := meshtest.Eventually(ctx, 60*time.Second, func() error {
		_, b, err := hostAPI(ctx, m1h, "GET", base+"/v2/apps/pentaho/biserver", nil)
		if err != nil {
			return err
		}
		var out struct {
			App api.AppInfo `json:"app"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return err
		}
		if len(out.App.Tasks) != 1 || out.App.Tasks[0].ID != task.ID || out.App.Tasks[0].State != api.TaskRunning {
			return fmt.Errorf("tasks after the agent restart: %+v; want only %s RUNNING", out.App.Tasks, task.ID)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ip+":8080/", nil)
		resp, err := m1h.HTTPClient().Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- a1:\n%s", err, s.a1.p.Output())
	}
	ids, _ := exec.Command("docker", "ps", "-q", "--filter", "ancestor="+image).Output()
	if n := len(strings.Fields(string(ids))); n != 1 {
		t.Fatalf("%d containers of the image run after the agent restart, want 1", n)
	}
}
