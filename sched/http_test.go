package sched

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/weftnet/weft/sched/api"
)

func TestNoLeaderAnswers503(t *testing.T) {
	cfg := DefaultMasterConfig()
	cfg.Members = NewStaticMembers()
	cfg.Store.Bootstrap = false // a master that never finds its peers
	cfg.Store.NodeID = "lonely"
	m, err := NewMaster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	c := api.NewClient(srv.URL)
	ctx := context.Background()
	_, err = c.Do(ctx, http.MethodGet, "/v2/info", nil, nil)
	var e *api.Error
	if api.StatusCode(err) != http.StatusServiceUnavailable || !errorAs(err, &e) || e.Body.Message != "There is no leader" {
		t.Fatalf("/v2/info without a leader: %v", err)
	}
	if _, err := c.Do(ctx, http.MethodGet, "/v2/leader", nil, nil); api.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("/v2/leader without a leader: %v", err)
	}
	resp, err := http.Get(srv.URL + "/ping")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/ping without a leader: %v %v", resp, err)
	}
	resp.Body.Close()
}

func errorAs(err error, target **api.Error) bool {
	e, ok := err.(*api.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestEventStreamKeepAliveAndFilter(t *testing.T) {
	tm := startMaster(t, NewStaticMembers())
	req, _ := http.NewRequest(http.MethodGet, tm.srv.URL+"/v2/events?event_type=status_update_event&plan-format=light", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// An event of a filtered-out type, then one that passes.
	tm.Store().Publish(api.NewEvent(api.EventDeploymentInfo, nil))
	tm.Store().Publish(api.NewEvent(api.EventStatusUpdate, map[string]any{"taskId": "x"}))
	var sawKeepAlive, sawStatus bool
	deadline := time.After(3 * time.Second)
	for !sawKeepAlive || !sawStatus {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream closed")
			}
			switch {
			case l == ":":
				sawKeepAlive = true
			case strings.Contains(l, api.EventDeploymentInfo), strings.Contains(l, api.EventStreamAttached):
				t.Fatalf("filtered event delivered: %q", l)
			case l == "event: "+api.EventStatusUpdate:
				sawStatus = true
			}
		case <-deadline:
			t.Fatalf("keep-alive %v, status event %v", sawKeepAlive, sawStatus)
		}
	}
}

func TestQueryWait(t *testing.T) {
	cases := []struct {
		q    string
		want time.Duration
		bad  bool
	}{
		{"", 30 * time.Second, false},
		{"wait=2s", 2 * time.Second, false},
		{"wait=15", 15 * time.Second, false},
		{"wait=1h", 5 * time.Minute, false},
		{"wait=1e300", 5 * time.Minute, false},
		{"wait=NaN", 5 * time.Minute, false},
		{"wait=-1s", 0, true},
		{"wait=soon", 0, true},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "/v1/state?"+c.q, nil)
		got, err := queryWait(r, 30*time.Second, 5*time.Minute)
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("%q: %v %v, want %v (error %v)", c.q, got, err, c.want, c.bad)
		}
	}
}

func TestBadInputGets4xxWithAMessage(t *testing.T) {
	tm := startMaster(t, NewStaticMembers(agentNode("n1", 1, 1024)))
	cases := []struct {
		method, path, body string
		code               int
	}{
		{http.MethodPost, "/v1/agents/n1/status", `{"taskId":`, 400},
		{http.MethodPost, "/v1/agents/n1/status", `{"taskId":"x"}`, 400}, // an object, not an array
		{http.MethodPost, "/v1/agents/n1/status", `[{"taskId":"x","timestamp":"yesterday"}]`, 400},
		{http.MethodPost, "/v1/agents/n1/status", `[{"taskId":"x","exitStatus":"one"}]`, 400},
		{http.MethodGet, "/v1/agents/n1/assignments?index=-1", "", 400},
		{http.MethodGet, "/v1/agents/n1/assignments?wait=forever", "", 400},
		{http.MethodGet, "/v1/agents/n1/assignments?delta=sometimes", "", 400},
		{http.MethodGet, "/v1/state?index=1.5", "", 400},
		{http.MethodGet, "/v1/nope", "", 404},
		{http.MethodGet, "/v2/apps-that-do-not-exist", "", 404},
		{http.MethodPut, "/v1/state", "", 404},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, tm.srv.URL+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body api.ErrorBody
		decErr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.code || decErr != nil || body.Message == "" {
			t.Errorf("%s %s %q: %d %+v (%v), want %d with a message", c.method, c.path, c.body, resp.StatusCode, body, decErr, c.code)
		}
	}
	if !tm.Store().IsLeader() {
		t.Fatal("master stopped leading")
	}
}

func TestLongPollOutlivesServerWriteTimeout(t *testing.T) {
	tm := startMaster(t, NewStaticMembers(agentNode("n1", 1, 1024)))
	srv := httptest.NewUnstartedServer(tm.Handler())
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	c := api.NewClient(srv.URL)
	ctx := context.Background()
	if _, err := c.Watch(ctx, tm.Store().Index(), 400*time.Millisecond); err != nil {
		t.Fatalf("watch through a server with a 100 ms write timeout: %v", err)
	}
	if _, err := c.Assignments(ctx, "n1", tm.Store().Index(), 400*time.Millisecond); err != nil {
		t.Fatalf("assignments through a server with a 100 ms write timeout: %v", err)
	}
}

func TestWatchWithAForeignIndexAnswersAtOnce(t *testing.T) {
	tm := startMaster(t, NewStaticMembers())
	start := time.Now()
	st, err := tm.client.Watch(context.Background(), tm.Store().Index()+1000, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second || st.Index != tm.Store().Index() {
		t.Fatalf("watch with an index from another store: %v, index %d", d, st.Index)
	}
}

func TestSlowEventClientIsDroppedNotWaitedFor(t *testing.T) {
	oldBuf, oldTimeout := eventsBuffer, eventWriteTimeout
	eventsBuffer, eventWriteTimeout = 64, 300*time.Millisecond
	t.Cleanup(func() { eventsBuffer, eventWriteTimeout = oldBuf, oldTimeout })
	tm := startMaster(t, NewStaticMembers())

	// A client that attaches and then never reads.
	resp, err := http.Get(tm.srv.URL + "/v2/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	eventually(t, 3*time.Second, "client attached", func() bool { return gaugeValue(tm.metrics.eventClients) == 1 })

	ev := api.NewEvent(api.EventDeploymentInfo, map[string]any{"pad": strings.Repeat("x", 4096)})
	start := time.Now()
	for i := 0; i < 20000; i++ { // 80 MB: more than any socket buffer holds
		tm.Store().Publish(ev)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("publishing took %v: a slow client held the store up", d)
	}
	eventually(t, 5*time.Second, "slow client dropped", func() bool { return gaugeValue(tm.metrics.eventClients) == 0 })
}

func gaugeValue(g interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = g.Write(&m)
	return m.GetGauge().GetValue()
}
