package dns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// Host DNS without systemd-resolved: a managed block at the top of
// resolv.conf names weft's DNS as the first nameserver. resolv.conf cannot
// send one domain to one server, so weft's DNS answers the cluster domain
// and forwards every other name to the nameservers the file had before,
// never to itself.
//
// The file is rewritten in place, not renamed over: /etc/resolv.conf is
// often a bind mount (containers, `ip netns exec`). Before the first write
// its exact bytes are kept next to weft's data (the backup); stopping puts
// them back, and so does the next start after a crash.

const (
	resolvBegin = "# >>> weft: managed block, removed when weft stops (do not edit) >>>"
	resolvEnd   = "# <<< weft <<<"
)

// ResolvConf manages weft's block in one resolv.conf.
type ResolvConf struct {
	// Path is the resolv.conf, normally /etc/resolv.conf.
	Path string
	// Backup keeps the file's bytes from before weft wrote it.
	Backup string
	// written is what Install wrote (to recognise the file as ours).
	written []byte
}

// Recover undoes a block left by a weft that did not stop cleanly: the
// file gets back the backup's bytes when it is still what weft left
// (only the block added), else only the block is cut out. It reports
// whether there was anything to undo.
func (r *ResolvConf) Recover() (bool, error) {
	cur, err := os.ReadFile(r.Path)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", r.Path, err)
	}
	orig, berr := os.ReadFile(r.Backup)
	if !bytes.Contains(cur, []byte(resolvBegin)) {
		if berr == nil {
			_ = os.Remove(r.Backup) // the file was replaced meanwhile: nothing of ours is left
		}
		return false, nil
	}
	restored := stripBlock(cur)
	if berr == nil && bytes.Equal(restored, stripBlock(orig)) {
		restored = orig // exactly as it was
	}
	if err := writeInPlace(r.Path, restored); err != nil {
		return true, err
	}
	if berr == nil {
		_ = os.Remove(r.Backup)
	}
	return true, nil
}

// Install puts the block naming server (an IP, served on port 53) first in
// the file, keeping the rest as it is.
func (r *ResolvConf) Install(server string) error {
	if net.ParseIP(server) == nil {
		return fmt.Errorf("resolv.conf needs an IP address for weft's DNS, not %q", server)
	}
	cur, err := os.ReadFile(r.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", r.Path, err)
	}
	if bytes.Contains(cur, []byte(resolvBegin)) {
		cur = stripBlock(cur) // ours from a run that Recover did not see
	}
	if err := os.MkdirAll(filepath.Dir(r.Backup), 0o700); err != nil {
		return fmt.Errorf("keeping a copy of %s: %w", r.Path, err)
	}
	if err := os.WriteFile(r.Backup, cur, 0o600); err != nil {
		return fmt.Errorf("keeping a copy of %s: %w", r.Path, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nnameserver %s\n%s\n", resolvBegin, server, resolvEnd)
	b.Write(cur)
	if err := writeInPlace(r.Path, b.Bytes()); err != nil {
		return err
	}
	r.written = b.Bytes()
	return nil
}

// Restore puts the file back as it was before Install: exactly, when
// nobody changed it since; else only weft's block is cut out.
func (r *ResolvConf) Restore() error {
	if r.written == nil {
		return nil
	}
	cur, err := os.ReadFile(r.Path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", r.Path, err)
	}
	r.written = nil
	if !bytes.Contains(cur, []byte(resolvBegin)) {
		_ = os.Remove(r.Backup)
		return nil
	}
	if _, err := r.Recover(); err != nil {
		return err
	}
	return nil
}

// stripBlock cuts weft's block (and only it) out of a resolv.conf.
func stripBlock(b []byte) []byte {
	var out [][]byte
	in := false
	lines := bytes.SplitAfter(b, []byte("\n"))
	for _, l := range lines {
		t := bytes.TrimSpace(l)
		switch {
		case bytes.Equal(t, []byte(resolvBegin)):
			in = true
		case in && bytes.Equal(t, []byte(resolvEnd)):
			in = false
		case !in:
			out = append(out, l)
		}
	}
	return bytes.Join(out, nil)
}

// writeInPlace truncates and rewrites path (a bind mount cannot be
// renamed over).
func writeInPlace(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
