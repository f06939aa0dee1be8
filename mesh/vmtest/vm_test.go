package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// guestModules are what the guest loads at boot: WireGuard (and what it
// needs), veth for the namespaces' underlay, tun for wireguard-go.
var guestModules = []string{"wireguard", "veth", "tun"}

// guestSuites is what /init runs, one `suite` each. mesh's own kernel pair
// test runs here because no CI kernel has the module.
const guestSuites = `
suite mesh-dataplane-kernel /bin/mesh.test -test.v -test.timeout 3m -test.run '^TestDataPlanePair$/^kernel$'
suite vmtest-guest /bin/vmtest.test -test.v -test.timeout 4m -test.run '^TestGuest'
`

// guestPasses are the go test lines the guest must print: each case ran
// and passed (a skip inside the VM is a failure).
var guestPasses = []string{
	"--- PASS: TestDataPlanePair/kernel",
	"--- PASS: TestGuestKernelPair",
	"--- PASS: TestGuestMixedPair",
	"--- PASS: TestGuestKernelPair/restart-over-own-leftover",
	"--- PASS: TestGuestKernelPair/leftover-of-another-identity-refused",
}

// TestKernelWireGuardVM boots Debian's kernel under qemu and runs, inside
// it, the kernel WireGuard cases: mesh's kernel pair test, a pair of weft
// nodes on the kernel device, a kernel/userspace pair, and a restart over
// a leftover kernel weft0. The console is this test's output.
func TestKernelWireGuardVM(t *testing.T) {
	if os.Getenv(GuestEnv) != "" {
		t.Skip("this is the guest")
	}
	if why := Missing(); why != "" {
		t.Skip("vmtest: " + why)
	}
	start := time.Now()
	k, err := FindKernel("")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.Modules(guestModules...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A cold build cache may take minutes here; that is not the VM's time.
	buildCtx, cancelBuild := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancelBuild()
	bins, err := Binaries(buildCtx, dir, "mesh", "mesh/vmtest")
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := (Image{Modules: mods, Files: bins, Run: guestSuites}).Write(initrd); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(initrd)
	t.Logf("kernel %s, modules %s, initramfs %d MiB, binaries ready in %v", k.Version, moduleNames(mods), st.Size()>>20, built.Round(time.Millisecond))

	vmStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	con, err := VM{Kernel: k, Initrd: initrd, CPUs: 2, MemoryMB: 1024}.Run(ctx, func(l string) { t.Log(l) })
	if err != nil {
		t.Fatalf("%v (qemu used %v of CPU in %v: a busy host slows the emulation)", err, con.CPU.Round(time.Millisecond), time.Since(vmStart).Round(time.Millisecond))
	}
	t.Logf("VM booted in %v (guest uptime %.1f s); VM ran %v using %v of CPU; test total %v",
		con.BootWall.Round(time.Millisecond), con.BootUptime, time.Since(vmStart).Round(time.Millisecond), con.CPU.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if !con.Done {
		t.Fatal("the guest's /init did not reach its end")
	}
	for _, s := range []string{"mesh-dataplane-kernel", "vmtest-guest"} {
		pass, ran := con.Results[s]
		switch {
		case !ran:
			t.Errorf("suite %s printed no result", s)
		case !pass:
			t.Errorf("suite %s failed in the VM", s)
		}
	}
	for name, pass := range con.Results {
		if !pass {
			t.Errorf("guest: %s failed", name)
		}
	}
	out := strings.Join(con.Lines, "\n")
	for _, want := range guestPasses {
		if !strings.Contains(out, want) {
			t.Errorf("the guest did not print %q", want)
		}
	}
}

func moduleNames(ms []Module) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}
