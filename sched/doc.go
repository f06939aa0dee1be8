// Package sched is weft's master: the Raft-backed store, the allocator that
// offers agents' free resources to frameworks in Dominant Resource Fairness
// order, the agent-facing API (blocking assignment queries, status
// updates), the watch API that dns, lb and the CLI build on, and the
// Marathon master endpoints.
//
// Routes of Master.Handler (frameworks add their own, e.g. /v2/apps). JSON
// answers to GET of 1 KB or more are gzipped for clients that accept it.
//
//	GET    /v1/agents/{id}/assignments?index=N&wait=30s  an agent's tasks (blocking query)
//	POST   /v1/agents/{id}/status                        []api.TaskStatus → {"unknown":[ids]}
//	PUT    /v1/agents/{id}/stopping                      the agent stops on purpose: its poll's end is not its death (204)
//	POST   /v1/agents/{id}/lost                          a follower saw the agent hang up its poll, silent to pings → {"lost":bool} (leader pings too)
//	GET    /v1/state?index=N&wait=30s                    api.State (blocking query, wait ≤ 5 min)
//	GET    /v1/state/changes?index=N&nodes=H&wait=30s    api.Changes: a snapshot once, then what changed since N
//	GET    /v1/nodes                                     {"nodes":[...]} with Used
//	GET    /v1/tasks/{id}/logs?stream=&offset=&follow=   a task's stdout|stderr from its agent (a read of its app or job)
//	GET    /v1/tasks/{id}/stats                          a running task's cpu and memory usage and limits from its agent
//	GET    /v2/events                                    Marathon's SSE stream (event_type filters)
//	GET    /v2/info, GET|DELETE /v2/leader, GET /v2/plugins, GET /ping, GET /metrics
//	GET    /v1/operator/raft/configuration               api.RaftConfiguration
//	DELETE /v1/operator/raft/peer?id=ID                  remove a raft server
//
// A follower answers /ping, /metrics, GET /v2/leader, /v1/state,
// /v1/state/changes and /v1/nodes itself, redirects /v2/events to the
// leader and proxies everything else there (X-Marathon-Leader, X-Marathon-Via), over mutual
// TLS when the cluster has a token (MasterConfig.NodeTLS), vouching with
// X-Weft-Node for a caller that is a node (NodeIdentity).
//
// With a token, the agent endpoints and POST /v1/lb/problems take only
// callers with a node certificate of the cluster CA (derived from the
// token, internal/nodetls); raft runs over mutual TLS with the same CA, and
// a master becomes a voter only after proving it holds one.
//
// Frameworks (sched/marathon, sched/chronos) import this package through
// the SPI in framework.go; sched must never import a framework, nor agent,
// dns, lb or mesh. It sees membership only through the Members interface,
// which cmd/weft adapts from the mesh.
package sched
