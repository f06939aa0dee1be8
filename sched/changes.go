package sched

import (
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// changesCache keeps the last few encoded answers of the change watch:
// every node that was at index N asks for the same changes when the state
// moves past N, so one encoding (and one gzip) serves them all.
type changesCache struct {
	mu      sync.Mutex
	entries []*changesEntry // newest last

	nodesMu   sync.Mutex
	nodesKey  string
	nodes     []api.Node
	nodesHash string
}

const changesCacheSize = 16

type changesKey struct {
	after, index    uint64 // after is 0 for a snapshot
	leader, nodes   string // nodes is the nodes hash, "" when not sent
	domain          string
	withNodesInBody bool
}

type changesEntry struct {
	key    changesKey
	once   sync.Once
	body   []byte
	err    error
	gzOnce sync.Once
	gz     []byte
}

func (e *changesEntry) gzipped() []byte {
	e.gzOnce.Do(func() { e.gz = gzipBytes(e.body) })
	return e.gz
}

// watchNodes is the membership as the change watch sends it (without
// Used: it changes with every task), sorted by id, with its hash. It is
// worked out again only when the membership or the master's problems
// change.
func (m *Master) watchNodes() ([]api.Node, string) {
	gen, _ := m.membersChanged()
	probs := m.panics.problems()
	if m.cfg.Safe {
		probs = append(probs, "safe mode: every framework is paused (--safe)")
	}
	key := strings.Join(append([]string{strconvU(gen)}, probs...), "\x00")
	c := &m.chgC
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	if c.nodes != nil && c.nodesKey == key {
		return c.nodes, c.nodesHash
	}
	nodes := m.cfg.Members.Nodes()
	for i := range nodes {
		nodes[i].Used = api.Resources{}
		if len(probs) > 0 && (nodes[i].ID == m.cfg.Store.NodeID || nodes[i].Name == m.cfg.Store.NodeID) {
			nodes[i].Problems = append(append([]string(nil), nodes[i].Problems...), probs...)
		}
	}
	if nodes == nil {
		nodes = []api.Node{}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	b, _ := json.Marshal(nodes)
	h := fnv.New64a()
	_, _ = h.Write(b)
	c.nodes, c.nodesKey, c.nodesHash = nodes, key, hex.EncodeToString(h.Sum(nil))
	return c.nodes, c.nodesHash
}

func strconvU(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Changes returns what changed in the state since index after, or the
// whole state (Snapshot) when after is 0, above the store's index (another
// store), or older than the store remembers. Nodes are included when their
// hash differs from nodesHash.
func (m *Master) Changes(after uint64, nodesHash string) api.Changes {
	nodes, hash := m.watchNodes()
	ch := api.Changes{Domain: m.cfg.Domain, Leader: m.leaderAPI(), NodesHash: hash}
	if hash != nodesHash {
		ch.Nodes = nodes
	}
	m.store.ReadChangedTables(after, func(index uint64, t map[string]map[string]*Entry, keys map[string][]string, complete bool) {
		ch.Index = index
		if after == 0 || !complete {
			ch.Snapshot = true
			ch.Apps = make([]api.App, 0, len(t[TableApps]))
			for _, e := range t[TableApps] {
				ch.Apps = append(ch.Apps, *e.Value.(*api.App))
			}
			ch.Tasks = make([]api.Task, 0, len(t[TableTasks]))
			for _, e := range t[TableTasks] {
				ch.Tasks = append(ch.Tasks, e.Value.(*TaskRecord).Task)
			}
			for _, e := range t[TableDeployments] {
				ch.Deployments = append(ch.Deployments, *e.Value.(*api.Deployment))
			}
			for _, e := range t[TableJobs] {
				ch.Jobs = append(ch.Jobs, *e.Value.(*api.Job))
			}
			return
		}
		var del api.Deleted
		for _, k := range dedupe(keys[TableApps]) {
			if e, ok := t[TableApps][k]; ok {
				ch.Apps = append(ch.Apps, *e.Value.(*api.App))
			} else {
				del.Apps = append(del.Apps, k)
			}
		}
		for _, k := range dedupe(keys[TableTasks]) {
			if e, ok := t[TableTasks][k]; ok {
				ch.Tasks = append(ch.Tasks, e.Value.(*TaskRecord).Task)
			} else {
				del.Tasks = append(del.Tasks, k)
			}
		}
		for _, k := range dedupe(keys[TableDeployments]) {
			if e, ok := t[TableDeployments][k]; ok {
				ch.Deployments = append(ch.Deployments, *e.Value.(*api.Deployment))
			} else {
				del.Deployments = append(del.Deployments, k)
			}
		}
		for _, k := range dedupe(keys[TableJobs]) {
			if e, ok := t[TableJobs][k]; ok {
				ch.Jobs = append(ch.Jobs, *e.Value.(*api.Job))
			} else {
				del.Jobs = append(del.Jobs, k)
			}
		}
		if len(del.Apps)+len(del.Tasks)+len(del.Deployments)+len(del.Jobs) > 0 {
			ch.Deleted = &del
		}
	})
	sort.Slice(ch.Apps, func(i, j int) bool { return ch.Apps[i].ID < ch.Apps[j].ID })
	sort.Slice(ch.Tasks, func(i, j int) bool { return ch.Tasks[i].ID < ch.Tasks[j].ID })
	sort.Slice(ch.Deployments, func(i, j int) bool { return ch.Deployments[i].ID < ch.Deployments[j].ID })
	sort.Slice(ch.Jobs, func(i, j int) bool { return ch.Jobs[i].Name < ch.Jobs[j].Name })
	return ch
}

// dedupe returns keys once each, in the order first seen.
func dedupe(keys []string) []string {
	if len(keys) < 2 {
		return keys
	}
	seen := make(map[string]struct{}, len(keys))
	out := keys[:0:0]
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// encodedChanges is the JSON of Changes, shared by every client asking the
// same question at the same index.
func (m *Master) encodedChanges(after uint64, nodesHash string) *changesEntry {
	_, hash := m.watchNodes()
	idx := m.store.Index()
	key := changesKey{after: after, index: idx, leader: m.leaderAPI(), domain: m.cfg.Domain, nodes: hash, withNodesInBody: hash != nodesHash}
	if after > idx {
		key.after = 0 // another store's index: a snapshot, as for 0
	}
	c := &m.chgC
	c.mu.Lock()
	var e *changesEntry
	for _, x := range c.entries {
		if x.key == key {
			e = x
			break
		}
	}
	if e == nil {
		e = &changesEntry{key: key}
		c.entries = append(c.entries, e)
		if len(c.entries) > changesCacheSize {
			c.entries = append([]*changesEntry(nil), c.entries[len(c.entries)-changesCacheSize:]...)
		}
	}
	c.mu.Unlock()
	e.once.Do(func() {
		nh := nodesHash
		if !key.withNodesInBody {
			nh = hash
		}
		ch := m.Changes(key.after, nh)
		e.body, e.err = json.Marshal(ch)
	})
	return e
}

// handleChanges serves GET /v1/state/changes?index=N&nodes=H&wait=30s, the
// change watch every node's dns, lb (and the CLI's watchers) share: it
// blocks until the store index is above N or the nodes no longer hash to H
// (or after wait, capped at 5 min), then answers api.Changes: what changed
// since N, or the whole state when N is 0, from another store, or too old.
func (m *Master) handleChanges(w http.ResponseWriter, r *http.Request) {
	after, err := queryIndex(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := queryWait(r, 30*time.Second, maxWait)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	nodesHash := r.URL.Query().Get("nodes")
	if len(nodesHash) > 64 {
		writeError(w, http.StatusBadRequest, "nodes: want the nodesHash of an earlier answer (at most 64 characters)")
		return
	}
	extendWriteDeadline(w, wait)
	if cur := m.store.Index(); after > 0 && cur == after {
		_, memCh := m.membersChanged()
		if _, hash := m.watchNodes(); hash == nodesHash && !m.waitPast(r, after, wait, memCh) {
			return
		}
	}
	e := m.encodedChanges(after, nodesHash)
	if e.err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the changes: "+e.err.Error())
		return
	}
	writeJSONBody(w, r, e.body, e.gzipped)
}
