package vmtest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Image is what the initramfs holds and what its /init runs.
//
// Besides the given files it always carries busybox (static; /init is a
// busybox shell script), iproute2's ip with the shared libraries it links
// (busybox's ip has no netns), and the modules, loaded at boot in order.
type Image struct {
	Modules []Module
	// Files maps a path in the guest to a host file, copied with mode 0755.
	Files map[string]string
	// Run is shell run by /init once the system is up, in /tmp. It may
	// call `suite NAME COMMAND...`, which prints "VMTEST RESULT NAME PASS"
	// or "... FAIL". /init powers the VM off after it.
	Run string
}

// The lines /init prints for the host to read.
const (
	bootedLine = "VMTEST BOOTED" // followed by the guest's uptime in seconds
	resultLine = "VMTEST RESULT" // NAME PASS|FAIL ...
	doneLine   = "VMTEST DONE"
)

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/bin HOME=/tmp ` + GuestEnv + `=1 WEFT_BIN=/bin/weft
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "` + bootedLine + ` $(cut -d' ' -f1 /proc/uptime)"
for m in %s; do
	insmod /lib/modules/vmtest/$m.ko || echo "` + resultLine + ` insmod-$m FAIL"
done
ip link set lo up
suite() {
	name=$1; shift
	"$@"; rc=$?
	if [ $rc -eq 0 ]; then echo "` + resultLine + ` $name PASS"; else echo "` + resultLine + ` $name FAIL (exit $rc)"; fi
}
cd /tmp
%s
echo "` + doneLine + ` $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
`

// Write builds the initramfs (an uncompressed newc cpio: unpacking it is
// cheaper than gunzip under emulation) at path.
func (im Image) Write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	c := newCpio(w)
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "etc", "root", "var"} {
		c.Dir(d)
	}
	// wireguard-go's UAPI sockets live in /var/run/wireguard.
	c.Symlink("var/run", "../run")

	bb, err := staticBusybox()
	if err != nil {
		return err
	}
	if err := addFile(c, "bin/busybox", bb); err != nil {
		return err
	}
	ip, err := lookPath("ip")
	if err != nil {
		return fmt.Errorf("iproute2's ip: %w", err)
	}
	if err := addFile(c, "sbin/ip", ip); err != nil {
		return err
	}
	libs, err := sharedLibs(ip)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := addFile(c, l, l); err != nil {
			return err
		}
	}
	var names []string
	for _, m := range im.Modules {
		b, err := moduleBytes(m.Path)
		if err != nil {
			return err
		}
		c.File("lib/modules/vmtest/"+m.Name+".ko", 0o644, b)
		names = append(names, m.Name)
	}
	for guest, host := range im.Files {
		if err := addFile(c, guest, host); err != nil {
			return err
		}
	}
	c.File("init", 0o755, fmt.Appendf(nil, initScript, strings.Join(names, " "), im.Run))
	if err := c.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func addFile(c *cpioWriter, guest, host string) error {
	b, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	c.File(guest, 0o755, b)
	return nil
}

// staticBusybox finds busybox and checks it is the static build.
func staticBusybox() (string, error) {
	p, err := lookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox not found (Debian: busybox-static)")
	}
	if !IsStatic(p) {
		return "", fmt.Errorf("%s is not statically linked (Debian: install busybox-static)", p)
	}
	return p, nil
}

// IsStatic reports whether an ELF executable needs no dynamic loader.
func IsStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

var lddPath = regexp.MustCompile(`(/\S+)\s+\(0x`)

// sharedLibs lists the libraries a dynamic executable loads (ldd), the
// loader among them, by the paths it looks them up at.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, m := range lddPath.FindAllSubmatch(out, -1) {
		libs = append(libs, string(bytes.TrimSpace(m[1])))
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries in %q", bin, out)
	}
	return libs, nil
}

// lookPath finds a command also in the sbin directories a non-root PATH
// lacks.
func lookPath(cmd string) (string, error) {
	if p, err := exec.LookPath(cmd); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, cmd)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", cmd)
}
