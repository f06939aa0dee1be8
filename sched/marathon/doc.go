// Package marathon is weft's long-running-app framework: it speaks the
// Marathon v2 REST API (/v2/apps, /v2/tasks, /v2/deployments, /v2/groups,
// /v2/queue), keeps app definitions and their versions in the master's
// store, turns offers into task launches (ports, environment, constraints,
// roles), relaunches failed tasks with Marathon's backoff, replaces
// unreachable and unhealthy tasks, and drives deployments as plans of steps.
//
// The desired-state parts (id rules, validation, environment, port
// allocation, backoff, kill selection, plans, constraints) are pure functions
// with table tests; Framework applies them through sched.Store.
//
// It imports only sched (the Framework SPI and the Store) and sched/api. It
// must never import agent, dns, lb, mesh, sched/chronos or cmd/weft.
package marathon
