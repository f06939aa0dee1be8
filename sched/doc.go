// Package sched is weft's master: the Raft-backed store, the allocator that
// offers agents' free resources to frameworks in Dominant Resource Fairness
// order, the agent-facing API (blocking assignment queries, status
// updates), the watch API that dns, lb and the CLI build on, and the
// Marathon master endpoints (/v2/events, /v2/info, /v2/leader, /ping,
// /metrics).
//
// Frameworks (sched/marathon, sched/chronos) import this package through
// the SPI in framework.go; sched must never import a framework, nor agent,
// dns or lb. It talks to membership only through the Members interface,
// which cmd/weft adapts from the mesh.
package sched
