package sched

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the most recent raft log entries in memory in front of
// the on-disk log store, as raft.LogCache does, but bounded in bytes as
// well as in entries: an entry larger than maxCachedEntry (an app with
// labels near their limit, a big group) is only on disk. raft.LogCache
// kept its last 512 entries whatever their size, so a few megabyte-sized
// writes stayed in memory long after their app was deleted.
type logCache struct {
	store raft.LogStore

	mu    sync.RWMutex
	ring  []*raft.Log
	bytes int // total len(Data) of the entries in ring
}

const (
	logCacheEntries = 512
	maxCachedEntry  = 64 << 10 // so at most 32 MiB of entries are cached
)

func newLogCache(store raft.LogStore) *logCache {
	return &logCache{store: store, ring: make([]*raft.Log, logCacheEntries)}
}

// IsMonotonic implements raft.MonotonicLogStore for the store behind.
func (c *logCache) IsMonotonic() bool {
	if m, ok := c.store.(raft.MonotonicLogStore); ok {
		return m.IsMonotonic()
	}
	return false
}

func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	e := c.ring[idx%uint64(len(c.ring))]
	c.mu.RUnlock()
	if e != nil && e.Index == idx {
		*log = *e
		return nil
	}
	return c.store.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error {
	return c.StoreLogs([]*raft.Log{log})
}

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("unable to store logs within log store, err: %q", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		slot := l.Index % uint64(len(c.ring))
		if old := c.ring[slot]; old != nil {
			c.bytes -= len(old.Data)
			c.ring[slot] = nil
		}
		if len(l.Data) > maxCachedEntry {
			continue // read back from disk if raft ever needs it
		}
		c.ring[slot] = l
		c.bytes += len(l.Data)
	}
	return nil
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.ring = make([]*raft.Log, len(c.ring))
	c.bytes = 0
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

// cachedBytes is the payload the cache holds (for tests).
func (c *logCache) cachedBytes() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes
}
