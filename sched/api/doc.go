// Package api holds weft's wire types — the Marathon v2 app, task, deployment
// and queue objects, the Chronos job, weft's own node, offer and watch types —
// and the Go client every other component uses to talk to the master.
//
// It imports nothing of weft. dns, lb, agent and the CLI depend only on this
// package, never on sched internals: they run on nodes far from the master.
package api
