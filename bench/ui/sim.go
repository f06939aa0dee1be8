package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/bench/internal/benchkit"
	"github.com/weftnet/weft/sched/api"
)

type row = benchkit.Row

const noPeer = benchkit.NoPeer

var (
	atExit          = benchkit.AtExit
	cleanupOnSignal = benchkit.CleanupOnSignal
	emitRow         = benchkit.EmitRow
	eventually      = benchkit.Eventually
	exit            = benchkit.Exit
	freePort        = benchkit.FreePort
	loadAvg         = benchkit.LoadAvg
	percentile      = benchkit.Percentile
	startProc       = benchkit.StartProc
	tempDir         = benchkit.TempDir
	weftBin         = benchkit.WeftBin
)

// simAgent speaks the agent's HTTP protocol (as in bench/listing): it
// long-polls its assignments and reports TASK_RUNNING for every task to
// run and TASK_KILLED for every task to kill. While hold is set, new
// tasks are not reported RUNNING until release.
type simAgent struct {
	id   string
	api  string
	c    *api.Client
	hold atomic.Bool

	mu       sync.Mutex
	reported map[string]string // task id → state last reported
	live     map[string]string // task id → app id, RUNNING and not failed by the bench
	held     []api.TaskStatus
	heldApp  map[string]string
}

// takeLive picks one RUNNING task the bench has not failed yet.
func (s *simAgent) takeLive(rng *rand.Rand) (task, app string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) == 0 {
		return "", ""
	}
	n := rng.IntN(len(s.live))
	for id, a := range s.live {
		if n == 0 {
			delete(s.live, id)
			return id, a
		}
		n--
	}
	return "", ""
}

// release reports the held tasks RUNNING.
func (s *simAgent) release(ctx context.Context) {
	s.hold.Store(false)
	s.mu.Lock()
	ups := s.held
	s.held = nil
	for _, u := range ups {
		s.live[u.TaskID] = s.heldApp[u.TaskID]
	}
	s.mu.Unlock()
	if len(ups) > 0 {
		_ = s.c.PostStatus(ctx, s.id, ups)
	}
}

type leanAssignments struct {
	Index uint64 `json:"index"`
	Tasks []struct {
		Task struct {
			ID    string `json:"id"`
			AppID string `json:"appId"`
			State string `json:"state"`
		} `json:"task"`
		Goal string `json:"goal"`
	} `json:"tasks"`
}

func (s *simAgent) assignments(ctx context.Context, after uint64) (*leanAssignments, error) {
	url := fmt.Sprintf("http://%s/v1/agents/%s/assignments?index=%d&wait=30s", s.api, s.id, after)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	var as leanAssignments
	if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
		return nil, err
	}
	return &as, nil
}

func (s *simAgent) run(ctx context.Context) {
	var after uint64
	for ctx.Err() == nil {
		as, err := s.assignments(ctx, after)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		after = as.Index
		var ups []api.TaskStatus
		s.mu.Lock()
		for _, a := range as.Tasks {
			want := api.TaskRunning
			if a.Goal == api.GoalKill {
				want = api.TaskKilled
			}
			if api.Terminal(a.Task.State) || s.reported[a.Task.ID] == want {
				continue
			}
			s.reported[a.Task.ID] = want
			st := api.TaskStatus{TaskID: a.Task.ID, State: want, Timestamp: time.Now()}
			switch {
			case want == api.TaskRunning && s.hold.Load():
				if s.heldApp == nil {
					s.heldApp = map[string]string{}
				}
				s.heldApp[a.Task.ID] = a.Task.AppID
				s.held = append(s.held, st)
				continue
			case want == api.TaskRunning:
				s.live[a.Task.ID] = a.Task.AppID
			default:
				delete(s.live, a.Task.ID)
			}
			ups = append(ups, st)
		}
		s.mu.Unlock()
		if len(ups) > 0 {
			_ = s.c.PostStatus(ctx, s.id, ups)
		}
	}
}
