package dns

import (
	"hash/maphash"
	"iter"
	"maps"
)

// nameMap is a table's names, in shards by a hash of the name, so that a
// patched table (see patch) copies only the shards of the names it
// changes, not every name of the cluster; the shards it does not change
// are shared with the table it was patched from (and never written again).
type nameMap struct {
	shards [nameShards]map[string]*entry
	// own marks the shards this map made itself and may write; nil: all.
	own *[nameShards]bool
}

const nameShards = 256

var nameSeed = maphash.MakeSeed()

func shardOf(name string) uint64 { return maphash.String(nameSeed, name) % nameShards }

func newNameMap(size int) nameMap {
	var m nameMap
	for i := range m.shards {
		m.shards[i] = make(map[string]*entry, size/nameShards)
	}
	return m
}

// get returns the entry of name, nil when there is none.
func (m *nameMap) get(name string) *entry { return m.shards[shardOf(name)][name] }

// getBytes is get of a name given as bytes (not copied).
func (m *nameMap) getBytes(name []byte) *entry {
	return m.shards[maphash.Bytes(nameSeed, name)%nameShards][string(name)]
}

func (m *nameMap) has(name string) bool {
	_, ok := m.shards[shardOf(name)][name]
	return ok
}

func (m *nameMap) set(name string, e *entry) { m.writable(shardOf(name))[name] = e }

func (m *nameMap) del(name string) {
	i := shardOf(name)
	if _, ok := m.shards[i][name]; ok {
		delete(m.writable(i), name)
	}
}

// all yields every name and its entry, in no order.
func (m *nameMap) all() iter.Seq2[string, *entry] {
	return func(yield func(string, *entry) bool) {
		for _, s := range m.shards {
			for n, e := range s {
				if !yield(n, e) {
					return
				}
			}
		}
	}
}

// cow returns a map with m's names that shares m's shards until it writes
// one: m must not be written again.
func (m *nameMap) cow() nameMap {
	c := nameMap{shards: m.shards, own: new([nameShards]bool)}
	return c
}

func (m *nameMap) writable(i uint64) map[string]*entry {
	if m.own != nil && !m.own[i] {
		m.shards[i] = maps.Clone(m.shards[i])
		if m.shards[i] == nil {
			m.shards[i] = map[string]*entry{}
		}
		m.own[i] = true
	}
	return m.shards[i]
}
