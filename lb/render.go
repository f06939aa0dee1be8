package lb

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteConfig writes the table as readable text: what
// /_haproxy_getconfig serves and what the golden tests compare.
func (t *Table) WriteConfig(w io.Writer) {
	fmt.Fprintf(w, "# weft lb routing table at state index %d\n", t.Index)
	for _, s := range t.Services {
		fmt.Fprintf(w, "\nservice %s\n", s.Name)
		fmt.Fprintf(w, "  app %s port %d service-port %d mode %s balance %s\n", s.AppID, s.PortIndex, s.ServicePort, s.Mode, s.Balance)
		if len(s.Groups) > 0 {
			fmt.Fprintf(w, "  groups %s\n", strings.Join(s.Groups, ","))
		}
		if len(s.VHosts) > 0 {
			fmt.Fprintf(w, "  vhosts %s\n", strings.Join(s.VHosts, ","))
		}
		if len(s.Paths) > 0 {
			fmt.Fprintf(w, "  paths %s\n", strings.Join(s.Paths, " "))
		}
		if s.Weight != 0 {
			fmt.Fprintf(w, "  weight %d\n", s.Weight)
		}
		var opts []string
		if s.Sticky {
			opts = append(opts, "sticky")
		}
		if s.RedirectToHTTPS {
			opts = append(opts, "redirect-to-https")
		}
		if s.HSTS {
			opts = append(opts, "hsts")
		}
		if s.Auth != nil {
			opts = append(opts, fmt.Sprintf("auth realm=%q user=%s", s.Auth.Realm, s.Auth.User))
		}
		if len(s.Allow) > 0 {
			var a []string
			for _, p := range s.Allow {
				a = append(a, p.String())
			}
			opts = append(opts, "allow "+strings.Join(a, ","))
		}
		if s.BindAddr != "" {
			opts = append(opts, "bind "+s.BindAddr)
		}
		if s.SSLCert != "" {
			opts = append(opts, "ssl-cert "+s.SSLCert)
		}
		if s.ProxyPath != "" {
			opts = append(opts, "proxypass-path "+s.ProxyPath)
		}
		if s.Redir != "" {
			opts = append(opts, "root-redirect "+s.Redir)
		}
		if len(opts) > 0 {
			fmt.Fprintf(w, "  options %s\n", strings.Join(opts, " "))
		}
		if len(s.Backends) == 0 {
			fmt.Fprintf(w, "  no backends\n")
		}
		for _, b := range s.Backends {
			fb := ""
			if b.Fallback {
				fb = " fallback"
			}
			if b.Draining {
				fb += " draining"
			}
			fmt.Fprintf(w, "  server %s task %s site %q cookie %s%s\n", b.Addr, b.TaskID, b.Site, b.ServerID, fb)
		}
	}
	if len(t.VHosts) > 0 {
		fmt.Fprintf(w, "\nfrontend http vhosts\n")
		t.WriteVHostMap(prefixWriter{w, "  "})
	}
	if len(t.AppIDs) > 0 {
		fmt.Fprintf(w, "\nfrontend appid (X-Marathon-App-Id)\n")
		t.WriteAppMap(prefixWriter{w, "  "})
	}
	if len(t.Problems) > 0 {
		fmt.Fprintf(w, "\nproblems\n")
		for _, p := range t.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

// WriteVHostMap writes "vhost[path] backend" lines, in routing order, as
// marathon-lb's /_haproxy_getvhostmap does.
func (t *Table) WriteVHostMap(w io.Writer) {
	hosts := make([]string, 0, len(t.VHosts))
	for h := range t.VHosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		for _, s := range t.VHosts[h] {
			if len(s.Paths) == 0 {
				fmt.Fprintf(w, "%s\t%s\n", h, s.Name)
			}
			for _, p := range s.Paths {
				fmt.Fprintf(w, "%s%s\t%s\n", h, p, s.Name)
			}
		}
	}
}

// WriteAppMap writes "appid backend" lines as /_haproxy_getappmap does.
func (t *Table) WriteAppMap(w io.Writer) {
	ids := make([]string, 0, len(t.AppIDs))
	for id := range t.AppIDs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "%s\t%s\n", id, t.AppIDs[id].Name)
	}
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	// Callers write whole lines.
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
