package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/dns"
)

// setupDNS builds the node's DNS server. On master and agent nodes it
// listens on port 53 of the overlay address (of 127.0.0.1 without the
// overlay: never an open resolver on the underlay); `weft up` listens on
// 127.0.0.1:8053.
func (n *node) setupDNS() error {
	cfg := dns.DefaultConfig()
	fileListen := ""
	if n.dnsFile != nil {
		cfg = *n.dnsFile
		if len(cfg.Listen) > 0 {
			fileListen = cfg.Listen[0]
		}
	}
	listen := n.c.String("dns-addr")
	if !n.c.IsSet("dns-addr") && fileListen != "" {
		listen = fileListen // the config's listener and port, as Mesos-DNS binds them
	}
	bound := listen == "" // by default: overlay or loopback
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
	hostDNS := n.meshOverlay && !n.c.Bool("no-host-dns")
	var rc *dns.ResolvConf
	if hostDNS {
		// A block left by a weft that crashed goes first: weft's DNS
		// must not find itself among the upstreams it forwards to.
		dir, err := n.subdir("dns")
		if err != nil {
			return err
		}
		rc = &dns.ResolvConf{Path: n.c.String("resolv-conf"), Backup: filepath.Join(dir, "resolv.conf.before-weft")}
		if undone, err := rc.Recover(); err != nil {
			n.log.Warn("undoing the resolv.conf block of an earlier run", "err", err)
		} else if undone {
			n.log.Info("restored " + rc.Path + " as it was before an earlier weft that did not stop cleanly")
		}
		cfg.ResolvConf = rc.Path
	}
	cfg.Domain = n.domain()
	cfg.Listen = addrs
	// Flags given on the command line win over --dns-config; without the
	// file every flag applies.
	flag := func(name string) bool { return n.dnsFile == nil || n.c.IsSet(name) }
	switch {
	case flag("dns-http-addr") && n.c.String("dns-http-addr") != "":
		cfg.HTTPListen = n.controlAddr("dns-http-addr")
	case flag("dns-http-addr"):
		cfg.HTTPListen = ""
	case cfg.HTTPListen != "":
		cfg.HTTPListen = n.controlAddrOf(cfg.HTTPListen)
	}
	if flag("dns-ttl") {
		cfg.TTL = uint32(n.c.Int("dns-ttl"))
	}
	if flag("dns-upstream") {
		cfg.Upstreams = n.c.StringSlice("dns-upstream")
	}
	if flag("no-dns-forward") {
		cfg.Forward = !n.c.Bool("no-dns-forward")
	}
	if bound {
		// Bound by default (overlay or loopback): answer only loopback and
		// the overlay network, never a host that routes to the overlay
		// address over the underlay (no open resolver).
		cfg.Clients = n.localClient
	}
	cfg.Site = n.site
	cfg.Source = n.stateWatcher().Consumer()
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
	if hostDNS {
		n.setupHostDNS(rc, cfg.Domain, listen)
	}
	for _, a := range addrs {
		n.addr("DNS", a+"  (udp+tcp, domain "+cfg.Domain+")")
	}
	if cfg.HTTPListen != "" {
		n.addr("DNS HTTP", "http://"+cfg.HTTPListen)
	}
	return nil
}

// setupHostDNS makes this host's resolver send the cluster domain to
// weft's DNS with no setup: split DNS through systemd-resolved where it
// runs, else a managed block in resolv.conf, undone when weft stops (and
// on the next start after a crash). --no-host-dns turns it off.
func (n *node) setupHostDNS(rc *dns.ResolvConf, domain, listen string) {
	line, err := dns.RegisterResolved(n.c.Context, n.c.String("interface"), domain, listen)
	switch {
	case err != nil:
		n.log.Warn("registering the domain with systemd-resolved", "err", err, "instead", line)
		return
	case line == "":
		n.log.Info("host DNS: systemd-resolved sends *." + domain + " to weft's DNS")
		return
	}
	host, port, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // a wildcard listener (a Mesos-DNS config's 0.0.0.0) answers on loopback
	}
	if port != "53" {
		n.log.Info("host DNS: resolv.conf cannot name a port; to resolve "+domain+" names on this host", "do", line)
		return
	}
	if err := rc.Install(host); err != nil {
		n.log.Warn("host DNS: could not add weft's DNS to "+rc.Path, "err", err, "instead", line)
		return
	}
	n.log.Info("host DNS: weft's DNS is the first nameserver in "+rc.Path+" until weft stops (--no-host-dns to leave it alone)", "nameserver", host)
	n.closers = append(n.closers, func() {
		if err := rc.Restore(); err != nil {
			n.log.Warn("host DNS: restoring "+rc.Path, "err", err)
		}
	})
}

// loadDNSConfig reads --dns-config, a Mesos-DNS config.json, once: a file
// that cannot be read or that Mesos-DNS would refuse stops the node with an
// error naming the file and the key; settings weft keeps without honouring
// are logged as warnings.
func (n *node) loadDNSConfig() error {
	path := n.c.String("dns-config")
	if path == "" || n.dnsFile != nil {
		return nil
	}
	if n.c.Bool("no-dns") {
		return fmt.Errorf("--dns-config %s: this node runs no DNS server (--no-dns)", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--dns-config: %w", err)
	}
	cfg := dns.DefaultConfig()
	cfg.Listen = nil // set only when the file says listener or port
	if abs, err := filepath.Abs(path); err == nil {
		cfg.MesosDNS.File = abs
	}
	if err := dns.ApplyMesosDNSConfig(&cfg, data); err != nil {
		return fmt.Errorf("--dns-config %s: %w", path, err)
	}
	for _, w := range cfg.MesosDNSWarnings {
		n.log.Warn("--dns-config " + path + ": " + w)
	}
	n.dnsFile = &cfg
	return nil
}

// domain is the cluster's DNS domain: --domain when given, else the
// domain of --dns-config, else the default.
func (n *node) domain() string {
	if n.dnsFile != nil && !n.c.IsSet("domain") {
		return n.dnsFile.Domain
	}
	return n.c.String("domain")
}
