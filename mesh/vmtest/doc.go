// Package vmtest runs weft's kernel WireGuard path where this machine's
// kernel cannot: inside a VM. It boots Debian's own kernel (the package
// linux-image-amd64 names, unpacked by scripts/deps.sh) under
// qemu-system-x86_64 with software emulation, from an initramfs it writes
// itself: busybox-static, iproute2's ip, the kernel modules WireGuard needs
// (resolved through modules.dep), and static weft and test binaries. The
// serial console comes back line by line; /init prints one
// "VMTEST RESULT NAME PASS|FAIL" line per suite it runs.
//
// TestKernelWireGuardVM (vm_test.go) is the harness `make test` runs; the
// TestGuest* cases (guest_test.go) are what runs inside the VM, and skip
// anywhere else. bench/kernelwg uses the same harness for throughput.
//
// vmtest imports no weft package: it drives the weft binary.
package vmtest
