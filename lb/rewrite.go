package lb

import (
	"bufio"
	"bytes"
	"strings"
)

// HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH and HAPROXY_{n}_HTTP_BACKEND_REDIR,
// as marathon-lb's templates do them:
//
//	http-request set-header Host {hostname}
//	reqirep "^([^ :]*)\ {proxypath}/?(.*)" "\1\ /\2"
//
//	redirect code 301 location {redirpath} if { hdr(host) -i {hostname} } { path -i / }
//
// The prefix is removed from a path that starts with it, with the slash
// that follows ("/api/x" and "/apix" become "/x", "/api" becomes "/"),
// and the Host header becomes the vhost the request came for, else the
// app's first vhost.

// proxyPassPath returns path without the prefix pp, and whether it had it.
func proxyPassPath(path, pp string) (string, bool) {
	if !strings.HasPrefix(path, pp) {
		return path, false
	}
	return "/" + strings.TrimPrefix(path[len(pp):], "/"), true
}

// vhostOf reports whether host is one of the service's vhosts.
func vhostOf(s *Service, host string) bool {
	for _, v := range s.VHosts {
		if v == host {
			return true
		}
	}
	return false
}

// proxyPassHost is the Host header a proxy-pass service's backends see:
// host when it is one of the vhosts, else the first vhost ("" without one:
// the Host header stays).
func proxyPassHost(s *Service, host string) string {
	if len(s.VHosts) == 0 {
		return ""
	}
	if vhostOf(s, host) {
		return host
	}
	return s.VHosts[0]
}

func writeRedirect(bw *bufio.Writer, location string) {
	bw.WriteString("HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\nLocation: ")
	bw.WriteString(location)
	bw.WriteString("\r\n\r\n")
	bw.Flush()
}

// proxyPass rewrites the request line and Host header of req for a
// service with a ProxyPath. Header offsets other than the path's are not
// valid afterwards (cookie and auth were used before).
func proxyPass(req *request, s *Service) {
	lineEnd := bytes.Index(req.head, []byte("\r\n"))
	if lineEnd < 0 {
		return
	}
	path := string(req.path())
	newPath, ok := proxyPassPath(path, s.ProxyPath)
	host := proxyPassHost(s, string(req.host))
	if !ok && host == "" {
		return
	}
	var nh []byte
	nh = append(nh, req.method...)
	nh = append(nh, ' ')
	pathStart := len(nh)
	if ok {
		nh = append(nh, newPath...)
	} else {
		nh = append(nh, req.head[req.pathStart:req.pathEnd]...)
	}
	pathEnd := len(nh)
	nh = append(nh, req.head[req.pathEnd:lineEnd+2]...) // " HTTP/1.x\r\n"
	rest := req.head[lineEnd+2:]
	hostDone := false
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			break
		}
		line := rest[:i+2]
		rest = rest[i+2:]
		if host != "" && len(line) > 5 && line[4] == ':' && nameIs(line[:4], "host") {
			if !hostDone {
				nh = append(nh, "Host: "...)
				nh = append(nh, host...)
				nh = append(nh, '\r', '\n')
				hostDone = true
			}
			continue
		}
		nh = append(nh, line...)
	}
	if host != "" && !hostDone {
		nh = append(nh, "Host: "...)
		nh = append(nh, host...)
		nh = append(nh, '\r', '\n')
	}
	req.head = nh
	req.method = nh[:len(req.method)]
	req.pathStart, req.pathEnd = pathStart, pathEnd
	req.cookieStart, req.cookieEnd, req.authStart, req.authEnd = 0, 0, 0, 0
}
