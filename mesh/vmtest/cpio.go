package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// cpioWriter writes a "newc" cpio archive, the format the kernel unpacks
// into its initramfs. Parent directories are added as needed.
type cpioWriter struct {
	w    io.Writer
	n    int64
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCpio(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, dirs: map[string]bool{".": true, "/": true, "": true}}
}

// File adds a regular file with mode (permission bits).
func (c *cpioWriter) File(name string, mode fs.FileMode, data []byte) {
	c.parents(name)
	c.entry(name, 0o100000|uint32(mode.Perm()), data)
}

// Symlink adds name pointing to target.
func (c *cpioWriter) Symlink(name, target string) {
	c.parents(name)
	c.entry(name, 0o120000|0o777, []byte(target))
}

// Dir adds a directory (and its parents).
func (c *cpioWriter) Dir(name string) {
	name = clean(name)
	if c.dirs[name] {
		return
	}
	c.parents(name)
	c.dirs[name] = true
	c.entry(name, 0o040000|0o755, nil)
}

func (c *cpioWriter) parents(name string) {
	if d := path.Dir(clean(name)); !c.dirs[d] {
		c.Dir(d)
	}
}

// Close writes the trailer.
func (c *cpioWriter) Close() error {
	c.entry("TRAILER!!!", 0, nil)
	return c.err
}

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func (c *cpioWriter) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	if name != "TRAILER!!!" {
		name = clean(name)
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
