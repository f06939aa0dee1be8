package chronos

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Schedule says when a job is due. Next returns the first occurrence
// strictly after after, and false when the schedule has no more.
type Schedule interface {
	Next(after time.Time) (time.Time, bool)
}

// ParseSchedule parses a job's schedule: Chronos's ISO 8601 repeating
// interval "R[n]/start/period" or a 5-field cron expression
// ("m h dom mon dow", as Metronome accepts). tz is the job's
// scheduleTimeZone (an IANA name; empty is UTC): a start without an offset
// and every calendar step (days, months, cron fields) are taken in it.
// now resolves an empty start.
func ParseSchedule(s, tz string, now time.Time) (Schedule, error) {
	loc, err := loadZone(tz)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "R") && strings.Contains(s, "/") {
		return ParseISO(s, loc, now)
	}
	return ParseCron(s, loc)
}

func loadZone(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	if name, ok := javaShortZones[tz]; ok {
		tz = name
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("unknown scheduleTimeZone %q: use a tz database name such as Europe/Berlin", tz)
	}
	return loc, nil
}

// javaShortZones are the three-letter time zone IDs Java's TimeZone
// accepts (its old short IDs, which Chronos's scheduleTimeZone goes
// through) that the tz database does not have, with the zone Java maps
// each to. EST, MST and HST are tz database names already (fixed offsets,
// as in Java).
var javaShortZones = map[string]string{
	"ACT": "Australia/Darwin", "AET": "Australia/Sydney", "AGT": "America/Argentina/Buenos_Aires",
	"ART": "Africa/Cairo", "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
	"CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago", "CTT": "Asia/Shanghai",
	"EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris", "IET": "America/Indiana/Indianapolis",
	"IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "MIT": "Pacific/Apia", "NET": "Asia/Yerevan",
	"NST": "Pacific/Auckland", "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
	"PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
}

// Period is an ISO 8601 duration split into calendar parts (taken on the
// wall clock of the schedule's zone) and an exact clock part.
type Period struct {
	Years, Months, Weeks, Days int
	Clock                      time.Duration // hours, minutes, seconds
}

var periodRE = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$`)

// ParsePeriod parses an ISO 8601 duration such as P1D, PT1H30M, P1M, P1W.
func ParsePeriod(s string) (Period, error) {
	m := periodRE.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return Period{}, fmt.Errorf("%q is not an ISO 8601 duration (e.g. PT1H, P1D, P1M)", s)
	}
	atoi := func(x string) int {
		if x == "" {
			return 0
		}
		n, _ := strconv.Atoi(x)
		return n
	}
	p := Period{Years: atoi(m[1]), Months: atoi(m[2]), Weeks: atoi(m[3]), Days: atoi(m[4])}
	p.Clock = time.Duration(atoi(m[5]))*time.Hour + time.Duration(atoi(m[6]))*time.Minute
	if m[7] != "" {
		sec, _ := strconv.ParseFloat(strings.Replace(m[7], ",", ".", 1), 64)
		p.Clock += time.Duration(sec * float64(time.Second))
	}
	return p, nil
}

// Approx is the period's length with months of 30.44 days.
func (p Period) Approx() time.Duration {
	const day = 24 * time.Hour
	return time.Duration(p.Years)*time.Duration(365.2425*float64(day)) +
		time.Duration(p.Months)*time.Duration(30.436875*float64(day)) +
		time.Duration(p.Weeks*7+p.Days)*day + p.Clock
}

func (p Period) calendar() bool { return p.Years != 0 || p.Months != 0 || p.Weeks != 0 || p.Days != 0 }

// ISOSchedule is Chronos's "R[n]/start/period".
type ISOSchedule struct {
	// Repeat is how many occurrences the schedule has; -1 is forever.
	Repeat int
	Start  time.Time
	Period Period
	Loc    *time.Location
}

var isoRE = regexp.MustCompile(`^(R[0-9]*)/(.*)/(P.*)$`)

// Limits of an ISO 8601 schedule (docs/limits.md). A shorter period or a
// start outside the window would make the scheduler's work per pass grow
// without bound; Chronos itself cannot run more than a job a second.
const (
	// MinPeriod is the shortest period a schedule may have.
	MinPeriod = time.Second
	// MaxRepeat is the largest repeat count ("R" alone repeats forever).
	MaxRepeat = 1<<31 - 1
	// MinStartYear and MaxStartYear bound a schedule's start.
	MinStartYear, MaxStartYear = 1970, 2999
)

var startLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ParseISO parses "R[n]/start/period"; an empty start is now.
func ParseISO(s string, loc *time.Location, now time.Time) (*ISOSchedule, error) {
	m := isoRE.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("schedule %q is not R[n]/start/period", s)
	}
	sc := &ISOSchedule{Repeat: -1, Loc: loc}
	if m[1] != "R" {
		n, err := strconv.Atoi(m[1][1:])
		if err != nil || n > MaxRepeat {
			return nil, fmt.Errorf("repeat count %q is above the limit of %d (use R alone to repeat forever)", m[1], MaxRepeat)
		}
		sc.Repeat = n
	}
	if m[2] == "" {
		sc.Start = now
	} else {
		var err error
		for _, l := range startLayouts {
			var t time.Time
			if t, err = time.ParseInLocation(l, m[2], loc); err == nil {
				sc.Start = t
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("start %q is not an ISO 8601 date-time", m[2])
		}
		if y := sc.Start.UTC().Year(); y < MinStartYear || y > MaxStartYear {
			return nil, fmt.Errorf("start %q is outside the years %d to %d", m[2], MinStartYear, MaxStartYear)
		}
	}
	p, err := ParsePeriod(m[3])
	if err != nil {
		return nil, err
	}
	if p.Approx() < MinPeriod {
		return nil, fmt.Errorf("period %q is shorter than the minimum of %s (PT1S)", m[3], MinPeriod)
	}
	sc.Period = p
	return sc, nil
}

// String renders the schedule with its start resolved.
func (s *ISOSchedule) String(period string) string {
	r := "R"
	if s.Repeat >= 0 {
		r += strconv.Itoa(s.Repeat)
	}
	return r + "/" + s.Start.In(s.Loc).Format("2006-01-02T15:04:05.000Z07:00") + "/" + period
}

// Occurrence returns the k-th occurrence (k from 0), ignoring Repeat.
// Calendar steps are taken on the wall clock of Loc from the start, so a
// daily 02:30 job stays at 02:30 across daylight-saving changes; a wall
// time that does not exist (spring forward) is moved forward by the gap,
// an ambiguous one (fall back) is its first instant.
func (s *ISOSchedule) Occurrence(k int) time.Time {
	if !s.Period.calendar() {
		return addTimes(s.Start, int64(k), s.Period.Clock)
	}
	w := s.Start.In(s.Loc)
	y, mo := w.Year()+k*s.Period.Years, int(w.Month())+k*s.Period.Months
	y += (mo - 1) / 12
	mo = (mo-1)%12 + 1
	d := w.Day()
	if dim := daysIn(y, time.Month(mo)); d > dim {
		d = dim // Jan 31 + P1M is Feb 28, as java.time and Joda do
	}
	t := wallTime(y, time.Month(mo), d+k*(7*s.Period.Weeks+s.Period.Days), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), s.Loc)
	return t.Add(time.Duration(k) * s.Period.Clock)
}

// maxNextSteps bounds Next's walk from its estimate: it is never reached
// by a schedule within the limits above.
const maxNextSteps = 1000

// Next returns the first occurrence after after.
func (s *ISOSchedule) Next(after time.Time) (time.Time, bool) {
	if s.Repeat == 0 {
		return time.Time{}, false
	}
	k := 0
	if !after.Before(s.Start) {
		// Whole seconds, so a distant start cannot overflow a Duration;
		// the estimate is off by a few periods at most (months and years
		// vary in length), so the walks below are short and bounded.
		k = int(float64(after.Unix()-s.Start.Unix()) / s.Period.Approx().Seconds())
		for i := 0; k > 0 && s.Occurrence(k).After(after); i++ {
			if i > maxNextSteps {
				return time.Time{}, false
			}
			k--
		}
		for i := 0; !s.Occurrence(k).After(after); i++ {
			if i > maxNextSteps {
				return time.Time{}, false
			}
			k++
		}
	}
	if s.Repeat >= 0 && k >= s.Repeat {
		return time.Time{}, false
	}
	return s.Occurrence(k), true
}

// addTimes is t plus k times d without overflowing a Duration: whole
// seconds and the fraction are multiplied apart.
func addTimes(t time.Time, k int64, d time.Duration) time.Time {
	sec, frac := int64(d/time.Second), int64(d%time.Second)
	const g = int64(time.Second)
	secs := k*sec + (k/g)*frac
	ns := int64(t.Nanosecond()) + (k%g)*frac // below 1e18
	return time.Unix(t.Unix()+secs, ns).In(t.Location())
}

func daysIn(y int, m time.Month) int { return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() }

// wallTime is time.Date with java.time's rules for gaps and overlaps: a
// wall time in a spring-forward gap moves forward by the gap's length; an
// ambiguous one takes the earlier offset.
func wallTime(y int, mo time.Month, d, h, mi, sec, ns int, loc *time.Location) time.Time {
	t := time.Date(y, mo, d, h, mi, sec, ns, loc)
	norm := time.Date(y, mo, d, h, mi, sec, ns, time.UTC) // the wall time, normalised
	if t.Hour() == norm.Hour() && t.Minute() == norm.Minute() && t.Day() == norm.Day() {
		return t
	}
	// In a gap: read the wall time with the offset in force before it.
	_, off := t.Add(-2 * time.Hour).Zone()
	return norm.Add(-time.Duration(off) * time.Second).In(loc)
}

// CronSchedule is a 5-field cron expression (minute hour day-of-month month
// day-of-week) with ranges, steps, lists and names, evaluated on the wall
// clock of Loc. As in Vixie cron, when both day fields are restricted a
// day matching either runs.
type CronSchedule struct {
	Expr                         string
	Loc                          *time.Location
	minute, hour, dom, month, dw uint64
	domStar, dowStar             bool
}

var monthNames = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
var dowNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

var cronMacros = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

// ParseCron parses a 5-field cron expression.
func ParseCron(expr string, loc *time.Location) (*CronSchedule, error) {
	e := strings.TrimSpace(expr)
	if m, ok := cronMacros[strings.ToLower(e)]; ok {
		e = m
	}
	f := strings.Fields(e)
	if len(f) != 5 {
		return nil, fmt.Errorf("%q is neither R[n]/start/period nor a 5-field cron expression (minute hour day-of-month month day-of-week)", expr)
	}
	c := &CronSchedule{Expr: expr, Loc: loc}
	var err error
	if c.minute, err = cronField(f[0], 0, 59, nil); err != nil {
		return nil, fmt.Errorf("minute: %w", err)
	}
	if c.hour, err = cronField(f[1], 0, 23, nil); err != nil {
		return nil, fmt.Errorf("hour: %w", err)
	}
	if c.dom, err = cronField(f[2], 1, 31, nil); err != nil {
		return nil, fmt.Errorf("day of month: %w", err)
	}
	if c.month, err = cronField(f[3], 1, 12, monthNames); err != nil {
		return nil, fmt.Errorf("month: %w", err)
	}
	if c.dw, err = cronField(f[4], 0, 7, dowNames); err != nil {
		return nil, fmt.Errorf("day of week: %w", err)
	}
	if c.dw&(1<<7) != 0 {
		c.dw |= 1 // 7 is Sunday too
	}
	c.domStar = strings.HasPrefix(f[2], "*") || f[2] == "?"
	c.dowStar = strings.HasPrefix(f[4], "*") || f[4] == "?"
	return c, nil
}

func cronField(s string, lo, hi int, names map[string]int) (uint64, error) {
	var bits uint64
	val := func(x string) (int, error) {
		if n, ok := names[strings.ToLower(x)]; ok {
			return n, nil
		}
		n, err := strconv.Atoi(x)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("%q is not a value from %d to %d", x, lo, hi)
		}
		return n, nil
	}
	for _, part := range strings.Split(s, ",") {
		rng, step := part, 1
		if i := strings.IndexByte(part, '/'); i >= 0 {
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("step %q is not a positive number", part[i+1:])
			}
			rng, step = part[:i], n
		}
		a, b := lo, hi
		switch {
		case rng == "*" || rng == "?":
		case strings.Contains(rng, "-"):
			i := strings.IndexByte(rng, '-')
			var err error
			if a, err = val(rng[:i]); err != nil {
				return 0, err
			}
			if b, err = val(rng[i+1:]); err != nil {
				return 0, err
			}
			if b < a {
				return 0, fmt.Errorf("range %q runs backwards", rng)
			}
		default:
			v, err := val(rng)
			if err != nil {
				return 0, err
			}
			a, b = v, v
			if step > 1 {
				b = hi // "5/15" means 5-hi/15
			}
		}
		for v := a; v <= b; v += step {
			bits |= 1 << uint(v)
		}
	}
	if bits == 0 {
		return 0, fmt.Errorf("%q matches nothing", s)
	}
	return bits, nil
}

func (c *CronSchedule) dayMatches(t time.Time) bool {
	if c.month&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dw&(1<<uint(t.Weekday())) != 0
	if !c.domStar && !c.dowStar {
		return dom || dow
	}
	return dom && dow
}

// Next returns the first matching minute after after.
func (c *CronSchedule) Next(after time.Time) (time.Time, bool) {
	w := after.In(c.Loc)
	day := time.Date(w.Year(), w.Month(), w.Day(), 0, 0, 0, 0, time.UTC)
	for i := 0; i < 366*9; i++ { // nine years covers "29 Feb on a Monday"
		d := day.AddDate(0, 0, i)
		if !c.dayMatches(d) {
			continue
		}
		best := time.Time{}
		for h := 0; h < 24; h++ {
			if c.hour&(1<<uint(h)) == 0 {
				continue
			}
			for m := 0; m < 60; m++ {
				if c.minute&(1<<uint(m)) == 0 {
					continue
				}
				t := wallTime(d.Year(), d.Month(), d.Day(), h, m, 0, 0, c.Loc)
				if t.After(after) && (best.IsZero() || t.Before(best)) {
					best = t
				}
			}
			if !best.IsZero() && i > 0 && h > best.In(c.Loc).Hour()+2 {
				break
			}
		}
		if !best.IsZero() {
			return best, true
		}
	}
	return time.Time{}, false
}

// ParseEpsilon parses a job's epsilon (an ISO 8601 duration); empty is def.
func ParseEpsilon(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	p, err := ParsePeriod(s)
	if err != nil {
		return 0, fmt.Errorf("epsilon: %w", err)
	}
	return p.Approx(), nil
}
