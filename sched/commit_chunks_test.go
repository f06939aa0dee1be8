package sched

import (
	"fmt"
	"testing"
	"time"
)

// An answer of more launches than one commit chunk is committed whole,
// in several raft entries: every task lands once, on an offered agent,
// in one round.
func TestLargeAnswerCommittedInChunks(t *testing.T) {
	members := NewStaticMembers()
	for i := 0; i < 30; i++ {
		n := agentNode(fmt.Sprintf("a%02d", i), 100, 100000)
		members.nodes = append(members.nodes, n)
	}
	want := 2*commitChunk + 500 // three chunks
	fw := &testFramework{name: "big", cpus: 1, mem: 10}
	fw.add(want)
	tm := startMaster(t, members, fw)
	eventually(t, 10*time.Second, fmt.Sprintf("%d tasks committed", want), func() bool { return len(tasksOf(tm.Store())) == want })
	for id, rec := range tasksOf(tm.Store()) {
		if rec.Task.SlaveID == "" || rec.Task.StagedAt == "" {
			t.Fatalf("%s not placed: %+v", id, rec.Task)
		}
	}
	entries := map[uint64]int{}
	for _, e := range tm.Store().List(TableTasks) {
		entries[e.CreateIndex]++
	}
	if len(entries) < 3 {
		t.Fatalf("tasks per raft entry %v: want at least 3 entries of at most %d", entries, commitChunk)
	}
	for idx, n := range entries {
		if n > commitChunk {
			t.Fatalf("entry %d holds %d tasks, more than a chunk (%d)", idx, n, commitChunk)
		}
	}
}
