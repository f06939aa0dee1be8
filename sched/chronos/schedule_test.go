package chronos

import (
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// occurrences lists up to n occurrences after from.
func occurrences(s Schedule, from time.Time, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		t, ok := s.Next(from)
		if !ok {
			break
		}
		out = append(out, t.UTC().Format(time.RFC3339))
		from = t
	}
	return out
}

func TestISOSchedules(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	cases := []struct {
		name, sched, tz, from string
		n                     int
		want                  []string
	}{
		{"hourly forever", "R/2026-11-22T02:00:00Z/PT1H", "", "2026-11-22T02:30:00Z", 3,
			[]string{"2026-11-22T03:00:00Z", "2026-11-22T04:00:00Z", "2026-11-22T05:00:00Z"}},
		{"first occurrence is the start", "R/2026-11-22T02:00:00Z/PT24H", "", "2026-11-21T00:00:00Z", 2,
			[]string{"2026-11-22T02:00:00Z", "2026-11-23T02:00:00Z"}},
		{"R3 runs three times", "R3/2026-01-01T00:00:00Z/PT1H", "", "2025-12-31T00:00:00Z", 5,
			[]string{"2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"}},
		{"R3 exhausted", "R3/2026-01-01T00:00:00Z/PT1H", "", "2026-01-01T02:00:00Z", 5, nil},
		{"R0 never runs", "R0/2026-01-01T00:00:00Z/PT1H", "", "2025-01-01T00:00:00Z", 5, nil},
		{"empty start is now", "R//PT30M", "", "2026-11-22T02:59:59Z", 2,
			[]string{"2026-11-22T03:00:00Z", "2026-11-22T03:30:00Z"}},
		{"PT1H30M", "R/2026-01-01T00:00:00Z/PT1H30M", "", "2026-01-01T00:00:00Z", 2,
			[]string{"2026-01-01T01:30:00Z", "2026-01-01T03:00:00Z"}},
		{"P1W", "R/2026-01-05T08:00:00Z/P1W", "", "2026-01-05T08:00:00Z", 2,
			[]string{"2026-01-12T08:00:00Z", "2026-01-19T08:00:00Z"}},
		{"P1M clamps the 31st", "R/2026-01-31T00:00:00Z/P1M", "", "2026-01-31T00:00:00Z", 3,
			[]string{"2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"}},
		{"P1Y from a leap day", "R/2024-02-29T12:00:00Z/P1Y", "", "2024-02-29T12:00:00Z", 2,
			[]string{"2025-02-28T12:00:00Z", "2026-02-28T12:00:00Z"}},
		{"far in the future of the start", "R/2000-01-01T00:00:00Z/PT1M", "", "2026-11-22T03:00:30Z", 1,
			[]string{"2026-11-22T03:01:00Z"}},
		// New York springs forward on 2026-03-08 at 02:00 EST (07:00Z):
		// 02:30 does not exist that day; the run moves forward by the gap
		// (03:30 EDT) and the next day is 02:30 EDT again.
		{"daily 02:30 across spring forward", "R/2026-03-06T02:30:00/P1D", "America/New_York", "2026-03-06T08:00:00Z", 3,
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"}},
		// Falls back on 2026-11-01: 01:30 happens twice; the job runs once.
		{"daily 01:30 across fall back", "R/2026-10-30T01:30:00/P1D", "America/New_York", "2026-10-30T06:00:00Z", 3,
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"start with offset, days in the zone", "R/2026-10-24T12:00:00+02:00/P1D", "Europe/Berlin", "2026-10-24T10:00:00Z", 2,
			[]string{"2026-10-25T11:00:00Z", "2026-10-26T11:00:00Z"}},
		{"PT24H is exact hours across DST", "R/2026-10-24T12:00:00+02:00/PT24H", "Europe/Berlin", "2026-10-24T10:00:00Z", 1,
			[]string{"2026-10-25T10:00:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSchedule(c.sched, c.tz, now)
			if err != nil {
				t.Fatal(err)
			}
			got := occurrences(s, mustTime(t, c.from), c.n)
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestCronSchedules(t *testing.T) {
	cases := []struct {
		name, sched, tz, from string
		n                     int
		want                  []string
	}{
		{"every 15 minutes", "*/15 * * * *", "", "2026-11-22T03:07:00Z", 3,
			[]string{"2026-11-22T03:15:00Z", "2026-11-22T03:30:00Z", "2026-11-22T03:45:00Z"}},
		{"ranges and lists", "0 9-10,17 * * *", "", "2026-11-22T08:00:00Z", 4,
			[]string{"2026-11-22T09:00:00Z", "2026-11-22T10:00:00Z", "2026-11-22T17:00:00Z", "2026-11-23T09:00:00Z"}},
		{"weekday names", "30 6 * * mon-fri", "", "2026-11-20T07:00:00Z", 2, // Fri 20th
			[]string{"2026-11-23T06:30:00Z", "2026-11-24T06:30:00Z"}},
		{"month names", "0 0 1 jan,jul *", "", "2026-11-22T00:00:00Z", 2,
			[]string{"2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z"}},
		{"dom or dow when both restricted", "0 12 1 * sun", "", "2026-11-22T13:00:00Z", 3, // Sun 22nd
			[]string{"2026-11-29T12:00:00Z", "2026-12-01T12:00:00Z", "2026-12-06T12:00:00Z"}},
		{"7 is sunday", "0 0 * * 7", "", "2026-11-22T13:00:00Z", 1,
			[]string{"2026-11-29T00:00:00Z"}},
		{"leap day", "0 0 29 2 *", "", "2026-11-22T00:00:00Z", 1,
			[]string{"2028-02-29T00:00:00Z"}},
		{"@daily", "@daily", "", "2026-11-22T00:00:00Z", 1,
			[]string{"2026-11-23T00:00:00Z"}},
		{"02:30 on spring forward", "30 2 * * *", "America/New_York", "2026-03-07T08:00:00Z", 3,
			[]string{"2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}},
		{"01:30 once on fall back", "30 1 * * *", "America/New_York", "2026-10-31T06:00:00Z", 3,
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z"}},
		{"hourly through the gap has no duplicate", "0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", 3,
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSchedule(c.sched, c.tz, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			got := occurrences(s, mustTime(t, c.from), c.n)
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestBadSchedules(t *testing.T) {
	for _, s := range []string{
		"", "R/2026-01-01T00:00:00Z/", "R/2026-01-01T00:00:00Z/PT", "R/2026-01-01T00:00:00Z/P0D",
		"R/notadate/PT1H", "Rx/2026-01-01T00:00:00Z/PT1H", "R/2026-01-01T00:00:00Z/1H",
		"* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
		"5-1 * * * *", "*/0 * * * *", "* * * foo *",
	} {
		if _, err := ParseSchedule(s, "", time.Now()); err == nil {
			t.Errorf("%q parsed; want an error", s)
		}
	}
	if _, err := ParseSchedule("R/2026-01-01T00:00:00Z/PT1H", "Mars/Olympus", time.Now()); err == nil {
		t.Error("unknown zone accepted")
	}
}

func TestEpsilon(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", time.Minute, true},
		{"PT30S", 30 * time.Second, true},
		{"PT1H", time.Hour, true},
		{"P1D", 24 * time.Hour, true},
		{"PT0.5S", 500 * time.Millisecond, true},
		{"60", 0, false},
		{"PT", 0, false},
	}
	for _, c := range cases {
		got, err := ParseEpsilon(c.in, time.Minute)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseEpsilon(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}
