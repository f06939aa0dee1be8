package api

import (
	"fmt"
	"testing"
)

// BenchmarkMirrorLaunch: what one launch's new task costs the Mirror and
// its State, with 1,000 tasks already there.
func BenchmarkMirrorLaunch(b *testing.B) {
	var m Mirror
	c := &Changes{Index: 1, Snapshot: true}
	for i := 0; i < 1000; i++ {
		c.Tasks = append(c.Tasks, Task{ID: fmt.Sprintf("bench_fill_g%02d_app-%04d.%08x", i/100, i, i*7919), State: TaskRunning})
	}
	m.Apply(c)
	m.State()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Apply(&Changes{Index: uint64(i + 2), Tasks: []Task{{ID: fmt.Sprintf("bench_launch_app-%06d.x", i), State: TaskStaging}}})
		m.State()
	}
}
