package main

import (
	"net"
	"net/netip"

	"github.com/weftnet/weft/dns"
)

// setupDNS builds the node's DNS server. On master and agent nodes it
// listens on port 53 of the overlay address (of 127.0.0.1 without the
// overlay: never an open resolver on the underlay); `weft up` listens on
// 127.0.0.1:8053.
func (n *node) setupDNS() error {
	listen := n.c.String("dns-addr")
	if listen == "" {
		host := "127.0.0.1"
		if ov := n.overlayIP(); ov != nil {
			host = ov.String()
		}
		listen = net.JoinHostPort(host, "53")
	}
	addrs := []string{listen}
	if n.c.Bool("dns-local") && listen != "127.0.0.1:53" {
		addrs = append(addrs, "127.0.0.1:53")
	}
	cfg := dns.DefaultConfig()
	cfg.Domain = n.c.String("domain")
	cfg.Listen = addrs
	if n.c.String("dns-http-addr") != "" {
		cfg.HTTPListen = n.controlAddr("dns-http-addr")
	}
	cfg.TTL = uint32(n.c.Int("dns-ttl"))
	cfg.Upstreams = n.c.StringSlice("dns-upstream")
	cfg.Forward = !n.c.Bool("no-dns-forward")
	if n.c.String("dns-addr") == "" {
		// Bound by default (overlay or loopback): answer only loopback and
		// the overlay network, never a host that routes to the overlay
		// address over the underlay (no open resolver).
		ov := n.overlayNet()
		cfg.Clients = func(a netip.Addr) bool {
			return a.IsLoopback() || (ov != nil && ov.Contains(a.AsSlice()))
		}
	}
	cfg.Site = n.site
	cfg.Source = n.finder
	cfg.Registry = n.registry
	cfg.Logger = n.log
	dns.Version = Version
	s, err := dns.New(cfg)
	if err != nil {
		return err
	}
	n.runs = append(n.runs, s.Run)
	listen = s.Addrs()[0] // the bound address (port 0 in tests)
	n.setTags(func() { n.tags.DNS = listen })
	if n.meshOverlay {
		// So getaddrinfo finds *.pcm with no edit of /etc/resolv.conf.
		line, err := dns.RegisterResolved(n.c.Context, n.c.String("interface"), cfg.Domain, listen)
		switch {
		case err != nil:
			n.log.Warn("registering the domain with systemd-resolved", "err", err, "instead", line)
		case line != "":
			n.log.Info("to resolve "+cfg.Domain+" names on this host, add to /etc/resolv.conf", "line", line)
		}
	}
	for _, a := range addrs {
		n.addr("DNS", a+"  (udp+tcp, domain "+cfg.Domain+")")
	}
	if cfg.HTTPListen != "" {
		n.addr("DNS HTTP", "http://"+cfg.HTTPListen)
	}
	return nil
}
