// Package lb is weft's marathon-lb-compatible proxy: it runs on every node,
// builds a routing table from the master's state (apps, tasks, health,
// readiness and nodes, as sched/api.State carries them) and proxies service
// ports (TCP or HTTP), HTTP virtual hosts on :80 (and :443 with certificates,
// routed by SNI) and X-Marathon-App-Id routing on :9091.
//
// The routing table is computed by pure code (BuildTable, table.go) the way
// marathon-lb computes its HAProxy config from the same HAPROXY_* labels.
// The proxy applies a new table by an atomic swap: established connections
// are never cut, removed backends drain, and listeners open and close
// without touching the others. An admin server (:9090) serves the
// marathon-lb endpoints (/_haproxy_health_check, /_haproxy_getconfig,
// /_haproxy_getvhostmap, /_haproxy_getappmap), a stats page and /metrics.
//
// lb imports only sched/api of weft. It must never import sched internals
// or mesh: node facts (overlay address, site) come from api.State.Nodes.
package lb
