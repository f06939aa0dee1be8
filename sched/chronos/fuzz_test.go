package chronos

import (
	"testing"
	"time"
)

var fuzzZones = []string{"", "UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu"}

// FuzzSchedule parses a schedule (ISO 8601 or cron) in one of a few zones
// and asks for a few occurrences: no panic, occurrences move forward, an
// ISO schedule's are at least MinPeriod apart when its period is
// clock-only, and each answer comes quickly whatever the start.
func FuzzSchedule(f *testing.F) {
	for _, s := range []string{
		"R/2026-11-22T02:00:00Z/PT1H", "R3/2026-01-01T00:00:00Z/PT1H", "R//PT30M", "R/2026-01-31T00:00:00Z/P1M",
		"R/2024-02-29T12:00:00Z/P1Y", "R/2026-03-08T02:30:00/P1D", "R/0001-01-01T00:00:00Z/PT1S",
		"R/1970-01-01T00:00:00Z/PT1S", "R/2999-12-31T23:59:59Z/P1Y2M3W4DT5H6M7.5S", "R//PT0.0001S",
		"R99999999999999999999/2026-01-01T00:00:00Z/PT1S", "*/5 * * * *", "0 0 29 2 1", "30 2 * * *",
		"0 0 31 2 *", "@hourly", "1-5/2,10 0-23/3 1,15 jan-dec mon-fri",
	} {
		f.Add(s, uint8(0), int64(1764720000))
		f.Add(s, uint8(2), int64(1804720000))
	}
	f.Fuzz(func(t *testing.T, s string, zone uint8, from int64) {
		if from < -1<<40 || from > 1<<40 {
			return
		}
		now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
		sc, err := ParseSchedule(s, fuzzZones[int(zone)%len(fuzzZones)], now)
		if err != nil {
			return
		}
		after := time.Unix(from, 0)
		var prev time.Time
		for i := 0; i < 3; i++ {
			start := time.Now()
			next, ok := sc.Next(after)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Next(%s) of %q took %s", after, s, d)
			}
			if !ok {
				return
			}
			if !next.After(after) {
				t.Fatalf("Next(%s) of %q = %s, not after", after, s, next)
			}
			if iso, isISO := sc.(*ISOSchedule); isISO && !iso.Period.calendar() && !prev.IsZero() && next.Sub(prev) < MinPeriod {
				t.Fatalf("%q: occurrences %s and %s closer than %s", s, prev, next, MinPeriod)
			}
			prev, after = next, next
		}
	})
}
