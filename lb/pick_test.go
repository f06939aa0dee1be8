package lb

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func testRoute(balance string, primary, fallback int) *route {
	r := &route{svc: &Service{Balance: balance}}
	for i := 0; i < primary; i++ {
		r.primary = append(r.primary, newBackend(fmt.Sprintf("p%d", i), "", ""))
	}
	for i := 0; i < fallback; i++ {
		r.fallback = append(r.fallback, newBackend(fmt.Sprintf("f%d", i), "", ""))
	}
	return r
}

func TestPick(t *testing.T) {
	ip1, ip2 := net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2")
	t.Run("roundrobin visits every same-site backend, never the other site", func(t *testing.T) {
		r := testRoute(BalanceRoundRobin, 3, 2)
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			seen[r.pick(ip1, 0, nil).addr]++
		}
		if len(seen) != 3 || seen["p0"] != 10 || seen["f0"] != 0 {
			t.Errorf("got %v", seen)
		}
	})
	t.Run("falls over to other sites when the site's backends are ejected", func(t *testing.T) {
		r := testRoute(BalanceRoundRobin, 2, 1)
		for _, b := range r.primary {
			b.ejectedUntil.Store(100)
		}
		if b := r.pick(ip1, 50, nil); b == nil || b.addr != "f0" {
			t.Errorf("got %v, want f0", b)
		}
		if b := r.pick(ip1, 150, nil); b == nil || b.addr[0] != 'p' {
			t.Errorf("after the cool-down: got %v, want a same-site backend", b)
		}
	})
	t.Run("with everything ejected it still tries", func(t *testing.T) {
		r := testRoute(BalanceRoundRobin, 1, 0)
		r.primary[0].ejectedUntil.Store(100)
		if b := r.pick(ip1, 50, nil); b == nil {
			t.Error("no backend; want the ejected one tried anyway")
		}
		if b := r.pick(ip1, 50, r.primary); b != nil {
			t.Errorf("a tried backend was picked again: %v", b.addr)
		}
	})
	t.Run("leastconn picks the least busy", func(t *testing.T) {
		r := testRoute(BalanceLeastConn, 3, 0)
		r.primary[0].active.Store(5)
		r.primary[1].active.Store(1)
		r.primary[2].active.Store(3)
		if b := r.pick(ip1, 0, nil); b.addr != "p1" {
			t.Errorf("got %s, want p1", b.addr)
		}
	})
	t.Run("source is stable per client", func(t *testing.T) {
		r := testRoute(BalanceSource, 4, 0)
		a, b := r.pick(ip1, 0, nil), r.pick(ip2, 0, nil)
		for i := 0; i < 10; i++ {
			if r.pick(ip1, 0, nil) != a || r.pick(ip2, 0, nil) != b {
				t.Fatal("source balance moved a client")
			}
		}
	})
}

func TestResyncSignal(t *testing.T) {
	src := newFakeSource()
	src.noPush = true
	a := startHTTPBackend(t, "a", nil)
	b := startHTTPBackend(t, "b", nil)
	src.set([]api.App{app("/x", freePort(t), map[string]string{"HAPROXY_0_VHOST": "x.test"})}, []api.Task{task("/x", 1, a.port)})
	cfg := testConfig(src)
	cfg.ResyncEvery = time.Minute
	p := startProxy(t, cfg)
	src.set([]api.App{app("/x", freePort(t), map[string]string{"HAPROXY_0_VHOST": "x.test"})}, []api.Task{task("/x", 2, b.port)})
	c := client()
	if _, body := get(t, c, "http://"+p.Addr("http")+"/", "x.test", nil); body != "a /" {
		t.Fatalf("the fake master should not have pushed yet: %q", body)
	}
	resp, err := c.Post("http://"+p.Addr("admin")+"/_mlb_signal/hup", "text/plain", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("hup: %v %v", resp, err)
	}
	resp.Body.Close()
	eventually(t, 5*time.Second, func() error {
		if _, body := get(t, c, "http://"+p.Addr("http")+"/", "x.test", nil); body != "b /" {
			return fmt.Errorf("still %q", body)
		}
		return nil
	})
}
