// Package testbin gives end-to-end tests the real weft binary: $WEFT_BIN
// when `make test` built it, else one built once per test process.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Weft returns the path of a weft binary, building it if needed.
func Weft(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if p := os.Getenv("WEFT_BIN"); p != "" {
			path, err = filepath.Abs(p)
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, e := os.MkdirTemp("", "weft-bin-")
		if e != nil {
			err = e
			return
		}
		path = filepath.Join(dir, "weft")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/weft")
		cmd.Dir = root
		cmd.Stderr = os.Stderr
		err = cmd.Run()
	})
	if err != nil {
		t.Fatalf("building weft: %v", err)
	}
	return path
}
