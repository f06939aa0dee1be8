package sched

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
