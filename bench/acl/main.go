// Command acl measures what ACLs cost an API call: two `weft up` side by
// side, one open (no `weft acl bootstrap`) and one with ACLs on, called
// with a team token whose policy grants write on /bench/*. Both get the
// same load, GET /v2/apps/{id} and PUT /v2/apps/{id} (force) at a fixed
// rate, in rounds that alternate which one goes first; it prints p50/p99
// per side and the ratio authenticated/open against the 1.05 target.
// Errors count as failures, not as fast answers.
//
//	WEFT_BIN=bin/weft go run ./bench/acl [-rate 200 -seconds 10 -rounds 3]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
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

func main() {
	rate := flag.Int("rate", 200, "requests per second of each kind")
	seconds := flag.Int("seconds", 10, "seconds per measured phase")
	rounds := flag.Int("rounds", 3, "rounds (each measures both sides, order alternating)")
	flag.Parse()
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
	s := &side{name: name, base: fmt.Sprintf("http://127.0.0.1:%d", apiPort), lat: map[string][]time.Duration{}, errs: map[string]int{}}
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

// phase sends op at rate for d, open loop (a request every 1/rate, not
// waiting for the last), and records latencies.
func (s *side) phase(op string, rate int, d time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var seq atomic.Int64
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := seq.Add(1)
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
	if err := secureSide(secure); err != nil {
		return fmt.Errorf("bootstrapping ACLs: %w", err)
	}
	for _, s := range []*side{open, secure} {
		if err := s.do("PUT", "/v2/apps/bench/app", appDef); err != nil {
			return err
		}
		for i := 0; i < 20; i++ { // a few other apps the listings and checks walk past
			if err := s.do("PUT", fmt.Sprintf("/v2/apps/bench/other-%d", i), appDef); err != nil {
				return err
			}
		}
		// Warm up.
		s.phase("GET", rate, time.Second)
		s.phase("PUT", rate, time.Second)
		s.lat = map[string][]time.Duration{}
		s.errs = map[string]int{}
	}
	// Check the secure side really checks: no token is refused.
	if err := (&side{base: secure.base}).do("GET", "/v2/apps/bench/app", ""); err == nil || !regexp.MustCompile(`: 401 `).MatchString(err.Error()) {
		return fmt.Errorf("the ACL side answered a call without a token: %v", err)
	}
	for r := 0; r < rounds; r++ {
		for _, op := range []string{"GET", "PUT"} {
			order := []*side{open, secure}
			if (r+len(op))%2 == 1 {
				order = []*side{secure, open}
			}
			for _, s := range order {
				n0, e0 := len(s.lat[op]), s.errs[op]
				s.phase(op, rate, d)
				fmt.Printf("  round %d %s %-4s: %d ok, %d errors, p99 %v\n", r+1, op, s.name, len(s.lat[op])-n0, s.errs[op]-e0, pct(s.lat[op][n0:], 0.99))
			}
		}
	}
	var summary []string
	failed := false
	for _, op := range []string{"GET", "PUT"} {
		po, pa := pct(open.lat[op], 0.99), pct(secure.lat[op], 0.99)
		mo, ma := pct(open.lat[op], 0.5), pct(secure.lat[op], 0.5)
		ratio := float64(pa) / float64(po)
		fmt.Printf("%s /v2/apps/{id}: open p50 %v p99 %v (%d ok, %d errors) | ACL p50 %v p99 %v (%d ok, %d errors) | p99 ratio %.3f (target ≤ %.2f)\n",
			op, mo, po, len(open.lat[op]), open.errs[op], ma, pa, len(secure.lat[op]), secure.errs[op], ratio, target)
		verdict := "ok"
		if ratio > target {
			verdict = "over"
		}
		if open.errs[op]+secure.errs[op] > 0 {
			failed = true
			verdict = "errors"
		}
		summary = append(summary, fmt.Sprintf("%s p99 %.3f× (%v vs %v, %s)", op, ratio, pa, po, verdict))
	}
	status := "ok"
	if failed {
		status = "FAIL"
	}
	fmt.Printf("SUMMARY acl %s: authenticated/open %s at %d req/s; target ≤ %.2f×; load average %s\n", status, strings.Join(summary, ", "), rate, target, benchkit.LoadAvg())
	return nil
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return benchkit.Percentile(s, p)
}
