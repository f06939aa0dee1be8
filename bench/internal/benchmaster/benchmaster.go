// Package benchmaster starts a real master inside a bench's own process,
// for benches that measure what the master sends (fan-out, assignments,
// DNS following live changes) and need its store at hand.
package benchmaster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Start runs a master as `weft master` runs one, with raft on disk in dir
// and nodes as its static members (never taken for absent). Its API is
// advertised at a fresh loopback listener, which the caller serves with
// the handler it needs. Start returns once the master leads; cancelling
// ctx stops it.
func Start(ctx context.Context, dir string, nodes ...api.Node) (*sched.Master, net.Listener, error) {
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = dir
	cfg.Members = sched.NewStaticMembers(nodes...)
	cfg.AbsentAgentGrace = time.Hour
	cfg.Logger = slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	cfg.APIAdvertise = ln.Addr().String()
	m, err := sched.NewMaster(cfg)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	go func() { _ = m.Run(ctx) }()
	if err := benchkit.Eventually(30*time.Second, 10*time.Millisecond, "the master leads", func() error {
		if !m.Store().IsLeader() {
			return errors.New("not leading")
		}
		return nil
	}); err != nil {
		ln.Close()
		return nil, nil, err
	}
	return m, ln, nil
}
