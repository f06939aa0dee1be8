package agent

import (
	"archive/tar"
	"archive/zip"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// fetch puts one URI of the task's fetch list into the sandbox: file://
// URIs and plain paths are copied, http(s) URIs downloaded. Archives are
// extracted when asked (tar, tar.gz, tgz, tar.bz2, zip).
func fetch(ctx context.Context, f api.Fetch, sandbox string, timeout time.Duration) error {
	u, err := url.Parse(f.URI)
	if err != nil {
		return fmt.Errorf("fetching %q: not a URI: %w", f.URI, err)
	}
	name := filepath.Base(u.Path)
	if name == "." || name == "/" || name == "" {
		name = "download"
	}
	if f.DestPath != "" {
		name = f.DestPath
	}
	dest := filepath.Join(sandbox, filepath.Clean("/" + name)[1:])
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("fetching %q: %w", f.URI, err)
	}
	var src io.ReadCloser
	switch u.Scheme {
	case "", "file":
		src, err = os.Open(u.Path)
		if err != nil {
			return fmt.Errorf("fetching %q: %w; the file must exist on the agent", f.URI, err)
		}
	case "http", "https":
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URI, nil)
		if err != nil {
			return fmt.Errorf("fetching %q: %w", f.URI, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("fetching %q: %w; is the host reachable from this agent?", f.URI, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("fetching %q: the server answered %s", f.URI, resp.Status)
		}
		src = resp.Body
		// keep the cancel alive until the copy below is done
		defer cancel()
	default:
		return fmt.Errorf("fetching %q: scheme %q is not supported; use file://, a path, http:// or https://", f.URI, u.Scheme)
	}
	defer src.Close()
	mode := os.FileMode(0o644)
	if f.Executable {
		mode = 0o755
	}
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("fetching %q: %w", f.URI, err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return fmt.Errorf("fetching %q: %w", f.URI, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("fetching %q: %w", f.URI, err)
	}
	if f.Executable {
		_ = os.Chmod(dest, 0o755)
	}
	if f.Extract && isArchive(name) {
		if err := extract(dest, sandbox); err != nil {
			return fmt.Errorf("extracting %q: %w", f.URI, err)
		}
	}
	return nil
}

func isArchive(name string) bool {
	for _, s := range []string{".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".zip"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// extract unpacks an archive into dir, refusing paths that leave it.
func extract(path, dir string) error {
	if strings.HasSuffix(path, ".zip") {
		zr, err := zip.OpenReader(path)
		if err != nil {
			return err
		}
		defer zr.Close()
		for _, f := range zr.File {
			dest, err := insideDir(dir, f.Name)
			if err != nil {
				return err
			}
			if f.FileInfo().IsDir() {
				if err := os.MkdirAll(dest, 0o755); err != nil {
					return err
				}
				continue
			}
			rc, err := f.Open()
			if err != nil {
				return err
			}
			err = writeFile(dest, rc, f.Mode())
			rc.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".gz"), strings.HasSuffix(path, ".tgz"):
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	case strings.HasSuffix(path, ".bz2"), strings.HasSuffix(path, ".tbz2"):
		r = bzip2.NewReader(f)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		dest, err := insideDir(dir, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dest, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFile(dest, tr, os.FileMode(h.Mode)&0o777); err != nil {
				return err
			}
		}
	}
}

func insideDir(dir, name string) (string, error) {
	dest := filepath.Join(dir, name)
	if dest != dir && !strings.HasPrefix(dest, dir+string(filepath.Separator)) {
		return "", fmt.Errorf("archive entry %q leaves the sandbox", name)
	}
	return dest, nil
}

func writeFile(dest string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
