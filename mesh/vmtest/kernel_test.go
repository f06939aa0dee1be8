package vmtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int // sign
	}{
		{"6.1.0-57-amd64", "6.1.0-100-amd64", -1},
		{"6.12.9-amd64", "6.1.0-57-amd64", 1},
		{"6.1.0-57-amd64", "6.1.0-57-amd64", 0},
		{"6.1.0-57-amd64", "6.1.0-57-cloud-amd64", -1},
	}
	for _, c := range cases {
		got := compareVersions(c.a, c.b)
		if (got < 0 && c.want >= 0) || (got > 0 && c.want <= 0) || (got == 0 && c.want != 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", c.a, c.b, got, c.want)
		}
	}
}

// fakeKernel lays out boot/vmlinuz-V and lib/modules/V/modules.dep.
func fakeKernel(t *testing.T, version, dep, builtin string) string {
	t.Helper()
	dir := t.TempDir()
	mod := filepath.Join(dir, "lib", "modules", version)
	for _, d := range []string{filepath.Join(dir, "boot"), mod} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		filepath.Join(dir, "boot", "vmlinuz-"+version): "kernel",
		filepath.Join(mod, "modules.dep"):              dep,
		filepath.Join(mod, "modules.builtin"):          builtin,
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestModulesOrder(t *testing.T) {
	dep := `kernel/drivers/net/wireguard/wireguard.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz kernel/net/ipv6/ip6_udp_tunnel.ko.xz kernel/lib/crypto/libchacha20poly1305.ko.xz kernel/arch/x86/crypto/chacha-x86_64.ko.xz kernel/lib/crypto/libchacha.ko.xz
kernel/net/ipv4/udp_tunnel.ko.xz:
kernel/net/ipv6/ip6_udp_tunnel.ko.xz:
kernel/lib/crypto/libchacha20poly1305.ko.xz: kernel/arch/x86/crypto/chacha-x86_64.ko.xz kernel/lib/crypto/libchacha.ko.xz
kernel/arch/x86/crypto/chacha-x86_64.ko.xz: kernel/lib/crypto/libchacha.ko.xz
kernel/lib/crypto/libchacha.ko.xz:
kernel/drivers/net/veth.ko.xz:
`
	dir := fakeKernel(t, "6.12.9-amd64", dep, "kernel/drivers/net/tun.ko\n")
	k, err := FindKernel(dir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.Modules("wireguard", "veth", "tun", "chacha-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	// Every module after what it needs, each once, the built-in tun left out.
	want := "udp_tunnel ip6_udp_tunnel libchacha chacha_x86_64 libchacha20poly1305 wireguard veth"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("load order %q, want %q", got, want)
	}
	if !strings.HasSuffix(mods[len(mods)-2].Path, "kernel/drivers/net/wireguard/wireguard.ko.xz") {
		t.Errorf("wireguard path %s", mods[len(mods)-2].Path)
	}
	if _, err := k.Modules("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("an unknown module: %v", err)
	}
}

func TestFindKernelNone(t *testing.T) {
	_, err := FindKernel(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "scripts/deps.sh") {
		t.Fatalf("FindKernel on an empty dir: %v; want a pointer at scripts/deps.sh", err)
	}
}

// TestCpio checks the newc layout the kernel expects: 110-byte headers,
// names and data padded to 4 bytes, parents before children, a trailer.
func TestCpio(t *testing.T) {
	var buf bytes.Buffer
	c := newCpio(&buf)
	c.File("bin/x", 0o755, []byte("hello"))
	c.Symlink("var/run", "../run")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name string
		mode uint64
		data string
	}
	var got []entry
	b := buf.Bytes()
	for len(b) > 0 {
		if len(b) < 110 || string(b[:6]) != "070701" {
			t.Fatalf("bad header at %d: %q", buf.Len()-len(b), b[:min(len(b), 16)])
		}
		field := func(i int) uint64 {
			var v uint64
			for _, ch := range b[6+8*i : 14+8*i] {
				v = v*16 + uint64(strings.IndexByte("0123456789abcdef", ch))
			}
			return v
		}
		mode, size, nameLen := field(1), field(6), field(11)
		name := string(b[110 : 110+nameLen-1])
		off := (110 + int(nameLen) + 3) &^ 3
		data := string(b[off : off+int(size)])
		got = append(got, entry{name, mode, data})
		b = b[(off+int(size)+3)&^3:]
		if name == "TRAILER!!!" {
			break
		}
	}
	want := []entry{
		{"bin", 0o40755, ""},
		{"bin/x", 0o100755, "hello"},
		{"var", 0o40755, ""},
		{"var/run", 0o120777, "../run"},
		{"TRAILER!!!", 0, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(b) != 0 {
		t.Errorf("%d bytes after the trailer", len(b))
	}
}
