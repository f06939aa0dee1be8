package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// DefaultKernelDir is where scripts/deps.sh unpacks the package that
// linux-image-amd64 depends on (boot/vmlinuz-VERSION and
// lib/modules/VERSION with a modules.dep). WEFT_VM_KERNEL_DIR overrides it.
const DefaultKernelDir = "/var/cache/weft/vmkernel"

// Kernel is one unpacked Debian kernel: its image and its modules.
type Kernel struct {
	Version string // "6.1.0-57-amd64"
	Image   string // .../boot/vmlinuz-VERSION
	ModDir  string // .../lib/modules/VERSION
}

// FindKernel looks for an unpacked kernel under dir ("" means
// WEFT_VM_KERNEL_DIR, else DefaultKernelDir). Of several versions it takes
// the newest one that has both an image and a modules.dep.
func FindKernel(dir string) (Kernel, error) {
	if dir == "" {
		dir = os.Getenv("WEFT_VM_KERNEL_DIR")
	}
	if dir == "" {
		dir = DefaultKernelDir
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	var found []Kernel
	for _, img := range images {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mod := filepath.Join(dir, "lib", "modules", v)
		if _, err := os.Stat(filepath.Join(mod, "modules.dep")); err != nil {
			continue
		}
		found = append(found, Kernel{Version: v, Image: img, ModDir: mod})
	}
	if len(found) == 0 {
		return Kernel{}, fmt.Errorf("no unpacked kernel (boot/vmlinuz-* with lib/modules/*/modules.dep) in %s: run scripts/deps.sh as root (it unpacks linux-image-amd64's kernel there)", dir)
	}
	slices.SortFunc(found, func(a, b Kernel) int { return compareVersions(a.Version, b.Version) })
	return found[len(found)-1], nil
}

// compareVersions orders "6.1.0-57-amd64" below "6.1.0-100-amd64": runs
// of digits compare as numbers, the rest as text.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, ra := splitRun(a)
		db, rb := splitRun(b)
		if c := compareRun(da, db); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return len(a) - len(b)
}

func splitRun(s string) (string, string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

func compareRun(a, b string) int {
	na, ea := strconv.Atoi(a)
	nb, eb := strconv.Atoi(b)
	if ea == nil && eb == nil {
		return na - nb
	}
	return strings.Compare(a, b)
}

// Module is one kernel module file to load.
type Module struct {
	Name string // "wireguard"
	Path string // absolute, possibly .ko.xz or .ko.zst
}

// moduleName is a module's name from its path: dashes and underscores
// are the same to the kernel, and modules.dep spells files, not names.
func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// Modules resolves names (as modprobe would: "wireguard", "veth") to the
// module files to load, every dependency before the modules that need it,
// each once. Built-in modules are left out.
func (k Kernel) Modules(names ...string) ([]Module, error) {
	deps, err := readModulesDep(filepath.Join(k.ModDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(k.ModDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[moduleName(l)] = true
		}
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("modules.dep: a dependency cycle through %s", name)
		case 2:
			return nil
		}
		e, ok := deps[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) is not in %s/modules.dep", name, from, k.ModDir)
			}
			return fmt.Errorf("module %s is not in %s/modules.dep", name, k.ModDir)
		}
		state[name] = 1
		for _, d := range e.deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Path: filepath.Join(k.ModDir, e.file)})
		return nil
	}
	for _, n := range names {
		if err := visit(strings.ReplaceAll(n, "-", "_"), ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type depEntry struct {
	file string   // relative to the modules dir
	deps []string // module names
}

// readModulesDep parses modules.dep: "kernel/a.ko: kernel/b.ko kernel/c.ko".
func readModulesDep(path string) (map[string]depEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	defer f.Close()
	out := map[string]depEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		e := depEntry{file: strings.TrimSpace(file)}
		for _, d := range strings.Fields(rest) {
			e.deps = append(e.deps, moduleName(d))
		}
		out[moduleName(file)] = e
	}
	return out, sc.Err()
}

// moduleBytes reads a module, decompressing .ko.xz and .ko.zst (with the
// xz and zstd commands): the guest loads plain ELF objects.
func moduleBytes(path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(path, ".ko.gz"):
		tool = "gzip"
	default:
		return nil, fmt.Errorf("module %s: unknown compression", path)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", path)
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompressing %s with %s: %v: %s", path, tool, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return b, nil
}
