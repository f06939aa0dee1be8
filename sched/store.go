package sched

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/sched/api"
)

// Tables of the master's state. Each holds values of one Go type; the FSM
// decodes them once when a command is applied and readers get the typed
// value. Values handed out by Get and List are shared: never modify them,
// copy and Put instead.
const (
	TableApps        = "apps"        // app id → *api.App, the current version
	TableAppVersions = "appversions" // app id + "@" + version → *api.App
	TableTasks       = "tasks"       // task id → *TaskRecord
	TableDeployments = "deployments" // deployment id → *api.Deployment
	TableJobs        = "jobs"        // job name → *api.Job
	TableJobRuns     = "jobruns"     // run id → *api.JobRun
	TableMeta        = "meta"        // key → *json.RawMessage, for small framework state
	// TableReservations holds the persistent volumes of resident app
	// instances: reservation id → *api.Reservation.
	TableReservations = "reservations"
)

// TaskRecord is a task as the master keeps it: what Marathon shows, how the
// agent runs it, and whether it should run.
type TaskRecord struct {
	Task api.Task     `json:"task"`
	Spec api.TaskSpec `json:"spec"`
	Goal string       `json:"goal"` // api.GoalRun or api.GoalKill
	// UpdatedAt is when the task last changed state (RFC 3339).
	UpdatedAt string `json:"updatedAt,omitempty"`
}

var tableTypes = map[string]func() any{
	TableApps:         func() any { return new(api.App) },
	TableAppVersions:  func() any { return new(api.App) },
	TableTasks:        func() any { return new(TaskRecord) },
	TableDeployments:  func() any { return new(api.Deployment) },
	TableJobs:         func() any { return new(api.Job) },
	TableJobRuns:      func() any { return new(api.JobRun) },
	TableMeta:         func() any { return new(json.RawMessage) },
	TableReservations: func() any { return new(api.Reservation) },
}

// OpKind says what an Op does.
type OpKind string

const (
	OpPut    OpKind = "put"
	OpDelete OpKind = "delete"
	// OpCheck fails the whole command with ErrConflict unless the key's
	// ModifyIndex equals Op.Index (0: the key must not exist).
	OpCheck OpKind = "check"
)

// Op is one change in a command. Ops of one Apply are atomic: all or none.
type Op struct {
	Kind  OpKind `json:"kind"`
	Table string `json:"table"`
	Key   string `json:"key"`
	Value any    `json:"value,omitempty"`
	Index uint64 `json:"index,omitempty"`
	// owned: the caller hands Value over to the store (see putOwned).
	owned bool
}

// Put, Delete and Check build Ops.
func Put(table, key string, v any) Op { return Op{Kind: OpPut, Table: table, Key: key, Value: v} }
func Delete(table, key string) Op     { return Op{Kind: OpDelete, Table: table, Key: key} }
func Check(table, key string, idx uint64) Op {
	return Op{Kind: OpCheck, Table: table, Key: key, Index: idx}
}

// putOwned is Put of a value the caller has just built and hands over:
// nothing else holds it or changes it afterwards. When v is of its table's
// type (a *TaskRecord for TableTasks), the leader's state machine stores v
// itself instead of decoding it again from the raft entry it was encoded
// into; followers, and the leader replaying its log, decode it as ever.
// That is only right for values whose JSON round trip gives them back
// unchanged (see ownable and TestOwnableValuesRoundTrip): the allocator's
// new tasks.
func putOwned(table, key string, v any) Op {
	op := Put(table, key, v)
	op.owned = true
	return op
}

// ownable reports whether the leader may keep v, handed over with
// putOwned, as table's value instead of decoding it: v is of the table's
// type and its JSON round trip gives it back unchanged. Only new tasks
// qualify: a task's health results lose their taskId in JSON (Marathon
// writes instanceId alone), so a task with results is decoded as ever.
func ownable(table string, v any) bool {
	switch table {
	case TableTasks:
		rec, ok := v.(*TaskRecord)
		return ok && rec != nil && len(rec.Task.HealthCheckResults) == 0
	}
	return false
}

// Entry is a stored value with its indexes.
type Entry struct {
	Key         string
	Value       any
	CreateIndex uint64
	ModifyIndex uint64
}

var (
	// ErrNotLeader is returned by Apply on a follower.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrConflict is returned when an OpCheck fails; nothing was written.
	ErrConflict = errors.New("store conflict: the state changed underneath")
)

// command is what goes through the raft log.
type command struct {
	Ops    []wireOp    `json:"ops"`
	Events []api.Event `json:"events,omitempty"`
}

type wireOp struct {
	Kind  OpKind          `json:"kind"`
	Table string          `json:"table"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
	Index uint64          `json:"index,omitempty"`
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir holds raft.db and snapshots. Empty keeps everything in memory.
	Dir string
	// NodeID is this server's raft id; it defaults to "weft".
	NodeID string
	// Bind is the raft TCP address ("host:port"). Empty uses an in-process
	// transport: one voter, as `weft up` runs it.
	Bind string
	// Advertise is the raft address peers dial; it defaults to Bind.
	Advertise string
	// TLS, when set, runs raft over mutual TLS with the cluster CA (Bind
	// must be set): a peer without a node certificate is refused at the
	// handshake.
	TLS *nodetls.Identity
	// Bootstrap makes this server form a new single-voter cluster when it
	// has no raft state yet.
	Bootstrap bool
	// SnapshotThreshold is how many log entries trigger a snapshot.
	SnapshotThreshold uint64
	// Timing is raft's heartbeat, election and lease timeouts for masters
	// talking over TCP (zero: RaftLAN). The in-process single voter uses
	// its own short timeouts.
	Timing RaftTiming
	Logger *slog.Logger
}

// RaftTiming is how quickly raft notices a dead leader. A follower that
// has heard nothing for Heartbeat (randomised up to twice that) stands for
// election; a candidate gives up on a split vote after Election (likewise
// randomised); a leader that cannot reach a quorum for LeaderLease steps
// down. The leader sends heartbeats every Heartbeat/10.
type RaftTiming struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	// Commit is how long the leader waits to batch log entries.
	Commit time.Duration
}

// RaftLAN is the timing for masters on one LAN or in one cloud region
// (round trips under ~10 ms): a dead leader is replaced in about 0.3-0.9 s
// (a follower checks its leader at random intervals of 300-600 ms and
// stands once 300 ms have passed without a heartbeat). Heartbeats every
// 30 ms leave a loaded host ten chances before a follower gives up on its
// leader.
func RaftLAN() RaftTiming {
	return RaftTiming{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, LeaderLease: 150 * time.Millisecond, Commit: 10 * time.Millisecond}
}

// RaftWAN is the timing for masters spread over sites (`--raft-profile
// wan`; round trips up to ~300 ms, lossy links): a dead leader is replaced
// in about 1.5-3.5 s, and a burst of loss on a long link does not depose a
// healthy one.
func RaftWAN() RaftTiming {
	return RaftTiming{Heartbeat: 1500 * time.Millisecond, Election: 1500 * time.Millisecond, LeaderLease: 750 * time.Millisecond, Commit: 50 * time.Millisecond}
}

// RaftProfile returns the timing named by `--raft-profile` (lan or wan).
func RaftProfile(name string) (RaftTiming, error) {
	switch name {
	case "", "lan":
		return RaftLAN(), nil
	case "wan":
		return RaftWAN(), nil
	}
	return RaftTiming{}, fmt.Errorf("raft profile %q: want lan or wan", name)
}

// DefaultStoreConfig is what `weft up` uses.
func DefaultStoreConfig() StoreConfig {
	return StoreConfig{NodeID: "weft", Bootstrap: true, SnapshotThreshold: 8192}
}

// Store is the master's replicated state: typed tables in a raft FSM, an
// index raised on every write, blocking watches, and an event feed.
type Store struct {
	cfg    StoreConfig
	log    *slog.Logger
	raft   *raft.Raft
	closer []io.Closer
	trans  raft.Transport

	mu      sync.RWMutex
	tables  map[string]map[string]*Entry
	index   uint64
	changed chan struct{} // closed and replaced on every write
	// writes remembers which keys the last writes touched, oldest first,
	// so readers that keep their own index of a table can follow it by
	// looking at what changed instead of at the whole table. Writes at
	// indexes up to writesFrom are forgotten.
	writes     []keyWrite
	writesFrom uint64

	subMu sync.Mutex
	subs  map[chan api.Event]struct{}

	// proposed holds the commands this server's Apply has handed to raft
	// and not yet seen applied, keyed by the first byte of the entry's
	// data: on the leader raft gives the state machine the very slice it
	// was handed, so Apply finds there the ops it would otherwise decode.
	propMu   sync.Mutex
	proposed map[*byte]*proposal

	// readyTerm is the raft term whose barrier has been applied (see
	// IsLeader); barrier is set while one runs.
	readyTerm atomic.Uint64
	barrier   atomic.Bool
	ready     chan struct{}
}

// OpenStore opens (or creates) the store and starts raft.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.NodeID == "" {
		cfg.NodeID = "weft"
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "store"),
		tables:  map[string]map[string]*Entry{},
		changed: make(chan struct{}),
		subs:    map[chan api.Event]struct{}{},
		ready:   make(chan struct{}, 1),

		proposed: map[*byte]*proposal{},
	}
	for t := range tableTypes {
		s.tables[t] = map[string]*Entry{}
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{s.log}})
	if cfg.Bind == "" {
		// One voter in-process: elections need no waiting.
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	} else {
		tm := cfg.Timing
		if tm.Heartbeat <= 0 {
			tm = RaftLAN()
		}
		rc.HeartbeatTimeout = tm.Heartbeat
		rc.ElectionTimeout = max(tm.Election, tm.Heartbeat)
		rc.LeaderLeaseTimeout = min(max(tm.LeaderLease, 5*time.Millisecond), tm.Heartbeat)
		rc.CommitTimeout = max(tm.Commit, time.Millisecond)
	}

	var (
		logs  raft.LogStore
		stab  raft.StableStore
		snaps raft.SnapshotStore
		err   error
	)
	if cfg.Dir == "" {
		mem := raft.NewInmemStore()
		logs, stab, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating raft dir %s: %w", cfg.Dir, err)
		}
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w (is another weft using this data dir?)", filepath.Join(cfg.Dir, "raft.db"), err)
		}
		s.closer = append(s.closer, bolt)
		logs, stab = newLogCache(bolt), bolt
		snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, rc.Logger)
		if err != nil {
			return nil, fmt.Errorf("opening raft snapshots in %s: %w", cfg.Dir, err)
		}
	}

	var addr raft.ServerAddress
	if cfg.Bind == "" {
		a, t := raft.NewInmemTransport(raft.ServerAddress("inmem-" + cfg.NodeID))
		addr, s.trans = a, t
	} else {
		adv := cfg.Advertise
		if adv == "" {
			adv = cfg.Bind
		}
		tcpAdv, err := net.ResolveTCPAddr("tcp", adv)
		if err != nil {
			return nil, fmt.Errorf("raft advertise address %q: %w", adv, err)
		}
		var t *raft.NetworkTransport
		if cfg.TLS != nil {
			stream, err := newTLSStream(cfg.Bind, tcpAdv, cfg.TLS)
			if err != nil {
				return nil, fmt.Errorf("raft listening on %s: %w", cfg.Bind, err)
			}
			t = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: rc.Logger})
		} else if t, err = raft.NewTCPTransportWithLogger(cfg.Bind, tcpAdv, 3, 10*time.Second, rc.Logger); err != nil {
			return nil, fmt.Errorf("raft listening on %s: %w", cfg.Bind, err)
		}
		s.closer = append(s.closer, t)
		addr, s.trans = t.LocalAddr(), t
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, stab, snaps)
		if err != nil {
			return nil, fmt.Errorf("reading raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: addr}}}
			if err := raft.BootstrapCluster(rc, logs, stab, snaps, s.trans, conf); err != nil {
				return nil, fmt.Errorf("bootstrapping raft: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, (*fsm)(s), logs, stab, snaps, s.trans)
	if err != nil {
		return nil, fmt.Errorf("starting raft: %w", err)
	}
	s.raft = r
	return s, nil
}

// TransferLeadership hands leadership to the most up-to-date other voter
// when this server leads one of several, and waits (bounded by raft's
// election timeout) until it is done. A master stopping gracefully calls it
// first, so the cluster is without a leader only for one round of votes
// instead of a heartbeat timeout and an election.
func (s *Store) TransferLeadership() error {
	if s.raft.State() != raft.Leader {
		return nil
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("reading the raft configuration: %w", err)
	}
	voters := 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return nil
	}
	if err := s.handOff(); err != nil {
		return fmt.Errorf("transferring raft leadership: %w", err)
	}
	return nil
}

// handOff hands raft leadership to another voter. raft picks
// the most up-to-date follower, which can be a voter that is down (a
// killed master stays a voter until it is removed), and then fails at
// dialling it; each other voter is tried in turn before giving up.
func (s *Store) handOff() error {
	err := s.raft.LeadershipTransfer().Error()
	if err == nil {
		return nil
	}
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return err
	}
	_, self := s.raft.LeaderWithID()
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage != raft.Voter || srv.ID == self {
			continue
		}
		if e := s.raft.LeadershipTransferToServer(srv.ID, srv.Address).Error(); e == nil {
			return nil
		} else {
			err = e
		}
	}
	return err
}

// Close stops raft and closes the files.
func (s *Store) Close() error {
	var errs []error
	if s.raft != nil {
		errs = append(errs, s.raft.Shutdown().Error())
	}
	for i := len(s.closer) - 1; i >= 0; i-- {
		errs = append(errs, s.closer[i].Close())
	}
	s.subMu.Lock()
	for ch := range s.subs {
		close(ch)
		delete(s.subs, ch)
	}
	s.subMu.Unlock()
	return errors.Join(errs...)
}

// Raft exposes the raft node (membership changes, stats).
func (s *Store) Raft() *raft.Raft { return s.raft }

// IsLeader reports whether this server leads and its state has caught up
// with the log. A server that has just won an election (on restart, at
// once) may not yet have applied the entries it committed before: until a
// barrier of the new term has gone through, its tables are stale, and
// acting or answering on them would show apps as missing. The first call
// in a new term starts that barrier and reports false until it is done.
func (s *Store) IsLeader() bool {
	if s.raft.State() != raft.Leader {
		return false
	}
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() == term {
		return true
	}
	if s.barrier.CompareAndSwap(false, true) {
		go func() {
			defer s.barrier.Store(false)
			if err := s.raft.Barrier(time.Minute).Error(); err != nil {
				s.log.Warn("raft barrier after election failed; not leading yet", "err", err)
				return
			}
			s.readyTerm.Store(term)
			select {
			case s.ready <- struct{}{}:
			default:
			}
		}()
	}
	return false
}

// ReadyCh signals when a barrier after an election has gone through, so
// IsLeader has just turned true.
func (s *Store) ReadyCh() <-chan struct{} { return s.ready }

// RaftLeader reports whether raft has elected this server, caught up or not.
func (s *Store) RaftLeader() bool { return s.raft.State() == raft.Leader }

// LeaderCh signals leadership changes (true when this server becomes leader).
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// WaitLeader blocks until some server leads, or ctx ends.
func (s *Store) WaitLeader(ctx context.Context) error {
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a raft leader: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Apply commits ops atomically through raft and publishes events after they
// are applied. It returns the new index.
func (s *Store) Apply(ctx context.Context, ops []Op, events ...api.Event) (uint64, error) {
	if len(ops) == 0 && len(events) == 0 {
		return s.Index(), nil
	}
	cmd := command{Events: events}
	if a := AuthzFrom(ctx); a != nil && a.Node == "" && len(events) > 0 {
		// Name the token on the events of its call (a copy: the caller's
		// slice is left alone).
		cmd.Events = make([]api.Event, len(events))
		for i, ev := range events {
			if ev.Token == "" {
				ev.Token = a.Label()
			}
			cmd.Events[i] = ev
		}
	}
	b, spans, err := encodeCommand(ops, cmd.Events)
	if err != nil {
		return 0, err
	}
	key := &b[0]
	s.propMu.Lock()
	s.proposed[key] = newProposal(ops, cmd.Events, spans, len(b))
	s.propMu.Unlock()
	defer func() {
		s.propMu.Lock()
		delete(s.proposed, key)
		s.propMu.Unlock()
	}()
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := s.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("store: raft apply: %w", err)
	}
	if e, ok := f.Response().(error); ok && e != nil {
		return 0, e
	}
	return f.Index(), nil
}

// proposal is a command as Apply proposed it: the ops without their
// values, the values of owned puts of their table's type, where in the
// entry the other puts' values are, and the events (a copy: the state
// machine sets their index).
type proposal struct {
	ops    []wireOp
	vals   []any
	spans  []valueSpan
	events []api.Event
	size   int // len of the entry's data
}

func newProposal(ops []Op, events []api.Event, spans []valueSpan, size int) *proposal {
	p := &proposal{ops: make([]wireOp, len(ops)), vals: make([]any, len(ops)), spans: spans, size: size}
	for i, op := range ops {
		p.ops[i] = wireOp{Kind: op.Kind, Table: op.Table, Key: op.Key, Index: op.Index}
		if op.owned && op.Kind == OpPut && ownable(op.Table, op.Value) {
			p.vals[i] = op.Value
		}
	}
	if len(events) > 0 {
		p.events = append([]api.Event(nil), events...)
	}
	return p
}

// valueSpan is where an op's value is in an encoded command: data[from:to].
type valueSpan struct{ from, to int }

// opBytes is a running estimate of the encoded size of an op, so the
// buffer of a command of thousands of ops is allocated once instead of
// doubled (and cleared) a dozen times.
var opBytes atomic.Int64

// encodeCommand writes the command of ops and events as json.Marshal of a
// command would, each op's value encoded in place: marshalling each value
// on its own and then the command copied and rescanned every value again
// (a json.RawMessage is compacted when marshalled), which showed in the
// allocator's commits of thousands of tasks. spans says where each put's
// value is.
func encodeCommand(ops []Op, events []api.Event) ([]byte, []valueSpan, error) {
	var buf bytes.Buffer
	per := max(opBytes.Load(), 256)
	buf.Grow(256 + int(per+per/4)*len(ops))
	spans := make([]valueSpan, len(ops))
	enc := json.NewEncoder(&buf)
	buf.WriteString(`{"ops":[`)
	for i, op := range ops {
		if _, ok := tableTypes[op.Table]; !ok {
			return nil, nil, fmt.Errorf("store: unknown table %q", op.Table)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		// The op without its value, then its closing brace replaced by
		// the value.
		if err := enc.Encode(wireOp{Kind: op.Kind, Table: op.Table, Key: op.Key, Index: op.Index}); err != nil {
			return nil, nil, err
		}
		buf.Truncate(buf.Len() - 2) // "}\n"
		if op.Kind == OpPut {
			buf.WriteString(`,"value":`)
			from := buf.Len()
			if err := enc.Encode(op.Value); err != nil {
				return nil, nil, fmt.Errorf("store: encoding %s/%s: %w", op.Table, op.Key, err)
			}
			spans[i] = valueSpan{from, buf.Len()}
		}
		buf.WriteByte('}')
	}
	buf.WriteByte(']')
	if len(events) > 0 {
		buf.WriteString(`,"events":`)
		if err := enc.Encode(events); err != nil {
			return nil, nil, err
		}
	}
	buf.WriteByte('}')
	if len(ops) >= 16 {
		opBytes.Store(int64(buf.Len() / len(ops)))
	}
	return buf.Bytes(), spans, nil
}

// Index is the index of the last applied write.
func (s *Store) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Get returns one entry.
func (s *Store) Get(table, key string) (Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.tables[table][key]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// List returns a table's entries sorted by key.
func (s *Store) List(table string) []Entry {
	s.mu.RLock()
	t := s.tables[table]
	out := make([]Entry, 0, len(t))
	for _, e := range t {
		out = append(out, *e)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// ListPrefix returns the entries of table whose keys begin with prefix,
// sorted by key: List without copying and sorting the rest of the table
// (the meta table holds several kinds of keys).
func (s *Store) ListPrefix(table, prefix string) []Entry {
	s.mu.RLock()
	var out []Entry
	for k, e := range s.tables[table] {
		if strings.HasPrefix(k, prefix) {
			out = append(out, *e)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// keyWrite is one key a write (at index) put or deleted.
type keyWrite struct {
	index      uint64
	table, key string
}

// maxWrites bounds the keys the store remembers for ReadChanged; once it
// holds twice that many it forgets the older half.
var maxWrites = 1 << 16

// ReadChanged is Read that also hands fn the keys of table put or deleted
// at indexes above after (oldest first, a key once per write), with
// complete false when the store no longer remembers that far back (after a
// snapshot restore, or more than about 64k writes ago): fn must then look
// at the whole table.
func (s *Store) ReadChanged(table string, after uint64, fn func(index uint64, tables map[string]map[string]*Entry, keys []string, complete bool)) {
	s.ReadChangedTables(after, func(index uint64, tables map[string]map[string]*Entry, keys map[string][]string, complete bool) {
		fn(index, tables, keys[table], complete)
	})
}

// ReadChangedTables is ReadChanged for every table: keys maps a table to
// its keys written after the index (tables not written are absent).
func (s *Store) ReadChangedTables(after uint64, fn func(index uint64, tables map[string]map[string]*Entry, keys map[string][]string, complete bool)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if after < s.writesFrom || after > s.index {
		fn(s.index, s.tables, nil, false)
		return
	}
	i := sort.Search(len(s.writes), func(i int) bool { return s.writes[i].index > after })
	keys := map[string][]string{}
	for _, w := range s.writes[i:] {
		keys[w.table] = append(keys[w.table], w.key)
	}
	fn(s.index, s.tables, keys, true)
}

// Read runs fn with a consistent view of every table; fn must not call
// other Store methods and must not keep the map.
func (s *Store) Read(fn func(index uint64, tables map[string]map[string]*Entry)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.index, s.tables)
}

// Watch blocks until the index is above after, then returns it. It returns
// the current index with ctx's error when ctx ends first.
func (s *Store) Watch(ctx context.Context, after uint64) (uint64, error) {
	for {
		s.mu.RLock()
		idx, ch := s.index, s.changed
		s.mu.RUnlock()
		if idx > after {
			return idx, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return idx, ctx.Err()
		}
	}
}

// Subscribe returns a channel of events as they are applied. A subscriber
// that falls buf events behind loses events (they are cache invalidations;
// re-read the state). cancel must be called.
func (s *Store) Subscribe(buf int) (<-chan api.Event, func()) {
	ch := make(chan api.Event, buf)
	s.subMu.Lock()
	s.subs[ch] = struct{}{}
	s.subMu.Unlock()
	return ch, func() {
		s.subMu.Lock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
		s.subMu.Unlock()
	}
}

// Publish sends events to subscribers without writing to the log: for
// events that are not state (event_stream_attached, failed checks).
func (s *Store) Publish(events ...api.Event) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ev := range events {
		for ch := range s.subs {
			select {
			case ch <- ev:
			default:
			}
		}
	}
}

// fsm is the raft state machine view of the Store.
type fsm Store

// Apply applies one raft entry. A panic while applying it is logged with
// the entry's index and stack and answered as an error, instead of taking
// the node down on every replay of the log: the node comes up and the
// operator can remove what the entry was about.
func (f *fsm) Apply(l *raft.Log) (res any) {
	s := (*Store)(f)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("applying a raft entry panicked; the entry is skipped", "index", l.Index, "panic", r, "stack", string(debug.Stack()))
			res = fmt.Errorf("store: applying entry %d: panic: %v", l.Index, r)
		}
	}()
	if l.Type != raft.LogCommand {
		return nil
	}
	var p *proposal
	if len(l.Data) > 0 {
		s.propMu.Lock()
		if p = s.proposed[&l.Data[0]]; p != nil {
			delete(s.proposed, &l.Data[0])
		}
		s.propMu.Unlock()
	}
	var (
		cmd  command
		vals []any
		err  error
	)
	if p != nil && p.size == len(l.Data) {
		cmd, vals, err = p.decode(l.Data)
	} else {
		cmd, vals, err = decodeCommand(l.Data)
	}
	if err != nil {
		return err
	}
	if err := f.applyOps(l.Index, &cmd, vals); err != nil {
		return err
	}
	for i := range cmd.Events {
		cmd.Events[i].Index = l.Index
	}
	s.Publish(cmd.Events...)
	return nil
}

// decodeCommand decodes a raft entry's command and its ops' values. The
// values are decoded before anything is applied, so a bad value fails the
// command before anything changes.
func decodeCommand(data []byte) (command, []any, error) {
	var cmd command
	if err := json.Unmarshal(data, &cmd); err != nil {
		return command{}, nil, fmt.Errorf("store: decoding command: %w", err)
	}
	vals := make([]any, len(cmd.Ops))
	for i, op := range cmd.Ops {
		if op.Kind != OpPut {
			continue
		}
		v, err := decodeValue(op.Table, op.Key, op.Value)
		if err != nil {
			return command{}, nil, err
		}
		vals[i] = v
	}
	return cmd, vals, nil
}

func decodeValue(table, key string, b []byte) (any, error) {
	mk, ok := tableTypes[table]
	if !ok {
		return nil, fmt.Errorf("store: unknown table %q", table)
	}
	v := mk()
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("store: decoding %s/%s: %w", table, key, err)
	}
	return v, nil
}

// decode is decodeCommand of the entry data this server proposed: the
// owned values are taken as they are, the others decoded from where they
// are in data, and the envelope is not decoded at all.
func (p *proposal) decode(data []byte) (command, []any, error) {
	vals := make([]any, len(p.ops))
	for i, op := range p.ops {
		if op.Kind != OpPut {
			continue
		}
		if p.vals[i] != nil {
			vals[i] = p.vals[i]
			continue
		}
		sp := p.spans[i]
		v, err := decodeValue(op.Table, op.Key, data[sp.from:sp.to])
		if err != nil {
			return command{}, nil, err
		}
		vals[i] = v
	}
	return command{Ops: p.ops, Events: p.events}, vals, nil
}

// applyOps checks and writes a command's ops under the store's lock.
func (f *fsm) applyOps(index uint64, cmd *command, vals []any) error {
	s := (*Store)(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range cmd.Ops {
		if op.Kind != OpCheck {
			continue
		}
		e, ok := s.tables[op.Table][op.Key]
		if (op.Index == 0 && ok) || (op.Index != 0 && (!ok || e.ModifyIndex != op.Index)) {
			return fmt.Errorf("%w: %s/%s", ErrConflict, op.Table, op.Key)
		}
	}
	for i, op := range cmd.Ops {
		t := s.tables[op.Table]
		switch op.Kind {
		case OpPut:
			if e, ok := t[op.Key]; ok {
				t[op.Key] = &Entry{Key: op.Key, Value: vals[i], CreateIndex: e.CreateIndex, ModifyIndex: index}
			} else {
				t[op.Key] = &Entry{Key: op.Key, Value: vals[i], CreateIndex: index, ModifyIndex: index}
			}
		case OpDelete:
			delete(t, op.Key)
		}
		if op.Kind != OpCheck {
			s.writes = append(s.writes, keyWrite{index: index, table: op.Table, key: op.Key})
		}
	}
	if len(s.writes) > 2*maxWrites {
		// Forget whole indexes only: writesFrom is the last one forgotten.
		cut := len(s.writes) - maxWrites
		for cut < len(s.writes) && s.writes[cut].index == s.writes[cut-1].index {
			cut++
		}
		s.writesFrom = s.writes[cut-1].index
		s.writes = append([]keyWrite(nil), s.writes[cut:]...)
	}
	s.index = index
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

type snapEntry struct {
	Value       json.RawMessage `json:"v"`
	CreateIndex uint64          `json:"c"`
	ModifyIndex uint64          `json:"m"`
}

type snapshot struct {
	Index  uint64                          `json:"index"`
	Tables map[string]map[string]snapEntry `json:"tables"`
}

// Snapshot copies the tables' entry pointers under the lock (entries and
// their values are never modified once stored, writes replace them) and
// leaves the encoding to Persist, which raft runs while writes go on: a
// snapshot of a large state does not hold up readers and writers.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s := (*Store)(f)
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &lazySnapshot{index: s.index, tables: make(map[string]map[string]*Entry, len(s.tables))}
	for name, t := range s.tables {
		m := make(map[string]*Entry, len(t))
		for k, e := range t {
			m[k] = e
		}
		snap.tables[name] = m
	}
	return snap, nil
}

// lazySnapshot is the state at one index, encoded when persisted.
type lazySnapshot struct {
	index  uint64
	tables map[string]map[string]*Entry
}

func (l *lazySnapshot) encode() (snapshot, error) {
	snap := snapshot{Index: l.index, Tables: map[string]map[string]snapEntry{}}
	for name, t := range l.tables {
		m := make(map[string]snapEntry, len(t))
		for k, e := range t {
			b, err := json.Marshal(e.Value)
			if err != nil {
				return snapshot{}, fmt.Errorf("store: snapshot of %s/%s: %w", name, k, err)
			}
			m[k] = snapEntry{Value: b, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}
		}
		snap.Tables[name] = m
	}
	return snap, nil
}

func (l *lazySnapshot) Persist(sink raft.SnapshotSink) error {
	snap, err := l.encode()
	if err != nil {
		sink.Cancel()
		return err
	}
	return snap.Persist(sink)
}

func (*lazySnapshot) Release() {}

func (f *fsm) Restore(rc io.ReadCloser) error {
	s := (*Store)(f)
	defer rc.Close()
	var snap snapshot
	if err := json.NewDecoder(rc).Decode(&snap); err != nil {
		return fmt.Errorf("store: decoding snapshot: %w", err)
	}
	tables := map[string]map[string]*Entry{}
	for t := range tableTypes {
		tables[t] = map[string]*Entry{}
	}
	for name, t := range snap.Tables {
		mk, ok := tableTypes[name]
		if !ok {
			continue
		}
		for k, e := range t {
			v := mk()
			if err := json.Unmarshal(e.Value, v); err != nil {
				return fmt.Errorf("store: restoring %s/%s: %w", name, k, err)
			}
			tables[name][k] = &Entry{Key: k, Value: v, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}
		}
	}
	s.mu.Lock()
	s.tables, s.index = tables, snap.Index
	s.writes, s.writesFrom = nil, snap.Index
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (snap snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(snap); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}

// slogWriter adapts hclog output to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(string(p))
	return len(p), nil
}
