package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/internal/nodetls"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/sched/api"
)

// tokenFileName is where `weft up` keeps the token it made, in its data dir.
const tokenFileName = "token"

// resolveToken finds the join token: --token-file, else WEFT_TOKEN, else
// --token (on the command line every local user sees it: a warning), else
// for `weft up` the one kept in the data dir (made on first start). It
// sets --token, which the mesh reads.
func (n *node) resolveToken() error {
	c := n.c
	var tok string
	switch {
	case c.String("token-file") != "":
		b, err := os.ReadFile(c.String("token-file"))
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return fmt.Errorf("--token-file %s is empty (create a token with `weft mesh token`)", c.String("token-file"))
		}
	case os.Getenv("WEFT_TOKEN") != "":
		tok = strings.TrimSpace(os.Getenv("WEFT_TOKEN"))
	case c.String("token") != "":
		tok = c.String("token")
		n.log.Warn("the join token is on the command line, where every local user can read it (ps); pass it with --token-file or WEFT_TOKEN instead")
	case n.role == roleUp:
		var err error
		if tok, err = upToken(n.dataDir); err != nil {
			return err
		}
	}
	if tok == "" {
		n.log.Warn("no join token: gossip, raft and node-to-node HTTP are unauthenticated and unencrypted; create one with `weft mesh token` and pass it with --token-file")
		return nil
	}
	n.token = tok
	return c.Set("token", tok)
}

// upToken reads the token `weft up` keeps in its data dir, or makes one.
func upToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, tokenFileName)
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading the join token: %w", err)
	}
	tok, err := mesh.GenerateToken()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keeping the join token in %s: %w", path, err)
	}
	return tok, nil
}

// setupIdentity issues this node's certificate under the cluster CA the
// token gives (no token: no identity, node-to-node traffic in the clear),
// writes the CA to the data dir (ca.pem, for `curl --cacert`) and loads
// --api-tls-cert.
func (n *node) setupIdentity() error {
	var operator *tls.Certificate
	if cert, key := n.c.String("api-tls-cert"), n.c.String("api-tls-key"); cert != "" || key != "" {
		if cert == "" || key == "" {
			return fmt.Errorf("--api-tls-cert and --api-tls-key go together")
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("--api-tls-cert/--api-tls-key: %w", err)
		}
		operator = &pair
	}
	if n.token == "" {
		if operator != nil {
			n.apiTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*operator}}
		}
		return nil
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(n.advertiseHost()); ip != nil {
		ips = append(ips, ip)
	}
	id, err := nodetls.NewIdentity(n.token, n.name, ips)
	if err != nil {
		return err
	}
	id.APICert = operator
	n.id = id
	n.apiTLS = id.APIServerConfig()
	caPath := filepath.Join(n.dataDir, "ca.pem")
	if err := os.WriteFile(caPath, id.CA.PEM(), 0o644); err != nil {
		n.log.Warn("writing the cluster CA certificate", "path", caPath, "err", err)
	}
	return nil
}

// nodeClient is an api.Client for another node's API: over mutual TLS
// with this node's certificate when the cluster has a token.
func (n *node) nodeClient(hostport string) *api.Client {
	if n.id == nil {
		return api.NewClient(hostport)
	}
	n.nodeTransportOnce.Do(func() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = n.id.ClientConfig()
		n.nodeTransport = t
	})
	c := api.NewClient(hostport)
	c.Base = "https://" + strings.TrimPrefix(strings.TrimPrefix(c.Base, "http://"), "https://")
	c.Bases = []string{c.Base}
	c.HTTP = &http.Client{Transport: n.nodeTransport, Timeout: 30 * time.Second}
	c.Stream = &http.Client{Transport: n.nodeTransport}
	return c
}

// agentHTTPClient reaches other nodes' agent APIs (the UI's task logs
// and mesh status): over mutual TLS with this node's certificate when the
// cluster has a token.
func (n *node) agentHTTPClient() *http.Client {
	if n.id == nil {
		return &http.Client{Timeout: 5 * time.Second}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = n.id.ClientConfig()
	return &http.Client{Transport: t, Timeout: 5 * time.Second}
}

func (n *node) agentScheme() string {
	if n.id == nil {
		return "http"
	}
	return "https"
}

// overlayIP is this node's overlay address (nil without the mesh).
func (n *node) overlayIP() net.IP {
	if !n.meshOverlay {
		return nil
	}
	return net.ParseIP(n.mesh.Self().OverlayIP)
}

// bindAddrs says where a listener given by flag binds: with the mesh on
// and the flag left at its default (or given with an unspecified host),
// on the overlay address and, with loopback, on 127.0.0.1 as well, at
// the flag's port; otherwise where the flag says.
func (n *node) bindAddrs(flag string, loopback bool) ([]string, error) {
	addr := n.c.String(flag)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: %w", flag, addr, err)
	}
	ov := n.overlayIP()
	ip := net.ParseIP(host)
	unspecified := host == "" || (ip != nil && ip.IsUnspecified())
	if ov == nil || (n.c.IsSet(flag) && !unspecified) {
		out := []string{addr}
		// An explicit underlay API address is served beside the overlay and
		// loopback ones, which nodes and local users keep using.
		if ov != nil && flag == "api-addr" && !ov.Equal(ip) {
			out = append(out, net.JoinHostPort(ov.String(), port))
			if ip == nil || !ip.IsLoopback() {
				out = append(out, net.JoinHostPort("127.0.0.1", port))
			}
		}
		return out, nil
	}
	out := []string{net.JoinHostPort(ov.String(), port)}
	if loopback {
		out = append(out, net.JoinHostPort("127.0.0.1", port))
	}
	return out, nil
}

// listenNode opens the listeners of one node API. With an identity, each
// one sorts its connections: TLS with tlsConf (on a node-only API it
// requires a node certificate), plain HTTP only on the addresses plainOK
// allows; others get a 400 that says to use https.
func (n *node) listenNode(flag string, addrs []string, tlsConf *tls.Config, plainOK func(net.Conn) bool) ([]net.Listener, error) {
	var out []net.Listener
	for _, a := range addrs {
		ln, err := listenTCP("--"+flag, a)
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, err
		}
		if tlsConf != nil {
			ln = nodetls.NewListener(ln, tlsConf, plainOK)
		}
		out = append(out, ln)
		l := ln
		n.closers = append(n.closers, func() { l.Close() })
	}
	return out, nil
}

// needsTLS reports whether l serves remote clients in TLS only (not on
// loopback or the overlay address).
func (n *node) needsTLS(l net.Listener) bool {
	a, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return false
	}
	return !a.IP.IsLoopback() && !a.IP.Equal(n.overlayIP())
}

// advertisedOn picks the address others reach a set of listeners at: the
// overlay one when the mesh runs, else the first listener's.
func (n *node) advertisedOn(lns []net.Listener) string {
	if ov := n.overlayIP(); ov != nil {
		for _, l := range lns {
			if a, ok := l.Addr().(*net.TCPAddr); ok && (a.IP.Equal(ov) || a.IP.IsUnspecified()) {
				return net.JoinHostPort(ov.String(), strconv.Itoa(a.Port))
			}
		}
	}
	return n.advertised(lns[0])
}

// tlsFlags are the node flags of this lane: the token file and the API's
// own TLS certificate.
func tlsFlags(role string) []cli.Flag {
	fs := []cli.Flag{
		&cli.StringFlag{Name: "token-file", Usage: "file holding the cluster join token (instead of --token, which every local user can read)", EnvVars: envName("token-file")},
	}
	if role != roleAgent {
		fs = append(fs,
			&cli.StringFlag{Name: "api-tls-cert", Usage: "PEM certificate the API shows on --api-addr's underlay address (default: one of the cluster CA, whose fingerprint is printed at start)", EnvVars: envName("api-tls-cert")},
			&cli.StringFlag{Name: "api-tls-key", Usage: "PEM key of --api-tls-cert", EnvVars: envName("api-tls-key")},
			&cli.DurationFlag{Name: "dead-master-after", Value: 2 * time.Minute, Usage: "a master that gossip has seen failed this long is removed from raft once a replacement has joined (0: never)", EnvVars: envName("dead-master-after")},
		)
	}
	return fs
}

// controlAddr is where a control listener given by flag (lb admin and
// app-id frontends, the DNS HTTP API) binds: an unspecified host becomes
// the overlay address with the mesh (which local users reach as well) and
// 127.0.0.1 without; a specific address is kept.
func (n *node) controlAddr(flag string) string {
	return n.controlAddrOf(n.c.String(flag))
}

// controlAddrOf is controlAddr for an address from elsewhere (a file).
func (n *node) controlAddrOf(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr // the role reports the bad address
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	if ov := n.overlayIP(); ov != nil {
		return net.JoinHostPort(ov.String(), port)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// overlayNet is the overlay network (nil without the mesh): plain HTTP is
// served to peers inside it, which came through WireGuard.
func (n *node) overlayNet() *net.IPNet {
	if !n.meshOverlay {
		return nil
	}
	_, ipn, err := net.ParseCIDR(n.c.String("overlay-cidr"))
	if err != nil {
		return nil
	}
	return ipn
}

// localClient reports whether a client address is loopback or in the
// overlay network: who the node's own control endpoints answer.
func (n *node) localClient(a netip.Addr) bool {
	ov := n.overlayNet()
	return a.IsLoopback() || (ov != nil && ov.Contains(a.AsSlice()))
}
