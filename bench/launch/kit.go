package main

import "github.com/weftnet/weft/bench/internal/benchkit"

// The shared helpers, under the names this bench uses.
var (
	atExit          = benchkit.AtExit
	cleanupOnSignal = benchkit.CleanupOnSignal
	eventually      = benchkit.Eventually
	exit            = benchkit.Exit
	freePort        = benchkit.FreePort
	killPidFiles    = benchkit.KillPidFiles
	loadAvg         = benchkit.LoadAvg
	percentile      = benchkit.Percentile
	startProc       = benchkit.StartProc
	tempDir         = benchkit.TempDir
	weftBin         = benchkit.WeftBin
)
