package main

import (
	"fmt"
	"log/slog"
	"syscall"
)

// raiseNoFile raises the soft limit on open files to the hard limit (the
// Go runtime does so too on Linux since Go 1.19; this makes it explicit
// and independent of the runtime) and returns the limit in force.
func raiseNoFile(log *slog.Logger) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("reading the open file limit", "err", err)
		return 0
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			log.Warn("raising the open file limit", "from", lim.Cur, "to", lim.Max, "err", err)
			return lim.Cur
		}
		lim = want
	}
	return lim.Cur
}

// lbMaxConns is --lb-max-conns bounded by the file limit: each client
// connection may hold a backend connection too, and a quarter of the
// descriptors stays for the master API, the agent, raft and the tasks'
// log files, whatever the lb's clients do.
func lbMaxConns(flag int, nofile uint64) (int, string) {
	if nofile == 0 || flag <= 0 {
		return flag, ""
	}
	if limit := int(nofile / 4); flag > limit {
		return max(limit, 1), fmt.Sprintf("--lb-max-conns %d is above a quarter of the open file limit (%d); using %d", flag, nofile, max(limit, 1))
	}
	return flag, ""
}
