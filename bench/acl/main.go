// Command acl measures what ACLs cost an API call: two `weft up` side by
// side, one open (no `weft acl bootstrap`) and one with ACLs on, called
// with a team token whose policy grants write on /bench/*. Both get the
// same load, GET /v2/apps/{id} and PUT /v2/apps/{id} (force) at a fixed
// rate, interleaved request by request (each tick sends one request to each
// side, in a random order), so that both sides meet the same machine at the
// same moment. It prints p50/p99 per side and the ratio authenticated/open
// over all samples (the figure) and per round, against the 1.05 target.
// Errors count as failures, not as fast answers.
//
//	WEFT_BIN=bin/weft go run ./bench/acl [-rate 200 -seconds 20 -rounds 5]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

const target = 1.05

// aaControl leaves the second side open too (-control).
var aaControl bool

func main() {
	rate := flag.Int("rate", 200, "requests per second of each kind")
	seconds := flag.Int("seconds", 20, "seconds per measured phase")
	rounds := flag.Int("rounds", 5, "rounds (each measures both sides at once)")
	control := flag.Bool("control", false, "A/A control: leave ACLs off on both sides, to show the bench's own noise floor")
	flag.Parse()
	aaControl = *control
	benchkit.CleanupOnSignal()
	if err := run(*rate, time.Duration(*seconds)*time.Second, *rounds); err != nil {
		fmt.Printf("acl FAILED: %v\n", err)
		fmt.Printf("SUMMARY acl FAIL: %v\n", err)
		benchkit.Exit(1)
	}
	benchkit.Exit(0)
}

type side struct {
	name string
	base string
	auth string // Authorization header value, "" for the open side
	lat  map[string][]time.Duration
	errs map[string]int
	pid  int
	cpu  map[string]time.Duration // CPU the process used during the op's phases
}

func startUp(bin, name string) (*side, error) {
	dir, err := benchkit.TempDir("weft-bench-acl-" + name + "-")
	if err != nil {
		return nil, err
	}
	apiPort := benchkit.FreePort()
	args := []string{"up",
		"--data-dir", filepath.Join(dir, "data"),
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--agent-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0",
		"--dns-addr", fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort()),
		"--lb-http-addr", fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort()),
		"--lb-admin-addr", fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort()),
		"--lb-appid-addr", fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort()),
		"--no-dns", "--no-lb",
	}
	p, err := benchkit.StartProc(dir, name, bin, args...)
	if err != nil {
		return nil, err
	}
	s := &side{name: name, base: fmt.Sprintf("http://127.0.0.1:%d", apiPort), lat: map[string][]time.Duration{}, errs: map[string]int{}, pid: p.Pid(), cpu: map[string]time.Duration{}}
	c := api.NewClient(s.base)
	if err := benchkit.Eventually(60*time.Second, 100*time.Millisecond, name+" answering with a leader", func() error {
		if p.Exited() {
			return fmt.Errorf("weft up exited:\n%s", p.LogTail(3000))
		}
		_, err := c.Do(context.Background(), "GET", "/v2/leader", nil, nil)
		return err
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// secureSide bootstraps ACLs and makes a team token for /bench/*.
func secureSide(s *side) error {
	ctx := context.Background()
	c := api.NewClient(s.base)
	boot, err := c.ACLBootstrap(ctx)
	if err != nil {
		return err
	}
	c.Token = boot.SecretID
	if _, err := c.ACLPolicyApply(ctx, "bench", strings.NewReader(`{"apps": {"/bench/*": "write", "/other/*": "read"}, "jobs": {"bench-*": "write"}}`)); err != nil {
		return err
	}
	tok, err := c.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "bench", Policies: []string{"bench"}})
	if err != nil {
		return err
	}
	s.auth = "Bearer " + tok.SecretID
	return nil
}

// putApps is how many apps the PUTs rotate over.
const putApps = 100

const appDef = `{"cmd":"sleep 1000","cpus":0.01,"mem":8,"instances":0,"labels":{"bench":"acl"}}`

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}, Timeout: 10 * time.Second}

func (s *side) do(method, path, body string) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// phase sends op at rate to every side at once for d, open loop (a
// request every 1/rate to each side, not waiting for the last), and records
// latencies. The sides are interleaved request by request, in a random
// order each tick, so both see the same machine at the same moment: a GC
// pause of the client, a disk flush or another process's burst lands on
// both alike instead of on whichever phase happened to run then.
func phase(sides []*side, op string, rate int, d time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var seq atomic.Int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	for {
		select {
		case <-end:
			wg.Wait()
			return
		case <-tick.C:
		}
		n := seq.Add(1)
		order := rng.Perm(len(sides))
		for _, i := range order {
			s := sides[i]
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				var err error
				switch op {
				case "GET":
					err = s.do("GET", "/v2/apps/bench/app", "")
				case "PUT":
					// A real change each time, spread over putApps apps so
					// concurrent PUTs seldom meet on one app.
					err = s.do("PUT", fmt.Sprintf("/v2/apps/bench/put-%d?force=true", n%putApps), strings.Replace(appDef, `"acl"`, fmt.Sprintf(`"acl-%d"`, n), 1))
				}
				el := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					s.errs[op]++
					if s.errs[op] <= 3 {
						fmt.Printf("  %s %s error: %v\n", s.name, op, err)
					}
					return
				}
				s.lat[op] = append(s.lat[op], el)
			}()
		}
	}
}

func run(rate int, d time.Duration, rounds int) error {
	bin, err := benchkit.WeftBin()
	if err != nil {
		return err
	}
	fmt.Printf("acl: GET and PUT /v2/apps/{id} at %d req/s, %v per phase, %d rounds, open vs ACL-checked (%s); load average %s\n", rate, d, rounds, bin, benchkit.LoadAvg())
	open, err := startUp(bin, "open")
	if err != nil {
		return err
	}
	secure, err := startUp(bin, "acl")
	if err != nil {
		return err
	}
	if aaControl {
		fmt.Println("acl: -control: both sides open; the ratio is the bench's noise floor, not a figure")
	} else if err := secureSide(secure); err != nil {
		return fmt.Errorf("bootstrapping ACLs: %w", err)
	}
	sides := []*side{open, secure}
	for _, s := range sides {
		if err := s.do("PUT", "/v2/apps/bench/app", appDef); err != nil {
			return err
		}
		for i := 0; i < 20; i++ { // a few other apps the listings and checks walk past
			if err := s.do("PUT", fmt.Sprintf("/v2/apps/bench/other-%d", i), appDef); err != nil {
				return err
			}
		}
	}
	// Check the secure side really checks: no token is refused.
	if err := (&side{base: secure.base}).do("GET", "/v2/apps/bench/app", ""); aaControl {
		if err != nil {
			return err
		}
	} else if err == nil || !regexp.MustCompile(`: 401 `).MatchString(err.Error()) {
		return fmt.Errorf("the ACL side answered a call without a token: %v", err)
	}
	// Warm up both (connections, caches, the Go heap), then forget it.
	for _, op := range []string{"GET", "PUT"} {
		phase(sides, op, rate, 3*time.Second)
	}
	for _, s := range sides {
		s.lat = map[string][]time.Duration{}
		s.errs = map[string]int{}
	}
	roundRatios := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		for _, op := range []string{"GET", "PUT"} {
			n0 := []int{len(open.lat[op]), len(secure.lat[op])}
			e0 := []int{open.errs[op], secure.errs[op]}
			c0 := []time.Duration{benchkit.CPUTime(open.pid), benchkit.CPUTime(secure.pid)}
			phase(sides, op, rate, d)
			open.cpu[op] += benchkit.CPUTime(open.pid) - c0[0]
			secure.cpu[op] += benchkit.CPUTime(secure.pid) - c0[1]
			po, pa := pct(open.lat[op][n0[0]:], 0.99), pct(secure.lat[op][n0[1]:], 0.99)
			ratio := 0.0
			if po > 0 {
				ratio = float64(pa) / float64(po)
			}
			roundRatios[op] = append(roundRatios[op], ratio)
			fmt.Printf("  round %d %s: open %d ok %d errors p99 %v | ACL %d ok %d errors p99 %v | ratio %.3f (load %s)\n", r+1, op,
				len(open.lat[op])-n0[0], open.errs[op]-e0[0], po, len(secure.lat[op])-n0[1], secure.errs[op]-e0[1], pa, ratio, benchkit.LoadAvg())
		}
	}
	for _, op := range []string{"GET", "PUT"} {
		fmt.Printf("%s CPU per request: open %v, ACL %v (%.3f×)\n", op, perReq(open, op), perReq(secure, op), float64(perReq(secure, op))/float64(max(perReq(open, op), 1)))
	}
	if aaControl {
		for _, op := range []string{"GET", "PUT"} {
			fmt.Printf("control %s: p99 ratio of two open sides %.3f over all samples\n", op, float64(pct(secure.lat[op], 0.99))/float64(pct(open.lat[op], 0.99)))
		}
		return nil
	}
	var summary []string
	failed := false
	for _, op := range []string{"GET", "PUT"} {
		po, pa := pct(open.lat[op], 0.99), pct(secure.lat[op], 0.99)
		mo, ma := pct(open.lat[op], 0.5), pct(secure.lat[op], 0.5)
		ratio := float64(pa) / float64(po)
		med := median(roundRatios[op])
		fmt.Printf("%s /v2/apps/{id}: open p50 %v p99 %v (%d ok, %d errors) | ACL p50 %v p99 %v (%d ok, %d errors) | p99 ratio %.3f over all samples, %.3f median of %d rounds (target ≤ %.2f)\n",
			op, mo, po, len(open.lat[op]), open.errs[op], ma, pa, len(secure.lat[op]), secure.errs[op], ratio, med, len(roundRatios[op]), target)
		errs := open.errs[op] + secure.errs[op]
		met := ratio <= target && errs == 0
		verdict := "ok"
		if ratio > target {
			verdict = "over"
		}
		if errs > 0 {
			failed = true
			verdict = "errors"
		}
		benchkit.EmitRow(benchkit.Row{Bench: "acl", Figure: fmt.Sprintf("%s /v2/apps/{id} p99 at %d req/s, ACL token vs open (interleaved)", op, rate),
			Weft: fmt.Sprintf("%.2f ms", ms(pa)), Peer: "the same weft without ACLs, interleaved request by request", PeerValue: fmt.Sprintf("%.2f ms", ms(po)),
			Ratio: ratio, Target: fmt.Sprintf("≤ %.2f× with 0 errors", target), Met: met})
		summary = append(summary, fmt.Sprintf("%s p99 %.3f× (%v vs %v, %s)", op, ratio, pa, po, verdict))
	}
	status := "ok"
	if failed {
		status = "FAIL"
	}
	fmt.Printf("SUMMARY acl %s: authenticated/open %s at %d req/s; target ≤ %.2f×; load average %s\n", status, strings.Join(summary, ", "), rate, target, benchkit.LoadAvg())
	return nil
}

// perReq is the CPU the side's process used per answered request of op.
func perReq(s *side, op string) time.Duration {
	n := len(s.lat[op]) + s.errs[op]
	if n == 0 {
		return 0
	}
	return s.cpu[op] / time.Duration(n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return benchkit.Percentile(s, p)
}
