// Package lb is weft's marathon-lb-compatible proxy: it runs on every node,
// builds a routing table from the master's state (apps, tasks, health,
// readiness and nodes, as sched/api.State carries them) and proxies service
// ports (TCP or HTTP), HTTP virtual hosts on :80 (and :443 with certificates,
// routed by SNI, HTTP/2 through ALPN) and X-Marathon-App-Id routing on :9091.
// The plain HTTP frontends also take HTTP/2 with prior knowledge (h2c).
//
// The routing table is computed by pure code (BuildTable, table.go) the way
// marathon-lb computes its HAProxy config from the same HAPROXY_* labels.
// The proxy applies a new table by an atomic swap: established connections
// are never cut, removed backends drain (DrainTimeout), and listeners open
// and close without touching the others. An admin server (:9090) serves the
// marathon-lb endpoints (/_haproxy_health_check, /_haproxy_getconfig,
// /_haproxy_getvhostmap, /_haproxy_getappmap), a stats page
// (/haproxy?stats, ;csv) and /metrics.
//
// # Labels
//
// Honoured, as marathon-lb reads them ({n} is the service port index):
//
//	HAPROXY_GROUP, HAPROXY_{n}_GROUP   comma lists matched against Config.Group ("*" = all)
//	HAPROXY_{n}_ENABLED                needed with StrictMode
//	HAPROXY_{n}_PORT                   overrides the service port
//	HAPROXY_{n}_VHOST                  comma list, lower-cased; implies http mode
//	HAPROXY_{n}_PATH                   space-separated path prefixes; needs a vhost
//	HAPROXY_{n}_BACKEND_WEIGHT         vhost ACL order (higher first), not traffic weight
//	HAPROXY_{n}_MODE                   tcp or http; http is forced by an HTTP/HTTPS/
//	                                   MESOS_HTTP/MESOS_HTTPS health check on the port
//	HAPROXY_{n}_BALANCE                roundrobin, leastconn or source
//	HAPROXY_{n}_STICKY                 cookie mesosphere_server_id (insert indirect nocache),
//	                                   values compatible with marathon-lb's
//	HAPROXY_{n}_REDIRECT_TO_HTTPS      301 to https on the :80 vhost frontend
//	HAPROXY_{n}_USE_HSTS               Strict-Transport-Security: max-age=15768000
//	HAPROXY_{n}_AUTH                   realm:user:encpass, basic auth; encpass is bcrypt
//	                                   ($2a/$2b/$2y), SHA-crypt ($5/$6), MD5-crypt ($1),
//	                                   DES crypt (13 chars) or, without a leading "$",
//	                                   a plain password
//	HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL  source CIDRs (space or comma separated)
//	HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX  which port's health check decides the mode
//	HAPROXY_{n}_BIND_ADDR              the address the service port listens on (an IP, or *)
//	HAPROXY_{n}_SSL_CERT               PEM file (chain and key): the service port speaks TLS
//	                                   (HTTP with HTTP/2, or TCP), and the :443 frontend
//	                                   serves the port's vhosts with it by SNI
//	HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH  prefix removed before forwarding ("/api/x" →
//	                                   "/x"), Host set to the vhost
//	HAPROXY_{n}_HTTP_BACKEND_REDIR     301 from "/" of the vhosts to this location
//
//	HAPROXY_DEPLOYMENT_GROUP (+ _STARTED_AT, _TARGET_INSTANCES, _NEW_INSTANCES)
//	                                   zdd.py's blue/green deploys: the apps of a group are
//	                                   one app "/group" (the older one's labels, both's
//	                                   tasks); old tasks drain as new ones turn healthy
//	                                   (see deploy.go)
//
// Labels that inject raw HAProxy configuration (HAPROXY_{n}_FRONTEND_HEAD,
// _BACKEND_HEAD, _BACKEND_SERVER_OPTIONS, _HTTP_FRONTEND_ACL*, _BIND_OPTIONS,
// _HTTP_BACKEND_REVPROXY_PATH, ...) are
// recognised and ignored, with one warning per app. A label with a bad
// value skips that port with a Problem naming the app, port and label; when
// two apps claim one service port the older keeps it. Problems reach the
// user through the log, /_haproxy_getconfig and Config.Report.
//
// # Backends
//
// A task is a backend of a port when it is TASK_RUNNING, alive when its app
// has health checks (no results yet means not yet), and not reported
// not-ready. Host and bridge networked tasks are reached on their node's
// overlay address (else its host address) and task.ports[n];
// container-networked tasks on ipAddresses[0] and the containerPort.
// Same-site backends are preferred; other sites are used when none is
// available. A backend that refuses a connection is ejected for EjectFor
// and the request or connection is retried on another.
//
// lb imports only sched/api of weft. It must never import sched internals
// or mesh: node facts (overlay address, site) come from api.State.Nodes.
package lb
