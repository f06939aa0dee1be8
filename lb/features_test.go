package lb

import (
	"io"
	"net/http"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// TestAuthMD5AndDESThroughProxy: hashes from `openssl passwd -1` and DES
// crypt(3) authenticate through the real proxy.
func TestAuthMD5AndDESThroughProxy(t *testing.T) {
	src := newFakeSource()
	a := startHTTPBackend(t, "a", nil)
	src.set([]api.App{
		app("/md5", freePort(t), map[string]string{"HAPROXY_0_VHOST": "md5.test", "HAPROXY_0_AUTH": "r:alice:$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/"}),
		app("/des", freePort(t), map[string]string{"HAPROXY_0_VHOST": "des.test", "HAPROXY_0_AUTH": "r:bob:abhWCwoTZY2c6"}),
	}, []api.Task{task("/md5", 1, a.port), task("/des", 1, a.port)})
	p := startProxy(t, testConfig(src))
	c := client()
	do := func(host, user, pass string) int {
		req, _ := http.NewRequest("GET", "http://"+p.Addr("http")+"/", nil)
		req.Host = host
		req.SetBasicAuth(user, pass)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		host, user, pass string
		want             int
	}{
		{"md5.test", "alice", "s3cret", 200},
		{"md5.test", "alice", "s3cret!", 401},
		{"des.test", "bob", "s3cret", 200},
		{"des.test", "bob", "secret", 401},
	} {
		if got := do(tc.host, tc.user, tc.pass); got != tc.want {
			t.Errorf("%s %s:%s: got %d, want %d", tc.host, tc.user, tc.pass, got, tc.want)
		}
	}
}
