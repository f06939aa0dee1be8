package mesh

import (
	"testing"
	"time"
)

func TestProcScaler(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	type step struct {
		at          float64       // seconds from t0
		cpu         time.Duration // the process's CPU time so far
		idle, moved bool
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"quiet for procsQuietFor goes to one P, once", []step{
			{0, 100 * ms, false, false}, {1, 110 * ms, false, false}, {5, 150 * ms, false, false},
			{10, 190 * ms, true, true}, {11, 200 * ms, true, false}, {20, 280 * ms, true, false},
		}},
		{"work gives every P back at once, and quiet again takes procsQuietFor", []step{
			{0, 0, false, false}, {10, 50 * ms, true, true},
			{11, 650 * ms, false, true}, // 60 % of a core over the second
			{12, 660 * ms, false, false}, {21, 700 * ms, false, false},
			{22, 710 * ms, true, true},
		}},
		{"a burst within a short window counts at once", []step{
			{0, 0, false, false}, {10, 50 * ms, true, true},
			{10.2, 110 * ms, false, true}, // 60 ms in 200 ms: more than a second's worth
		}},
		{"a small burst in a short window waits for the window", []step{
			{0, 0, false, false}, {10, 50 * ms, true, true},
			{10.2, 90 * ms, true, false}, // 40 ms in 200 ms: not yet
			{11, 95 * ms, true, false},   // 45 ms over the second: under 5 %
		}},
		{"a steady 4 % stays idle", []step{
			{0, 0, false, false}, {5, 200 * ms, false, false}, {10, 400 * ms, true, true},
			{15, 600 * ms, true, false}, {20, 800 * ms, true, false},
		}},
	} {
		var p procScaler
		for i, s := range c.steps {
			idle, moved := p.observe(s.cpu, t0.Add(time.Duration(s.at*float64(time.Second))))
			if idle != s.idle || moved != s.moved {
				t.Errorf("%s: step %d (%.1fs, cpu %v): idle %v changed %v, want %v %v", c.name, i, s.at, s.cpu, idle, moved, s.idle, s.moved)
			}
		}
	}
}
