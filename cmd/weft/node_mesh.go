package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/sched/api"
)

// setupMesh starts gossip (always) and the overlay (unless --no-mesh; for
// `weft up` only with --mesh). The scheduling facts other roles need go out
// in tags once those roles have set them up (publishTags).
func (n *node) setupMesh() error {
	wg := n.role != roleUp
	if n.c.Bool("no-mesh") {
		wg = false
	}
	if n.c.Bool("mesh") {
		wg = true
	}
	if wg {
		// Probe before anything starts: without CAP_NET_ADMIN or a TUN
		// device the node stops here, with the one message that says
		// what is missing and how to run.
		plane, err := mesh.CheckDataPlane(n.c.Bool("wg-userspace"))
		if err != nil {
			return err
		}
		n.log.Debug("WireGuard data plane", "plane", plane)
	}
	m, err := newMeshWith(n.c, n.role, n.role != roleUp, nil, n.log, func(cfg *mesh.Config) {
		// An idle agent runs on one P. A master keeps every P: its work
		// (raft commits, allocation rounds) comes in bursts shorter than
		// the engine's look, once a second.
		cfg.IdleProcs = n.role == roleAgent
	})
	if n.role == roleAgent && !n.c.Bool("pprof") {
		idleMemProfile()
	}
	if err != nil {
		return err
	}
	n.mesh, n.meshOverlay = m, wg
	n.finder = newMasterFinder(members{m}, n.nodeClient, n.nodeSecret())
	n.registry.MustRegister(m.Collector())
	return nil
}

// publishTags puts the node's scheduling facts in its gossip tags.
func (n *node) publishTags() error {
	n.tagsMu.Lock()
	tags := api.NodeTags(n.tags)
	n.tagsMu.Unlock()
	return n.mesh.SetTags(tags)
}

// members adapts the mesh's view to what sched, dns and lb consume.
type members struct{ m *mesh.Mesh }

// Nodes converts gossip members to api.Nodes.
func (ms members) Nodes() []api.Node {
	list := ms.m.Members()
	out := make([]api.Node, 0, len(list))
	for _, mb := range list {
		nd := api.Node{
			Name:         mb.Name,
			Role:         mb.Role,
			Site:         mb.Site,
			Status:       mb.Status,
			Address:      mb.Addr,
			OverlayIP:    mb.OverlayIP,
			OverlayBlock: mb.Block,
		}
		_ = api.ApplyNodeTags(&nd, mb.Tags)
		out = append(out, nd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (ms members) Subscribe() (<-chan struct{}, func()) { return ms.m.Subscribe() }

// Ping implements sched.Pinger: one gossip ping of a member.
func (ms members) Ping(ctx context.Context, name string) error { return ms.m.Ping(ctx, name) }

// masterFinder is how this node's agent, dns and lb reach the masters: the
// local master when this node runs one, else any alive master that gossip
// knows (a follower answers assignments itself and forwards the rest to
// the leader), moving to another on the first failed call.
type masterFinder struct {
	api.MasterSet
	local string // this node's own master API (host:port), if it runs one
	ms    members
	// dial makes a client for a master API host:port (over mutual TLS
	// when the cluster has a token).
	dial  func(hostport string) *api.Client
	token string // the node secret this node's agent, dns and lb present
}

func newMasterFinder(ms members, dial func(hostport string) *api.Client, token string) *masterFinder {
	f := &masterFinder{ms: ms, dial: dial, token: token}
	f.Candidates = f.candidates
	f.Dial = f.dialOne
	return f
}

// stateWatcher returns the node's one watch of the master state (the
// change watch, through the finder's failover), started with the node's
// roles the first time dns or lb asks for it.
func (n *node) stateWatcher() *api.Watcher {
	if n.watcher == nil {
		n.watcher = &api.Watcher{Source: n.finder, Logger: n.log.With("component", "watch")}
		n.runs = append(n.runs, n.watcher.Run)
	}
	return n.watcher
}

// dialOne makes the client for one master.
func (f *masterFinder) dialOne(hostport string) *api.Client {
	cl := api.NewClient(hostport)
	if f.dial != nil {
		cl = f.dial(hostport)
	}
	cl.Token = f.token
	return cl
}

func (f *masterFinder) candidates() []string {
	if f.local != "" {
		return []string{f.local}
	}
	var cands []string
	for _, nd := range f.ms.Nodes() {
		if nd.Status == "alive" && strings.Contains(nd.Role, "master") && nd.API != "" {
			cands = append(cands, nd.API)
		}
	}
	sort.Strings(cands)
	return cands
}

// client returns a client for the masters, tried in turn.
func (f *masterFinder) client() (*api.Client, error) {
	cands := f.candidates()
	if len(cands) == 0 {
		return nil, fmt.Errorf("no master known yet: is --join pointing at the cluster?")
	}
	cl := f.dialOne(cands[0])
	cl.Bases = []string{cl.Base}
	for _, c := range cands[1:] {
		cl.Bases = append(cl.Bases, f.dialOne(c).Base)
	}
	return cl, nil
}

// waitMesh waits until gossip runs and, with the overlay on, until the node
// has its overlay address, so that the roles can bind to it.
func (n *node) waitMesh(ctx context.Context) error {
	select {
	case <-n.mesh.Started():
	case <-ctx.Done():
		cause := context.Cause(ctx)
		// A data-plane error already says all there is to say.
		var dpe *mesh.DataPlaneError
		if errors.As(cause, &dpe) {
			return dpe
		}
		if strings.HasPrefix(cause.Error(), "mesh: ") {
			return cause // already says where it comes from
		}
		return fmt.Errorf("mesh did not start: %w", cause)
	}
	if !n.meshOverlay {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for n.mesh.Self().OverlayIP == "" {
		if time.Now().After(deadline) {
			return fmt.Errorf("the overlay has no address after 30s (see the mesh log above), or run with --no-mesh")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mesh stopped before the overlay came up: %w", context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// setTags changes the node's gossip facts under the lock.
func (n *node) setTags(fn func()) {
	n.tagsMu.Lock()
	defer n.tagsMu.Unlock()
	fn()
}
