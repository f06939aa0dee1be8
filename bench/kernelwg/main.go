// Command kernelwg compares weft's two WireGuard data planes side by side
// inside one VM (mesh/vmtest: Debian's kernel under qemu, software
// emulation): one TCP stream over the overlay between two weft nodes on
// the kernel device, and between two on wireguard-go (--wg-userspace),
// with the bare veth for scale; two rounds in alternating order. It prints
// the medians, the kernel/userspace ratio and a one-line SUMMARY.
//
//	go run ./bench/kernelwg [-seconds 8]
//
// Emulation distorts both planes, and not equally: every guest
// instruction is translated, SIMD crypto most expensively, and the two
// nodes share the VM's 2 emulated CPUs. The ratio says which plane does
// less work per byte here, not what either does on real hardware.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/mesh/vmtest"
)

func main() {
	seconds := flag.Int("seconds", 8, "seconds per stream")
	cpu := flag.String("cpu", "max", "qemu -cpu model")
	flag.Parse()
	if err := run(*seconds, *cpu); err != nil {
		fmt.Println("SUMMARY kernelwg: benchmark failed:", err)
		os.Exit(1)
	}
}

func run(seconds int, cpu string) error {
	if why := vmtest.Missing(); why != "" {
		return fmt.Errorf("cannot boot the VM: %s", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := vmtest.FindKernel("")
	if err != nil {
		return err
	}
	mods, err := k.Modules("wireguard", "veth", "tun")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "weft-kernelwg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins, err := vmtest.Binaries(ctx, dir, "mesh/vmtest")
	if err != nil {
		return err
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	im := vmtest.Image{Modules: mods, Files: bins, Run: fmt.Sprintf(
		"export %s=%d\nsuite bench /bin/vmtest.test -test.v -test.timeout 14m -test.run '^TestVMBench$'\n", vmtest.BenchEnv, seconds)}
	if err := im.Write(initrd); err != nil {
		return err
	}
	fmt.Printf("kernel %s under qemu (TCG, 2 vCPUs, -cpu %s), %d s per stream\n", k.Version, cpu, seconds)
	con, err := vmtest.VM{Kernel: k, Initrd: initrd, CPUs: 2, MemoryMB: 1024, CPU: cpu}.Run(ctx, func(l string) { fmt.Println(l) })
	if err != nil {
		return err
	}
	if !con.Results["bench"] {
		return fmt.Errorf("the benchmark failed inside the VM (see above)")
	}
	mbps := map[string][]float64{}
	for _, l := range con.Lines {
		f := strings.Fields(l)
		if len(f) == 5 && f[0] == "VMBENCH" {
			v, err := strconv.ParseFloat(f[4], 64)
			if err == nil {
				mbps[f[1]] = append(mbps[f[1]], v)
			}
		}
	}
	kern, user, veth := median(mbps["kernel"]), median(mbps["userspace"]), median(mbps["veth"])
	if kern == 0 || user == 0 {
		return fmt.Errorf("no figures for both planes: %v", mbps)
	}
	fmt.Printf("\n%-28s %10s   %s\n", "one TCP stream, in the VM", "Mbit/s", "runs")
	fmt.Printf("%-28s %10.1f   %v\n", "veth (no overlay)", veth, mbps["veth"])
	fmt.Printf("%-28s %10.1f   %v\n", "weft pair, kernel WireGuard", kern, mbps["kernel"])
	fmt.Printf("%-28s %10.1f   %v\n", "weft pair, wireguard-go", user, mbps["userspace"])
	fmt.Printf("kernel / userspace: %.2fx  (software emulation distorts both; see the package doc)\n", kern/user)
	fmt.Printf("SUMMARY kernelwg: kernel/userspace %.2fx (%.1f vs %.1f Mbit/s, one stream, inside a TCG VM: emulation distorts both); veth %.1f Mbit/s\n", kern/user, kern, user, veth)
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
