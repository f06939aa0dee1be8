package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func tgz(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestFetchHTTPAndExtract(t *testing.T) {
	good := tgz(t, map[string]string{"bin/app": "#!/bin/sh\necho hi\n"})
	evil := tgz(t, map[string]string{"../../escape": "x"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app.tgz":
			w.Write(good)
		case "/evil.tgz":
			w.Write(evil)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	sb := t.TempDir()
	if err := fetch(ctx, api.Fetch{URI: srv.URL + "/app.tgz", Extract: true}, sb, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(sb, "bin", "app")); err != nil || !strings.Contains(string(b), "echo hi") {
		t.Errorf("extracted file: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(sb, "app.tgz")); err != nil {
		t.Errorf("the archive itself is kept in the sandbox: %v", err)
	}
	err := fetch(ctx, api.Fetch{URI: srv.URL + "/missing.tgz"}, sb, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("fetching a missing URI: %v, want an error naming the 404", err)
	}
	sb2 := t.TempDir()
	err = fetch(ctx, api.Fetch{URI: srv.URL + "/evil.tgz", Extract: true}, sb2, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "leaves the sandbox") {
		t.Errorf("an archive escaping the sandbox: %v", err)
	}
	if err := fetch(ctx, api.Fetch{URI: "ftp://example.invalid/x"}, sb, time.Second); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("ftp URI: %v", err)
	}
}
