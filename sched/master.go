package sched

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/sched/api"
)

// MasterConfig configures a Master.
type MasterConfig struct {
	// Store configures the raft store (data dir, raft bind, bootstrap).
	Store StoreConfig
	// Members is the cluster membership (the mesh's gossip, adapted).
	Members Members
	// Frameworks get offers and mount their HTTP routes; Run runs each
	// one's loop while this master leads.
	Frameworks []Framework
	// APIAdvertise is the host:port this master's API is reached at; it is
	// the leader address /v2/leader and the watch report.
	APIAdvertise string
	// Domain is the DNS domain the watch reports (default "pcm").
	Domain string
	// AllocInterval is the allocation timer; rounds also run on every
	// change (default 1 s).
	AllocInterval time.Duration
	// RefuseDefault is how long a declined offer is not made again to the
	// same framework when the decline names no duration (default 5 s).
	RefuseDefault time.Duration
	// AbsentAgentGrace: once this master has led this long, tasks of agents
	// the membership does not list at all are marked TASK_UNREACHABLE, like
	// those of failed agents (default 1 min; membership fills after start).
	AbsentAgentGrace time.Duration
	// MinReviveInterval bounds how often Revive lifts refusals (default 1 s).
	MinReviveInterval time.Duration
	// KeepAlive is the /v2/events SSE keep-alive comment period (default 15 s).
	KeepAlive time.Duration
	// MaxStatusBody bounds a status POST's body (default 16 MiB).
	MaxStatusBody int64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the master's logs (default: discarded).
	Logger *slog.Logger
	// Registry receives the master's metrics and is served on /metrics
	// (default: a new registry).
	Registry *prometheus.Registry
	// Version is reported by /v2/info.
	Version string
	// Pprof mounts net/http/pprof's handlers under /debug/pprof/ on the
	// API (`weft master --pprof`): for profiling, off by default.
	Pprof bool

	// Safe starts the master with every framework paused: no framework
	// loop runs and none gets offers, while the API works, so an app or
	// job that takes the node down can be deleted (`weft up --safe`).
	Safe bool

	// BootstrapExpect, when 2 or more, makes a new master wait until that
	// many masters (Members nodes with role master or master+agent) are
	// alive and then form a raft cluster of them (`weft master
	// --bootstrap-expect 3`). Store.Bind must then be a TCP address and
	// Store.NodeID this node's Members Name (the serf member name; a
	// master's raft id is its member name). Store.Bootstrap is turned off.
	BootstrapExpect int
	// JoinMasters makes the leader add masters that join later as raft
	// voters even without BootstrapExpect.
	JoinMasters bool
	// RaftPort is the raft port of other masters (default 8300): a peer's
	// raft address is its Members Address and this port.
	RaftPort int
	// PeerRaftAddr, when set, gives a peer master's raft address instead.
	PeerRaftAddr func(api.Node) string
	// NodeTLS is this node's identity under the cluster CA (nil: the
	// cluster has no token). With it, a master becomes a voter only after
	// proving it holds the token, the leader proxy speaks mutual TLS, and
	// node-only endpoints require a node certificate (NodeIdentity).
	NodeTLS *nodetls.Identity
	// DeadServerAfter is how long gossip must have called a voter failed
	// before the leader removes it, once a replacement has joined (0: never;
	// default 2 min).
	DeadServerAfter time.Duration

	// NodeIdentity tells whether a request came from a cluster node (a
	// verified node certificate) and which; default NodeIdentity. Nodes
	// are not people: ACL tokens do not apply to them.
	NodeIdentity func(r *http.Request) (node string, ok bool)
	// NodeSecret, when set, is a bearer secret that also identifies a
	// cluster node (derived from the join token; `weft up` makes one per
	// process for its own agent, dns and lb).
	NodeSecret string
	// SecretsKey encrypts the secret store (AES-256-GCM); cmd derives it
	// from the join token (HKDF, info "weft secrets v1"). Without it,
	// secret writes are refused with a 4xx.
	SecretsKey []byte
	// AuditLogger receives one line per accepted write (default Logger).
	AuditLogger *slog.Logger

	// ProxyRetryWait is how long a follower whose leader does not answer
	// (or that knows no leader) waits for raft to name a new one before it
	// answers 503 with Retry-After (default 3 s).
	ProxyRetryWait time.Duration
	// ProxyDialTimeout bounds a follower's dial of the leader (default 2 s).
	ProxyDialTimeout time.Duration
	// FollowerCatchUp is how long a follower asked for an agent's
	// assignments waits to apply the index the agent has already seen
	// before it answers 503 (default 3 s).
	FollowerCatchUp time.Duration
	// IdempotencyWindow is how long the leader remembers its answer to a
	// request with an Idempotency-Key (default 10 min).
	IdempotencyWindow time.Duration
}

// DefaultMasterConfig is what `weft up` uses; callers fill Members,
// Frameworks and APIAdvertise.
func DefaultMasterConfig() MasterConfig {
	return MasterConfig{
		Store:             DefaultStoreConfig(),
		Domain:            "pcm",
		AllocInterval:     time.Second,
		RefuseDefault:     5 * time.Second,
		MinReviveInterval: time.Second,
		AbsentAgentGrace:  time.Minute,
		KeepAlive:         15 * time.Second,
		DeadServerAfter:   2 * time.Minute,
		MaxStatusBody:     16 << 20,
		ProxyRetryWait:    3 * time.Second,
		ProxyDialTimeout:  2 * time.Second,
		FollowerCatchUp:   3 * time.Second,
		IdempotencyWindow: 10 * time.Minute,
		Now:               time.Now,
		Version:           "dev",
	}
}

// Master is weft's scheduler master: the store, the allocator, the agent and
// watch APIs, the Marathon master endpoints, and the frameworks' routes.
type Master struct {
	cfg     MasterConfig
	log     *slog.Logger
	store   *Store
	handler http.Handler
	mux     *http.ServeMux // the routes inside handler (TestEveryRouteClassified)
	metrics *masterMetrics
	tracker *agentTracker
	alloc   *allocator
	// polls follows the agents' long polls; pollMembers is the membership
	// as gossip gives it (cfg.Members adds the agents found dead), and
	// pinger probes a member through gossip (nil: not available).
	polls       *agentPolls
	pollMembers Members
	pinger      Pinger
	stateC      stateCache
	chgC        changesCache
	lb          lbProblems
	tokens      tokenCache
	audit       *slog.Logger
	panics      fwPanics

	transportOnce sync.Once
	transport     http.RoundTripper // to other nodes (nodeTransport)

	// proxyTransport carries a follower's forwards to the leader.
	proxyTransport http.RoundTripper
	// keys are the idempotency keys being served now.
	keys inflight

	revive chan struct{}

	memMu  sync.Mutex
	memGen uint64
	memCh  chan struct{} // closed and replaced when membership changes

	idMu        sync.Mutex
	frameworkID string

	closeOnce sync.Once
}

var _ MasterHandle = (*Master)(nil)

// NewMaster validates cfg, opens the store (so Handler and Store work at
// once) and builds the HTTP API. Run starts the work; it closes the store
// when it returns. Call Close instead if Run is never called.
func NewMaster(cfg MasterConfig) (*Master, error) {
	def := DefaultMasterConfig()
	if cfg.Members == nil {
		return nil, errors.New("master: no Members (membership) given")
	}
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	if cfg.AllocInterval <= 0 {
		cfg.AllocInterval = def.AllocInterval
	}
	if cfg.RefuseDefault <= 0 {
		cfg.RefuseDefault = def.RefuseDefault
	}
	if cfg.AbsentAgentGrace <= 0 {
		cfg.AbsentAgentGrace = def.AbsentAgentGrace
	}
	if cfg.MinReviveInterval <= 0 {
		cfg.MinReviveInterval = def.MinReviveInterval
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = def.KeepAlive
	}
	if cfg.MaxStatusBody <= 0 {
		cfg.MaxStatusBody = def.MaxStatusBody
	}
	if cfg.ProxyRetryWait <= 0 {
		cfg.ProxyRetryWait = def.ProxyRetryWait
	}
	if cfg.ProxyDialTimeout <= 0 {
		cfg.ProxyDialTimeout = def.ProxyDialTimeout
	}
	if cfg.FollowerCatchUp <= 0 {
		cfg.FollowerCatchUp = def.FollowerCatchUp
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = def.IdempotencyWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Version == "" {
		cfg.Version = def.Version
	}
	if cfg.NodeIdentity == nil {
		cfg.NodeIdentity = NodeIdentity
	}
	if cfg.AuditLogger == nil {
		cfg.AuditLogger = cfg.Logger
	}
	if len(cfg.SecretsKey) != 0 && len(cfg.SecretsKey) != 32 {
		return nil, errors.New("master: SecretsKey must be 32 bytes (AES-256)")
	}
	if cfg.RaftPort == 0 {
		cfg.RaftPort = 8300
	}
	if cfg.BootstrapExpect >= 2 {
		if cfg.Store.Bind == "" {
			return nil, errors.New("master: --bootstrap-expect needs a raft bind address (the in-process transport cannot reach peers)")
		}
		cfg.Store.Bootstrap = false
	}
	names := map[string]bool{}
	for _, fw := range cfg.Frameworks {
		if fw == nil || fw.Name() == "" {
			return nil, errors.New("master: a framework has no name")
		}
		if names[fw.Name()] {
			return nil, fmt.Errorf("master: two frameworks are named %q", fw.Name())
		}
		names[fw.Name()] = true
	}
	if cfg.Store.Logger == nil {
		cfg.Store.Logger = cfg.Logger
	}
	m := &Master{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "master"),
		audit:  cfg.AuditLogger.With("component", "audit"),
		revive: make(chan struct{}, 1),
		memCh:  make(chan struct{}),
		polls:  newAgentPolls(),
	}
	m.pollMembers = cfg.Members
	m.pinger, _ = cfg.Members.(Pinger)
	m.cfg.Members = lossView{Members: cfg.Members, polls: m.polls, now: cfg.Now}
	var tc *tls.Config
	if cfg.NodeTLS != nil {
		tc = cfg.NodeTLS.ClientConfig()
	}
	m.proxyTransport = newProxyTransport(cfg.ProxyDialTimeout, tc)
	st, err := OpenStore(cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	m.store = st
	met, err := newMasterMetrics(cfg.Registry, m)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("master: registering metrics: %w", err)
	}
	m.metrics = met
	m.tracker = newAgentTracker()
	m.alloc = newAllocator(m)
	h, err := m.buildHandler()
	if err != nil {
		st.Close()
		return nil, err
	}
	m.handler = h
	return m, nil
}

// Store implements MasterHandle.
func (m *Master) Store() *Store { return m.store }

// Revive implements MasterHandle: an allocation round runs soon, and (at
// most once per MinReviveInterval) declined offers are no longer refused:
// new demand may fit agents declined for older demand.
func (m *Master) Revive() {
	m.alloc.reviveAsked.Store(true)
	select {
	case m.revive <- struct{}{}:
	default:
	}
}

// Now implements MasterHandle.
func (m *Master) Now() time.Time { return m.cfg.Now() }

// Logger implements MasterHandle.
func (m *Master) Logger(component string) Logger {
	return m.cfg.Logger.With("component", component)
}

// Nodes implements MasterHandle: every member, with Used filled from the
// master's tasks and the disk its persistent volumes reserve.
func (m *Master) Nodes() []api.Node {
	nodes := m.cfg.Members.Nodes()
	byAgent := m.agentUsage()
	probs := m.panics.problems()
	if m.cfg.Safe {
		probs = append(probs, "safe mode: every framework is paused (--safe)")
	}
	reserved := reservedDisk(m.store)
	for i := range nodes {
		nodes[i].Used = usedResources(byAgent[nodes[i].ID])
		nodes[i].Used.Disk += reserved[nodes[i].ID]
		if len(probs) > 0 && (nodes[i].ID == m.cfg.Store.NodeID || nodes[i].Name == m.cfg.Store.NodeID) {
			nodes[i].Problems = append(append([]string(nil), nodes[i].Problems...), probs...)
		}
	}
	return nodes
}

// NodesWithoutUse is Nodes without Used filled in: the membership alone,
// for callers that only need who the agents are (it reads no tasks).
func (m *Master) NodesWithoutUse() []api.Node { return m.cfg.Members.Nodes() }

// agentUsage is what the non-terminal tasks use per agent at the store's
// current index (the agent tracker keeps it up to date by the tasks that
// changed), shared read-only.
func (m *Master) agentUsage() map[string]*agentUsage {
	byAgent, _ := m.tracker.usageNow(m.store)
	return byAgent
}

// Handler is the master's whole HTTP API.
func (m *Master) Handler() http.Handler { return m.handler }

// Close closes the store; Run does it on return.
func (m *Master) Close() error {
	var err error
	m.closeOnce.Do(func() { err = m.store.Close() })
	return err
}

// membersChanged returns the membership generation and a channel closed at
// the next change.
func (m *Master) membersChanged() (uint64, <-chan struct{}) {
	m.memMu.Lock()
	defer m.memMu.Unlock()
	return m.memGen, m.memCh
}

func (m *Master) bumpMembers() {
	m.memMu.Lock()
	m.memGen++
	close(m.memCh)
	m.memCh = make(chan struct{})
	m.memMu.Unlock()
}

// Run serves until ctx ends: it tracks membership and assignments, and while
// this master leads it runs the allocator, agent-loss handling and every
// framework's Run, cancelling them when leadership is lost. It closes the
// store on return.
func (m *Master) Run(ctx context.Context) error {
	defer m.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	memSub, memCancel := m.cfg.Members.Subscribe()
	defer memCancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-memSub:
				m.bumpMembers()
				m.alloc.trigger()
			}
		}
	}()
	go func() {
		defer wg.Done()
		m.tracker.run(ctx, m.store)
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		m.bootstrapExpect(ctx)
	}()
	go func() {
		defer wg.Done()
		m.watchHangUps(ctx)
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		m.logAccessAtStart(ctx)
	}()

	leaderCh := m.store.LeaderCh()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var (
		leading    bool
		stopLeader func()
	)
	for {
		isLeader := m.store.IsLeader()
		if isLeader && !leading {
			m.log.Info("leading: starting the allocator and frameworks")
			stopLeader = m.lead(ctx)
			leading = true
		} else if !isLeader && leading {
			m.log.Warn("lost leadership: stopping the allocator and frameworks")
			stopLeader()
			leading = false
		}
		select {
		case <-ctx.Done():
			// A graceful stop hands leadership over before anything else,
			// so the others elect at once instead of after a timeout.
			start := time.Now()
			if err := m.store.TransferLeadership(); err != nil {
				m.log.Warn("stopping without handing leadership over", "err", err)
			} else if leading {
				m.log.Info("handed leadership over", "took", time.Since(start).Round(time.Millisecond))
			}
			if leading {
				stopLeader()
			}
			return nil
		case <-leaderCh:
		case <-m.store.ReadyCh():
		case <-tick.C:
		}
	}
}

// lead starts the leader's work and returns a func that stops it and waits.
func (m *Master) lead(parent context.Context) func() {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	m.ensureFrameworkID(ctx)
	wg.Add(5)
	go func() {
		defer wg.Done()
		m.reconcileVoters(ctx)
	}()
	go func() {
		defer wg.Done()
		m.watchDeadMarks(ctx)
	}()
	go func() {
		defer wg.Done()
		m.pruneIdempotency(ctx)
	}()
	go func() {
		defer wg.Done()
		m.alloc.run(ctx)
	}()
	go func() {
		defer wg.Done()
		m.watchAgentLoss(ctx)
	}()
	if m.cfg.Safe {
		m.log.Warn("safe mode: every framework is paused (no app or job is deployed, scaled or run); delete what is at fault through the API, then restart without --safe")
		return func() {
			cancel()
			wg.Wait()
		}
	}
	for _, fw := range m.cfg.Frameworks {
		wg.Add(1)
		go func(fw Framework) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					m.frameworkPanicked(fw.Name(), "Run", r)
				}
			}()
			if err := fw.Run(ctx, m); err != nil && ctx.Err() == nil {
				m.log.Error("framework stopped", "framework", fw.Name(), "err", err)
			}
		}(fw)
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

const metaFrameworkID = "frameworkId"

// ensureFrameworkID reads or creates the Marathon framework id /v2/info shows.
func (m *Master) ensureFrameworkID(ctx context.Context) {
	if e, ok := m.store.Get(TableMeta, metaFrameworkID); ok {
		var id string
		if raw, ok := e.Value.(*json.RawMessage); ok && json.Unmarshal(*raw, &id) == nil && id != "" {
			m.setFrameworkID(id)
			return
		}
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := fmt.Sprintf("%s-%s-%s-%s-%s-0000", hex.EncodeToString(b[:4]), hex.EncodeToString(b[4:6]), hex.EncodeToString(b[6:8]), hex.EncodeToString(b[8:10]), hex.EncodeToString(b[10:16]))
	raw := json.RawMessage(fmt.Sprintf("%q", id))
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := m.applyTimed(actx, "leader", []Op{Check(TableMeta, metaFrameworkID, 0), Put(TableMeta, metaFrameworkID, &raw)}); err != nil {
		m.log.Debug("framework id not written", "err", err)
		return
	}
	m.setFrameworkID(id)
}

func (m *Master) setFrameworkID(id string) {
	m.idMu.Lock()
	m.frameworkID = id
	m.idMu.Unlock()
}

func (m *Master) getFrameworkID() string {
	m.idMu.Lock()
	defer m.idMu.Unlock()
	if m.frameworkID == "" {
		if e, ok := m.store.Get(TableMeta, metaFrameworkID); ok {
			if raw, ok := e.Value.(*json.RawMessage); ok {
				_ = json.Unmarshal(*raw, &m.frameworkID)
			}
		}
	}
	return m.frameworkID
}

// leaderAPI returns the leading master's API address, or "" with no leader.
func (m *Master) leaderAPI() string {
	if m.store.RaftLeader() {
		if m.store.IsLeader() {
			return m.cfg.APIAdvertise
		}
		return "" // elected, still applying the log
	}
	addr, id := m.store.Raft().LeaderWithID()
	if addr == "" {
		return ""
	}
	for _, n := range m.cfg.Members.Nodes() {
		if n.API != "" && (n.ID == string(id) || n.Name == string(id)) {
			return n.API
		}
	}
	return ""
}

// applyTimed is Store.Apply with the master's apply metrics.
func (m *Master) applyTimed(ctx context.Context, caller string, ops []Op, events ...api.Event) (uint64, error) {
	start := time.Now()
	idx, err := m.store.Apply(ctx, ops, events...)
	m.metrics.observeApply(caller, time.Since(start), err)
	return idx, err
}
