package mesh

import (
	"os"
	"runtime"
	"syscall"
	"time"
)

// An idle Go process with more than one P pays for every wake-up twice:
// the goroutine a timer or a packet readies is run by the thread that
// woke, and the scheduler wakes a second thread to look for more work,
// which finds none and sleeps again. In an idle 22-node mesh (bench/mesh)
// that was a third of a node's thread wake-ups. Work needs every P (the
// userspace data plane encrypts and decrypts in parallel; an agent also
// serves the lb and DNS), the idle hum (gossip, probes, keepalives) needs
// one. Config.IdleProcs lets the engine switch between the two by the
// CPU time the process uses, which any work shows, whatever its kind.
const (
	// procsBusyCPU: the share of one core the process may use and still
	// count as idle. An idle node uses well under 1 %; one P saturated
	// shows as 100 %.
	procsBusyCPU = 0.05
	// procsQuietFor: how long the process must stay under procsBusyCPU
	// before it goes back to one P.
	procsQuietFor = 10 * time.Second
)

// procScaler decides, from the CPU time the process used, whether it
// should run on one P (idle) or on all of them (busy). The share is taken
// over windows of at least a second (reconciles come closer together
// while paths change); more than a second's worth at procsBusyCPU within
// a shorter window counts as busy at once.
type procScaler struct {
	idle    bool // on one P
	winCPU  time.Duration
	winAt   time.Time // the window's start (zero: none yet)
	quietAt time.Time // under procsBusyCPU since (zero: it is not)
}

// observe takes the CPU time the process has used so far at now and
// returns the wanted state, idle (one P) or not, and whether it changed.
func (p *procScaler) observe(cpu time.Duration, now time.Time) (idle, changed bool) {
	if p.winAt.IsZero() || cpu < p.winCPU {
		p.winCPU, p.winAt = cpu, now
		if p.quietAt.IsZero() {
			p.quietAt = now
		}
		return p.idle, false
	}
	d, dt := cpu-p.winCPU, now.Sub(p.winAt)
	busy := d.Seconds() > procsBusyCPU*max(dt, time.Second).Seconds()
	if dt < time.Second && !busy {
		return p.idle, false
	}
	p.winCPU, p.winAt = cpu, now
	switch {
	case busy:
		p.quietAt = time.Time{}
		if p.idle {
			p.idle = false
			return false, true
		}
	case p.quietAt.IsZero():
		p.quietAt = now
	case !p.idle && now.Sub(p.quietAt) >= procsQuietFor:
		p.idle = true
		return true, true
	}
	return p.idle, false
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// applyProcs sets GOMAXPROCS for the state: 1 when idle, Go's default
// otherwise.
func applyProcs(idle bool) {
	if idle {
		runtime.GOMAXPROCS(1)
	} else {
		runtime.SetDefaultGOMAXPROCS()
	}
}

// idleProcsAllowed: the process may be scaled (GOMAXPROCS is not set in
// the environment, and there is more than one P to give back).
func idleProcsAllowed() bool {
	return os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > 1
}
