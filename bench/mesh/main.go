// Command mesh benchmarks weft's overlay side by side with its peers in one
// run: raw veth, a bare wireguard-go pair and weft's overlay (throughput
// with iperf3 when installed, else a built-in Go TCP sender; RTT), then
// formation time of 20 hosts in 3 sites plus 2 behind NAT, recovery from a
// link cut (relay, then direct) and from a partition, and trials of
// laptops behind NAT (two behind endpoint-independent NATs reach a direct
// path, two behind symmetric NATs the relay, one roams to a new NAT). It
// needs root and /dev/net/tun, and prints ratios, benchkit rows and a
// one-line SUMMARY.
//
//	go run ./bench/mesh [-partition 2m] [-seconds 8] [-runs 5] [-trials 20] [-only formation|nat]
//
// The measurements are a Go test (they use mesh/meshtest); this program
// runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

func main() {
	partition := flag.Duration("partition", 0, "how long the partition lasts (default 2m)")
	seconds := flag.Int("seconds", 0, "seconds per throughput run (default 8)")
	trials := flag.Int("trials", 0, "trials of each laptop-behind-NAT figure (default 20)")
	runs := flag.Int("runs", 0, "runs of the 22-node formation, each on a fresh testbed (default 5)")
	only := flag.String("only", "", "run only the formation (and idle cost) or only the NAT trials: formation|nat")
	flag.Parse()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	cmd := exec.Command("go", "test", "-count=1", "-timeout=30m", "-run", "^TestMeshBench$", "-v", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WEFT_MESH_BENCH=1")
	if *partition > 0 {
		cmd.Env = append(cmd.Env, "WEFT_MESH_BENCH_PARTITION="+partition.String())
	}
	if *runs > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("WEFT_MESH_BENCH_RUNS=%d", *runs))
	}
	if *trials > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("WEFT_MESH_BENCH_TRIALS=%d", *trials))
	}
	switch *only {
	case "":
	case "formation":
		cmd.Env = append(cmd.Env, "WEFT_MESH_BENCH_ONLY_FORMATION=1")
	case "nat":
		cmd.Env = append(cmd.Env, "WEFT_MESH_BENCH_ONLY_NAT=1")
	default:
		fmt.Println("SUMMARY mesh: -only wants formation or nat, not", *only)
		os.Exit(2)
	}
	if *seconds > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("WEFT_MESH_BENCH_SECONDS=%d", *seconds))
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("SUMMARY mesh: benchmark failed:", err)
		os.Exit(1)
	}
}
