package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GuestEnv is set (to "1") for every program the guest's /init runs, so
// tests that need what only the VM has fail there instead of skipping.
const GuestEnv = "WEFT_IN_VM"

// BenchEnv, set to a number of seconds, makes the guest's TestVMBench run
// (bench/kernelwg sets it).
const BenchEnv = "WEFT_VMTEST_BENCH_SECONDS"

// Missing says why a VM cannot be booted here ("" when it can).
func Missing() string {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return "needs linux/amd64 (the guest is Debian's amd64 kernel)"
	}
	var miss []string
	if _, err := lookPath("qemu-system-x86_64"); err != nil {
		miss = append(miss, "qemu-system-x86_64 (Debian: qemu-system-x86)")
	}
	if _, err := staticBusybox(); err != nil {
		miss = append(miss, err.Error())
	}
	if _, err := lookPath("ip"); err != nil {
		miss = append(miss, "ip (Debian: iproute2)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		miss = append(miss, "the go command (to build the guest's binaries)")
	}
	if _, err := FindKernel(""); err != nil {
		miss = append(miss, err.Error())
	}
	if len(miss) == 0 {
		return ""
	}
	return "needs " + strings.Join(miss, "; ") + " (scripts/deps.sh installs them)"
}

// VM is one qemu run: software emulation (TCG: no KVM is assumed), no
// devices but the serial console, no network.
type VM struct {
	Kernel   Kernel
	Initrd   string
	MemoryMB int // default 1024
	CPUs     int // default 2
	// CPU is qemu's -cpu model, default "max" (every feature TCG
	// emulates, so the crypto modules take their SIMD paths).
	CPU string
}

// Console is what the guest printed, as the host read it.
type Console struct {
	BootWall   time.Duration   // qemu start to /init's first line
	BootUptime float64         // the guest's uptime then (seconds)
	Results    map[string]bool // "VMTEST RESULT NAME PASS|FAIL"
	Done       bool            // /init reached its end
	CPU        time.Duration   // qemu's CPU time (user+system); wall time far above it means the host was busy
	Lines      []string
}

// Run boots the VM and calls line (if not nil) with each console line as
// it arrives, until the guest powers off or ctx ends. The Console is never
// nil, also with an error.
func (vm VM) Run(ctx context.Context, line func(string)) (*Console, error) {
	con := &Console{Results: map[string]bool{}}
	qemu, err := lookPath("qemu-system-x86_64")
	if err != nil {
		return con, err
	}
	mem, cpus := vm.MemoryMB, vm.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	cpu := vm.CPU
	if cpu == "" {
		cpu = "max"
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", "tcg", "-cpu", cpu, "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-serial", "stdio", "-monitor", "none",
		"-kernel", vm.Kernel.Image, "-initrd", vm.Initrd,
		// quiet: every console byte is slow under emulation.
		"-append", "console=ttyS0 quiet panic=-1 mitigations=off rdinit=/init",
	}
	// qboot boots a -kernel much faster than SeaBIOS.
	if bios := "/usr/share/qemu/qboot.rom"; fileExists(bios) {
		args = append(args, "-bios", bios)
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return con, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return con, fmt.Errorf("starting qemu: %w", err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		con.Lines = append(con.Lines, l)
		con.parse(l, time.Since(start))
		if line != nil {
			line(l)
		}
	}
	err = cmd.Wait()
	if ps := cmd.ProcessState; ps != nil {
		con.CPU = ps.UserTime() + ps.SystemTime()
	}
	switch {
	case ctx.Err() != nil:
		return con, fmt.Errorf("the VM did not power off in time: %w", ctx.Err())
	case err != nil:
		return con, fmt.Errorf("qemu: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return con, nil
}

func (con *Console) parse(l string, at time.Duration) {
	// A line may carry a kernel message in front of ours.
	i := strings.Index(l, "VMTEST ")
	if i < 0 {
		return
	}
	f := strings.Fields(l[i:])
	switch {
	case strings.HasPrefix(l[i:], bootedLine) && len(f) >= 3:
		con.BootWall = at
		con.BootUptime, _ = strconv.ParseFloat(f[2], 64)
	case strings.HasPrefix(l[i:], resultLine) && len(f) >= 4:
		con.Results[f[2]] = f[3] == "PASS"
	case strings.HasPrefix(l[i:], doneLine):
		con.Done = true
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Binaries builds what the guest runs, statically (CGO_ENABLED=0) and
// stripped, into dir: the weft command and the
// test binaries of the given packages (module paths relative to the
// module root, e.g. "mesh"). It returns guest path -> host path, the
// binaries under /bin as weft and NAME.test.
func Binaries(ctx context.Context, dir string, testPkgs ...string) (map[string]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	env := append(os.Environ(), "CGO_ENABLED=0")
	goCmd := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = root, env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return nil
	}
	// Stripped: the initramfs is copied and unpacked under emulation.
	weft := filepath.Join(dir, "weft")
	if err := goCmd("build", "-ldflags=-s -w", "-o", weft, "./cmd/weft"); err != nil {
		return nil, err
	}
	out["bin/weft"] = weft
	if len(testPkgs) > 0 {
		args := []string{"test", "-c", "-ldflags=-s -w", "-o", dir + "/"}
		for _, p := range testPkgs {
			args = append(args, "./"+p)
		}
		if err := goCmd(args...); err != nil {
			return nil, err
		}
		for _, p := range testPkgs {
			name := filepath.Base(p) + ".test"
			out["bin/"+name] = filepath.Join(dir, name)
		}
	}
	for g, h := range out {
		if !IsStatic(h) {
			return nil, fmt.Errorf("%s (for the guest's /%s) is not statically linked", h, g)
		}
	}
	return out, nil
}

// moduleRoot is the weft module's directory, from this source file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the source tree")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if !fileExists(filepath.Join(root, "go.mod")) {
		return "", fmt.Errorf("no go.mod in %s", root)
	}
	return root, nil
}
