// Package sched is weft's master: the Raft-backed store, the allocator that
// offers agents' free resources to frameworks in Dominant Resource Fairness
// order, the agent-facing API (blocking assignment queries, status
// updates), the watch API that dns, lb and the CLI build on, and the
// Marathon master endpoints.
//
// Routes of Master.Handler (frameworks add their own, e.g. /v2/apps):
//
//	GET    /v1/agents/{id}/assignments?index=N&wait=30s  an agent's tasks (blocking query)
//	POST   /v1/agents/{id}/status                        []api.TaskStatus → {"unknown":[ids]}
//	GET    /v1/state?index=N&wait=30s                    api.State (blocking query, wait ≤ 5 min)
//	GET    /v1/nodes                                     {"nodes":[...]} with Used
//	GET    /v2/events                                    Marathon's SSE stream (event_type filters)
//	GET    /v2/info, GET|DELETE /v2/leader, GET /v2/plugins, GET /ping, GET /metrics
//
// A follower answers /ping, /metrics, GET /v2/leader, /v1/state and
// /v1/nodes itself, redirects /v2/events to the leader and proxies
// everything else there (X-Marathon-Leader, X-Marathon-Via).
//
// Frameworks (sched/marathon, sched/chronos) import this package through
// the SPI in framework.go; sched must never import a framework, nor agent,
// dns, lb or mesh. It sees membership only through the Members interface,
// which cmd/weft adapts from the mesh.
package sched
