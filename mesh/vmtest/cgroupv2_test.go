package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cgroupV2Suite mounts the unified hierarchy alone (as current
// distributions do; this host runs v1) and runs the agent's cgroup tests
// there: a process task over its memory limit killed and reported with
// Mesos's reason, a task within it running in its own group with the
// limit set, and the v1-only start path skipping.
const cgroupV2Suite = `
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup
grep cgroup /proc/mounts | sed 's/^/VMTEST MOUNT /'
echo "VMTEST CONTROLLERS $(cat /sys/fs/cgroup/cgroup.controllers)"
suite agent-cgroup-v2 /bin/agent.test -test.v -test.timeout 2m -test.run '^TestProcessTaskOverMemoryIsKilledWithReason$'
`

// TestCgroupV2VM boots Debian's kernel under qemu with only cgroup v2
// mounted and runs the agent's memory-limit test inside: the limit holds
// and the OOM kill is reported with its reason on a v2 kernel too.
func TestCgroupV2VM(t *testing.T) {
	if os.Getenv(GuestEnv) != "" {
		t.Skip("this is the guest")
	}
	if why := Missing(); why != "" {
		t.Skip("vmtest: " + why)
	}
	k, err := FindKernel("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	buildCtx, cancelBuild := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancelBuild()
	bins, err := Binaries(buildCtx, dir, "agent")
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := (Image{Files: bins, Run: cgroupV2Suite}).Write(initrd); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vmStart := time.Now()
	con, err := VM{Kernel: k, Initrd: initrd, CPUs: 2, MemoryMB: 1024}.Run(ctx, func(l string) { t.Log(l) })
	if err != nil {
		t.Fatalf("%v (qemu used %v of CPU in %v)", err, con.CPU.Round(time.Millisecond), time.Since(vmStart).Round(time.Millisecond))
	}
	t.Logf("VM ran %v using %v of CPU", time.Since(vmStart).Round(time.Millisecond), con.CPU.Round(time.Millisecond))
	out := strings.Join(con.Lines, "\n")
	if !strings.Contains(out, "VMTEST MOUNT none /sys/fs/cgroup cgroup2") || strings.Contains(out, "cgroup /sys/fs/cgroup/memory") {
		t.Errorf("the guest did not have cgroup v2 alone")
	}
	if pass, ran := con.Results["agent-cgroup-v2"]; !ran || !pass {
		t.Errorf("suite agent-cgroup-v2: ran %v, passed %v", ran, pass)
	}
	if !strings.Contains(out, "--- PASS: TestProcessTaskOverMemoryIsKilledWithReason") {
		t.Error("the agent's memory-limit test did not pass in the VM (a skip there is a failure)")
	}
}
