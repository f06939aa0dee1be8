package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	mdns "github.com/miekg/dns"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/mesh/meshtest"
	"github.com/weftnet/weft/sched/api"
)

// TestSecurityAttackerOnUnderlay runs three masters and an agent over the
// WireGuard overlay, joined by a token given in a file, and an attacker
// host on the same underlay without the token, which also routes the
// overlay network through m1. It checks that:
//   - every listener of a master and of the agent is on the overlay or
//     loopback, is a public lb port, or refuses the attacker;
//   - the node APIs refuse the attacker even through the route: raft and
//     the agent API at the TLS handshake, the master's node-only
//     endpoints with 403;
//   - a raw raft RPC (a heartbeat with a far higher term) changes nothing;
//   - a `weft master` started by the attacker without the token is not
//     added as a voter;
//   - a dead voter is removed once a replacement has joined, and writes
//     go through again without operator action.
func TestSecurityAttackerOnUnderlay(t *testing.T) {
	if why := meshtest.Missing(); why != "" {
		t.Skip(why)
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss is not installed (Debian iproute2)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tb := meshtest.New(t)
	weft := testbin.Weft(t)
	tb.AddSite("dc")
	hosts := map[string]*meshtest.Host{}
	for _, name := range []string{"m1", "m2", "m3", "a1", "x"} {
		hosts[name] = tb.AddHost("dc", name)
	}
	m1h, a1h, x := hosts["m1"], hosts["a1"], hosts["x"]
	tok, err := exec.Command(weft, "mesh", "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	seed := m1h.IP().String() + ":7946"
	common := func(h *meshtest.Host) []string {
		return []string{"--node-name", h.Name, "--site", "dc", "--data-dir", filepath.Join(dir, h.Name),
			"--gossip-addr", h.IP().String() + ":7946", "--token-file", tokenFile, "--join", seed}
	}
	procs := map[string]*meshtest.Process{}
	startMaster := func(h *meshtest.Host) {
		procs[h.Name] = h.Start(append([]string{weft, "master", "--bootstrap-expect", "3", "--dead-master-after", "4s"}, common(h)...)...)
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		startMaster(hosts[m])
	}
	procs["a1"] = a1h.Start(append([]string{weft, "agent", "--no-docker", "--cpus", "1", "--mem", "512"}, common(a1h)...)...)
	logs := func() string {
		var b strings.Builder
		for _, name := range []string{"m1", "m2", "m3", "m4", "a1", "x"} {
			if p := procs[name]; p != nil {
				fmt.Fprintf(&b, "--- %s:\n%s\n", name, tail(p.Output(), 3000))
			}
		}
		return b.String()
	}
	api := "http://127.0.0.1:8080"
	raftConf := func() (*apiRaftConf, error) {
		code, b, err := hostAPI(ctx, m1h, "GET", api+"/v1/operator/raft/configuration", nil)
		if err != nil || code != 200 {
			return nil, fmt.Errorf("raft configuration: %d %s %v", code, b, err)
		}
		var c apiRaftConf
		return &c, json.Unmarshal(b, &c)
	}
	voters := func(c *apiRaftConf) []string {
		var ids []string
		for _, s := range c.Servers {
			if s.Voter {
				ids = append(ids, s.ID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	if err := meshtest.Eventually(ctx, 90*time.Second, func() error {
		c, err := raftConf()
		if err != nil {
			return err
		}
		if got := voters(c); !slices.Equal(got, []string{"m1", "m2", "m3"}) {
			return fmt.Errorf("voters %v", got)
		}
		code, b, err := hostAPI(ctx, a1h, "GET", "http://127.0.0.1:5051/v1/health", nil)
		if err != nil || code != 200 || !strings.Contains(string(b), `"master":"reachable"`) {
			return fmt.Errorf("a1 health: %d %s %v", code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("cluster: %v\n%s", err, logs())
	}
	m1IP := m1h.IP().String()
	m1Overlay, err := (&siteNode{h: m1h}).overlayIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a1Overlay, err := (&siteNode{h: a1h}).overlayIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker routes the overlay network through m1 and a1's
	// underlay addresses: binding to the overlay address alone keeps
	// nothing out (Linux accepts a packet for any local address on any
	// interface), so the node APIs must refuse it themselves.
	if out, err := x.Exec(ctx, "ip", "route", "add", m1Overlay+"/32", "via", m1IP); err != nil {
		t.Fatalf("route: %v %s", err, out)
	}
	if out, err := x.Exec(ctx, "ip", "route", "add", a1Overlay+"/32", "via", a1h.IP().String()); err != nil {
		t.Fatalf("route: %v %s", err, out)
	}

	// 1. Every listener.
	for _, h := range []*meshtest.Host{m1h, a1h} {
		out, err := h.Exec(ctx, "ss", "-H", "-ltnup")
		if err != nil {
			t.Fatalf("ss on %s: %v %s", h.Name, err, out)
		}
		for _, l := range parseSS(string(out)) {
			why := classify(l)
			if why == "" {
				why = attackerRefused(ctx, x, l, h.IP().String())
			}
			t.Logf("%s %s %s:%d: %s", h.Name, l.proto, l.host, l.port, why)
			if strings.HasPrefix(why, "EXPOSED") {
				t.Errorf("%s: %s %s:%d (%s) %s", h.Name, l.proto, l.host, l.port, l.process, why)
			}
		}
	}

	// 2. The node APIs through the attacker's route.
	plain := x.HTTPClient()
	tlsNoCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: x.Dial, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(c *http.Client, url string) (int, error) {
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	for _, u := range []string{"http://" + m1Overlay + ":8080/v1/agents/a1/assignments", "http://" + a1Overlay + ":5051/v1/tasks"} {
		if code, err := get(plain, u); err != nil || code != http.StatusBadRequest {
			t.Errorf("attacker, plain HTTP %s: %d %v, want 400 (HTTPS only)", u, code, err)
		}
	}
	if code, err := get(tlsNoCert, "https://"+m1Overlay+":8080/v1/agents/a1/assignments"); err != nil || code != http.StatusForbidden {
		t.Errorf("attacker, TLS without a node certificate, assignments: %d %v, want 403", code, err)
	}
	// A forged TASK_FAILED.
	forged := `[{"taskId":"sec_sleep.1","state":"TASK_FAILED"}]`
	if resp, err := tlsNoCert.Post("https://"+m1Overlay+":8080/v1/agents/a1/status", "application/json", strings.NewReader(forged)); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("attacker, TLS without a node certificate, POST status: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, addr := range []string{a1Overlay + ":5051", m1Overlay + ":8300"} {
		if err := tlsHandshake(ctx, x, addr); err == nil {
			t.Errorf("attacker: a TLS handshake without a node certificate with %s succeeded", addr)
		} else {
			t.Logf("attacker, TLS with %s: %v", addr, err)
		}
	}

	// The lb's admin endpoints, on the overlay address, refuse the route.
	if code, err := get(plain, "http://"+m1Overlay+":9090/_haproxy_getconfig"); err != nil || code != http.StatusForbidden {
		t.Errorf("attacker, lb admin through the route: %d %v, want 403", code, err)
	}
	if code, _, err := hostAPI(ctx, a1h, "GET", "http://"+m1Overlay+":9090/_haproxy_health_check", nil); err != nil || code != http.StatusOK {
		t.Errorf("lb admin from a1 over the overlay: %d %v", code, err)
	}

	// DNS on the overlay address is no open resolver for the attacker's
	// route; the agent's own overlay address still gets answers.
	q := new(mdns.Msg)
	q.SetQuestion("leader.pcm.", mdns.TypeA)
	dc := &mdns.Client{Net: "udp", Timeout: time.Second}
	if err := x.InNetns(func() error {
		_, _, err := dc.Exchange(q, net.JoinHostPort(m1Overlay, "53"))
		return err
	}); err == nil {
		t.Error("m1's DNS answered the attacker through its route")
	}
	// leader.pcm has no answer while an election runs (the masters above
	// were just started and one was replaced), so ask for a few seconds.
	if err := meshtest.Eventually(ctx, 15*time.Second, func() error {
		return a1h.InNetns(func() error {
			r, _, err := dc.Exchange(q, net.JoinHostPort(m1Overlay, "53"))
			if err == nil && len(r.Answer) == 0 {
				err = fmt.Errorf("no answer: %v", r)
			}
			return err
		})
	}); err != nil {
		t.Errorf("m1's DNS from a1 over the overlay: %v", err)
	}

	// 3. A raw raft RPC: a heartbeat with a far higher term.
	leaderBefore := leaderOf(ctx, t, m1h)
	err = x.InNetns(func() error {
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 3*time.Second, io.Discard)
		if err != nil {
			return err
		}
		defer tr.Close()
		var resp raft.AppendEntriesResponse
		return tr.AppendEntries("m1", raft.ServerAddress(m1Overlay+":8300"), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte(x.IP().String() + ":8300")},
			Term:      1 << 40,
		}, &resp)
	})
	if err == nil {
		t.Fatal("a raw raft RPC from the attacker was answered")
	}
	t.Logf("raw raft RPC: %v", err)
	// Had the heartbeat reached raft, m1's raft would have followed the
	// higher term and lost its leader; give it the time to show.
	time.Sleep(time.Second)
	if after := leaderOf(ctx, t, m1h); after != leaderBefore || after == "" {
		t.Fatalf("leader before the raw RPC %q, after %q", leaderBefore, after)
	}

	// 4. A stranger's master without the token, and 5. a dead voter: m3 is
	// killed, m4 replaces it.
	procs["x"] = x.Start(weft, "master", "--no-mesh", "--node-name", "x", "--data-dir", filepath.Join(dir, "x"),
		"--gossip-addr", x.IP().String()+":7946", "--join", seed, "--no-lb", "--no-dns")
	procs["m3"].Kill()
	m4 := tb.AddHost("dc", "m4")
	startMaster(m4)
	if err := meshtest.Eventually(ctx, 90*time.Second, func() error {
		c, err := raftConf()
		if err != nil {
			return err
		}
		if got := voters(c); !slices.Equal(got, []string{"m1", "m2", "m4"}) {
			return fmt.Errorf("voters %v", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("dead voter: %v\n%s", err, logs())
	}
	// Quorum is back: a write commits.
	body := []byte(`{"id":"/sec/sleep","cmd":"sleep 1000","cpus":0.1,"mem":16,"instances":0}`)
	if code, b, err := hostAPI(ctx, m1h, "PUT", api+"/v2/apps/sec/sleep", body); err != nil || code/100 != 2 {
		t.Fatalf("write after the dead voter's removal: %d %s %v\n%s", code, b, err, logs())
	}
	out, err := m1h.Exec(ctx, weft, "operator", "raft", "list-peers")
	if err != nil || !strings.Contains(string(out), "m4") || strings.Contains(string(out), "m3") {
		t.Fatalf("weft operator raft list-peers: %v\n%s", err, out)
	}
	t.Logf("weft operator raft list-peers:\n%s", out)
	// The stranger got nowhere: not a voter, not even a member.
	c, err := raftConf()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		if s.ID == "x" {
			t.Fatalf("the stranger's master is in raft: %+v", c.Servers)
		}
	}
	code, b, err := hostAPI(ctx, m1h, "GET", api+"/v1/nodes", nil)
	if err != nil || code != 200 || strings.Contains(string(b), `"name":"x"`) {
		t.Fatalf("nodes: %d %v %s", code, err, b)
	}
}

type apiRaftConf = api.RaftConfiguration

func leaderOf(ctx context.Context, t *testing.T, h *meshtest.Host) string {
	code, b, err := hostAPI(ctx, h, "GET", "http://127.0.0.1:8080/v2/leader", nil)
	if err != nil || code != 200 {
		return ""
	}
	var l struct{ Leader string }
	_ = json.Unmarshal(b, &l)
	return l.Leader
}

// tlsHandshake tries a TLS handshake without a client certificate from h.
func tlsHandshake(ctx context.Context, h *meshtest.Host, addr string) error {
	c, err := h.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		return err
	}
	// TLS 1.3: a refused client certificate shows at the first read.
	_, err = tc.Read(make([]byte, 1))
	if err != nil && err != io.EOF {
		return err
	}
	return nil
}

type ssListener struct {
	proto   string // tcp or udp
	host    string
	port    int
	process string
	device  string // SO_BINDTODEVICE: what ss prints after the % ("" when unbound)
}

// parseSS reads `ss -H -ltnup`.
func parseSS(out string) []ssListener {
	var ls []ssListener
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		local := f[4]
		i := strings.LastIndex(local, ":")
		if i < 0 {
			continue
		}
		port, _ := strconv.Atoi(local[i+1:])
		host := strings.Trim(local[:i], "[]")
		device := ""
		if j := strings.Index(host, "%"); j >= 0 {
			host, device = host[:j], host[j+1:]
		}
		l := ssListener{proto: f[0], host: host, port: port, device: device}
		if len(f) > 6 {
			l.process = f[6]
		}
		ls = append(ls, l)
	}
	return ls
}

// classify says why a listener is fine as it stands, or "" when the
// attacker must be tried against it.
func classify(l ssListener) string {
	ip := net.ParseIP(l.host)
	switch {
	case ip != nil && ip.IsLoopback():
		return "loopback"
	case ip != nil && ip.To4() != nil && ip.To4()[0] == 10 && ip.To4()[1] == 47:
		return "overlay"
	case l.device == "weft0":
		// Bound to the WireGuard interface (the punch side channel):
		// the kernel delivers it only what came in over the overlay.
		return "overlay: bound to weft0"
	case l.proto == "tcp" && (l.port == 80 || l.port == 443 || (l.port >= 10000 && l.port <= 20000)):
		return "lb public vhost/service port"
	case l.port == 7946:
		return "gossip: encrypted with the token (the stranger below is refused)"
	case l.proto == "udp" && l.port == 51820:
		return "WireGuard: answers only handshakes of known keys"
	}
	return ""
}

// attackerRefused probes a listener that is open to the underlay from the
// attacker: it must refuse plain HTTP (400 HTTPS-only, 401, 403 or a
// dropped connection) and TLS without a node certificate (a failed
// handshake, 401 or 403).
func attackerRefused(ctx context.Context, x *meshtest.Host, l ssListener, hostIP string) string {
	if l.proto != "tcp" {
		return "EXPOSED: a UDP port on the underlay"
	}
	addr := net.JoinHostPort(hostIP, strconv.Itoa(l.port))
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: x.Dial, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var notes []string
	for _, u := range []string{"http://" + addr + "/v1/agents/a1/assignments", "https://" + addr + "/v1/agents/a1/assignments"} {
		resp, err := c.Get(u)
		if err != nil {
			notes = append(notes, "refused: "+err.Error())
			continue
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 400, 401, 403:
			notes = append(notes, "refused: "+resp.Status)
		default:
			return "EXPOSED: " + u + " answered " + resp.Status
		}
	}
	return strings.Join(notes, "; ")
}
