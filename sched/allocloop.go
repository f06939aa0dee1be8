package sched

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// allocator is the thin loop around the pure core in alloc.go: it runs a
// round on every change to tasks, on membership changes, on Revive and on
// the AllocInterval timer, and commits each framework's answer in one Apply.
type allocator struct {
	m        *Master
	wake     chan struct{}
	refusals refusals // owned by the run goroutine
	seq      atomic.Uint64
	prefix   string
	rounds   atomic.Uint64

	// reviveAsked is set by Revive: like Mesos' reviveOffers it lifts the
	// refusals of declined offers, at most once per MinReviveInterval so a
	// framework that revives in every loop cannot make declines meaningless.
	reviveAsked atomic.Bool
	lastClear   time.Time // owned by the run goroutine
}

func newAllocator(m *Master) *allocator {
	return &allocator{
		m:        m,
		wake:     make(chan struct{}, 1),
		refusals: refusals{},
		prefix:   strconv.FormatInt(time.Now().UnixNano(), 36),
	}
}

// trigger asks for a round soon; triggers coalesce.
func (a *allocator) trigger() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run runs rounds until ctx ends.
func (a *allocator) run(ctx context.Context) {
	go a.watchTasks(ctx)
	t := time.NewTicker(a.m.cfg.AllocInterval)
	defer t.Stop()
	a.round(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-a.m.revive:
		case <-t.C:
		}
		a.round(ctx)
	}
}

// watchTasks triggers a round when the tasks table changes (not on writes
// to other tables, so a framework that records bookkeeping in every round
// does not spin the allocator). The agent tracker already diffs the table
// on every write; this follows its generation.
func (a *allocator) watchTasks(ctx context.Context) {
	last, ch := a.m.tracker.tasksChanged()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		var gen uint64
		gen, ch = a.m.tracker.tasksChanged()
		if gen != last {
			last = gen
			a.trigger()
		}
	}
}

type agentSlot struct {
	node api.Node
	free api.Resources
	fp   string
}

// round makes one round of offers to every framework that wants some.
func (a *allocator) round(ctx context.Context) {
	m := a.m
	now := m.cfg.Now()
	a.rounds.Add(1)
	a.refusals.gc(now)
	if a.reviveAsked.Load() && now.Sub(a.lastClear) >= m.cfg.MinReviveInterval {
		a.reviveAsked.Store(false)
		clear(a.refusals)
		a.lastClear = now
	}

	var wanting []Framework
	for _, fw := range m.cfg.Frameworks {
		if m.safeWants(fw) {
			wanting = append(wanting, fw)
		}
	}
	if len(wanting) == 0 {
		return
	}

	nodes := m.cfg.Members.Nodes()
	byAgent, byFw := m.tracker.usageNow(m.store)

	var (
		slots []*agentSlot
		total api.Resources
	)
	reserved := reservedDisk(m.store)
	for _, n := range nodes {
		if !schedulable(n) {
			continue
		}
		total = addScalars(total, n.Resources)
		free := freeResources(n.Resources, byAgent[n.ID])
		free.Disk = clamp(free.Disk - reserved[n.ID])
		slots = append(slots, &agentSlot{node: n, free: free, fp: agentFingerprint(n, free)})
	}
	if len(slots) == 0 {
		return
	}

	byName := map[string]Framework{}
	names := make([]string, 0, len(wanting))
	for _, fw := range wanting {
		byName[fw.Name()] = fw
		names = append(names, fw.Name())
	}
	for _, name := range drfOrder(names, byFw, total) {
		if ctx.Err() != nil {
			return
		}
		a.offer(ctx, byName[name], slots, now)
	}
}

// offer makes one framework one offer per unrefused agent with free
// resources, validates its answer and commits it.
func (a *allocator) offer(ctx context.Context, fw Framework, slots []*agentSlot, now time.Time) {
	m := a.m
	name := fw.Name()
	states := map[string]*offerState{}
	slotOf := map[string]*agentSlot{}
	offers := make([]api.Offer, 0, len(slots))
	for _, s := range slots {
		if !hasFree(s.free) || a.refusals.refused(name, s.node.ID, s.fp, now) {
			continue
		}
		id := a.prefix + "-O" + strconv.FormatUint(a.seq.Add(1), 10)
		o := api.Offer{
			ID:           id,
			AgentID:      s.node.ID,
			Hostname:     nodeHostname(s.node),
			Site:         s.node.Site,
			Role:         s.node.AgentRole,
			Attributes:   s.node.Attributes,
			Capabilities: s.node.Capabilities,
			Resources:    s.free,
		}
		if o.Role == "" {
			o.Role = "*"
		}
		offers = append(offers, o)
		states[id] = &offerState{offer: o, node: s.node, left: s.free}
		slotOf[id] = s
	}
	if len(offers) == 0 {
		return
	}
	m.metrics.offers.WithLabelValues(name).Add(float64(len(offers)))

	res, err := m.safeOffers(ctx, fw, offers)
	if err != nil {
		m.log.Error("framework failed on offers", "framework", name, "err", err)
		return
	}
	exists := func(id string) bool { _, ok := m.store.Get(TableTasks, id); return ok }
	accepted, rejected := acceptLaunches(name, states, res.Launches, exists, now)
	for _, r := range rejected {
		m.log.Warn("launch dropped", "framework", name, "task", r.TaskID, "reason", r.Reason)
	}

	used := map[string]bool{}
	for _, rec := range accepted {
		used[rec.Task.SlaveID] = true
	}
	for _, d := range res.Declines {
		st, ok := states[d.OfferID]
		if !ok || used[st.node.ID] {
			continue
		}
		refuse := d.RefuseFor
		if refuse <= 0 {
			refuse = m.cfg.RefuseDefault
		}
		a.refusals.refuse(name, st.node.ID, slotOf[d.OfferID].fp, now.Add(refuse))
		m.metrics.declined.WithLabelValues(name).Inc()
	}

	if len(accepted) == 0 && len(res.Ops) == 0 && len(res.Events) == 0 {
		return
	}
	ops := make([]Op, 0, 2*len(accepted)+len(res.Ops))
	for i := range accepted {
		// Each record on its own, handed to the store: the leader keeps it
		// as its task instead of decoding it back from the raft entry.
		rec := new(TaskRecord)
		*rec = accepted[i]
		ops = append(ops, Check(TableTasks, rec.Task.ID, 0), putOwned(TableTasks, rec.Task.ID, rec))
	}
	ops = append(ops, res.Ops...)
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.commit(actx, ops, len(res.Ops) == 0 && len(res.Events) == 0, res.Events); err != nil {
		lvl := m.log.Error
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrNotLeader) {
			lvl = m.log.Warn
		}
		lvl("committing launches failed; the framework will get new offers", "framework", name, "launches", len(accepted), "err", err)
		return
	}
	m.metrics.placements.WithLabelValues(name).Add(float64(len(accepted)))
	// What is left of each used offer stays available to the next framework
	// in this round.
	for id, st := range states {
		if !used[st.node.ID] {
			continue
		}
		s := slotOf[id]
		s.free = st.left
		s.free.Ports = cutPorts(st.offer.Resources.Ports, st.ports)
		s.fp = agentFingerprint(s.node, s.free)
	}
}

// commitChunk is the most launches the allocator commits in one raft
// entry when an answer has no other ops.
const commitChunk = 1000

// commit applies an answer's ops. A large answer of launches alone
// (splittable: each task's Check and Put stand on their own) goes in
// chunks applied at once, so encoding, the raft log's write and the
// state machine's decoding of different chunks overlap instead of
// running one after the other on one entry of thousands of tasks. A
// chunk that fails leaves the others committed; the framework gets new
// offers for what is missing, as after any failed commit.
func (a *allocator) commit(ctx context.Context, ops []Op, splittable bool, events []api.Event) error {
	if !splittable || len(ops) <= 2*commitChunk {
		_, err := a.m.applyTimed(ctx, "allocator", ops, events...)
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for len(ops) > 0 {
		n := min(len(ops), 2*commitChunk)
		chunk := ops[:n]
		ops = ops[n:]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.m.applyTimed(ctx, "allocator", chunk); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// safeWants asks a framework whether it wants offers; a panic is logged
// with its stack and reported (m.frameworkPanicked), and counts as no.
func (m *Master) safeWants(fw Framework) (w bool) {
	if m.cfg.Safe {
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			m.frameworkPanicked(fw.Name(), "Wants", r)
			w = false
		}
	}()
	return fw.Wants()
}

func (m *Master) safeOffers(ctx context.Context, fw Framework, offers []api.Offer) (res OfferResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.frameworkPanicked(fw.Name(), "ResourceOffers", r)
			err = fmt.Errorf("panic in ResourceOffers: %v", r)
		}
	}()
	return fw.ResourceOffers(ctx, offers), nil
}

// reservedDisk is the disk held on each agent by persistent volumes
// (TableReservations), whether or not a task uses them now: offers shrink
// by it, as Mesos's dynamic reservations take disk out of unreserved offers.
func reservedDisk(st *Store) map[string]float64 {
	es := st.List(TableReservations)
	if len(es) == 0 {
		return nil
	}
	out := map[string]float64{}
	for _, e := range es {
		if r, ok := e.Value.(*api.Reservation); ok {
			out[r.AgentID] += r.Disk()
		}
	}
	return out
}
