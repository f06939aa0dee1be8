package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDataDir takes an exclusive lock on dir/weft.lock for the life of the
// process, so a second weft on the same data dir is refused at once, naming
// the process that holds it, instead of hanging on raft's database lock or
// sharing sandboxes and keys with it. The kernel drops the lock when the
// process exits, however it exits; a stale file is harmless.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, "weft.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking data dir %s: %w (choose another with --data-dir)", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another weft process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(holder))); perr == nil {
				who = fmt.Sprintf("another weft process (pid %d)", pid)
			}
			return nil, fmt.Errorf("data dir %s is in use by %s: stop it, or give this one its own --data-dir", dir, who)
		}
		return nil, fmt.Errorf("locking data dir %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// agentAPIFile, in the data dir, holds the URL of the running node's agent
// API, so that client commands on the same machine (`weft mesh status`)
// find it when `weft up` chose a free port.
const agentAPIFile = "agent-api"

// writeAgentAPIFile records url as the node's agent API in dir; the
// returned func removes it again.
func writeAgentAPIFile(dir, url string) (remove func(), err error) {
	path := filepath.Join(dir, agentAPIFile)
	if err := os.WriteFile(path, []byte(url+"\n"), 0o600); err != nil {
		return func() {}, fmt.Errorf("writing %s: %w", path, err)
	}
	return func() { _ = os.Remove(path) }, nil
}

// readAgentAPIFile is the agent API URL a node running on dir wrote, or "".
func readAgentAPIFile(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, agentAPIFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
