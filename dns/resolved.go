package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// RegisterResolved makes the host's resolver send names under domain to
// dnsAddr (host:port): when systemd-resolved runs, it registers domain as a
// routing domain ("~pcm") with dnsAddr as the DNS server of link iface
// (normally weft0), so getent and getaddrinfo resolve cluster names without
// editing /etc/resolv.conf, and returns "". Otherwise it changes nothing and
// returns the line the user should add (for the caller to print).
func RegisterResolved(ctx context.Context, iface, domain, dnsAddr string) (string, error) {
	domain = strings.Trim(domain, ".")
	host, port, err := net.SplitHostPort(dnsAddr)
	if err != nil {
		return "", fmt.Errorf("dns address %q: %w (want host:port)", dnsAddr, err)
	}
	manual := manualLine(host, port, domain)
	resolvectl, err := exec.LookPath("resolvectl")
	if err != nil || !resolvedRunning() {
		return manual, nil
	}
	server := host
	if port != "53" {
		server = dnsAddr // resolvectl accepts ip:port since systemd 246
		if strings.Contains(host, ":") {
			server = "[" + host + "]:" + port
		}
	}
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, resolvectl, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("resolvectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := run("dns", iface, server); err != nil {
		return manual, err
	}
	if err := run("domain", iface, "~"+domain); err != nil {
		return manual, err
	}
	return "", nil
}

func resolvedRunning() bool {
	_, err := os.Stat("/run/systemd/resolve/io.systemd.Resolve")
	if err == nil {
		return true
	}
	_, err = os.Stat("/run/systemd/resolve/stub-resolv.conf")
	return err == nil
}

// manualLine is what a user adds when systemd-resolved is not there.
func manualLine(host, port, domain string) string {
	if port == "53" {
		return fmt.Sprintf("add to /etc/resolv.conf (first nameserver): nameserver %s   # weft DNS for *.%s, forwards the rest", host, domain)
	}
	return fmt.Sprintf("resolv.conf cannot name port %s: run weft's DNS on port 53 (--dns-addr %s:53), or point a local resolver at %s:%s for *.%s", port, host, host, port, domain)
}
