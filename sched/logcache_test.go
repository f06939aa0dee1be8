package sched

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// Entries over maxCachedEntry stay on disk only; the rest are cached; both
// read back whole, and the cache's bytes never pass its entry bound.
func TestLogCacheBoundedInBytes(t *testing.T) {
	c := newLogCache(raft.NewInmemStore())
	big := bytes.Repeat([]byte("L"), 3<<20)
	small := []byte(`{"ops":[]}`)
	var logs []*raft.Log
	for i := uint64(1); i <= 2*logCacheEntries; i++ {
		d := small
		if i%3 == 0 {
			d = big
		}
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: d})
	}
	for _, l := range logs {
		if err := c.StoreLog(l); err != nil {
			t.Fatal(err)
		}
		if c.cachedBytes() > logCacheEntries*maxCachedEntry {
			t.Fatalf("after %d: %d bytes cached", l.Index, c.cachedBytes())
		}
	}
	if got, want := c.cachedBytes(), logCacheEntries*len(small)*2/3; got > want+len(small) {
		t.Fatalf("cached %d bytes, want only the small entries (~%d): a big entry was kept", got, want)
	}
	for _, i := range []uint64{3, 4, 2*logCacheEntries - 1, 2 * logCacheEntries} {
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if l.Index != i || !bytes.Equal(l.Data, logs[i-1].Data) {
			t.Fatalf("GetLog(%d) = index %d, %d bytes", i, l.Index, len(l.Data))
		}
	}
	if err := c.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	if c.cachedBytes() != 0 {
		t.Fatalf("%d bytes cached after DeleteRange", c.cachedBytes())
	}
}
