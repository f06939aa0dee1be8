// Package agent runs the tasks the master assigns to this node: it learns
// its assignments by a blocking query it starts itself (so it works from
// behind NAT), reconciles what runs here against them, starts tasks
// through an Executor (plain processes here, Docker containers in
// docker*.go), runs their health and readiness checks, reports status with
// retries, keeps tasks running while the master is unreachable, and serves
// the node-local agent API (tasks, sandbox logs, health).
//
// It imports sched/api only, never sched internals, nor dns, lb or a
// framework: agents run on nodes far from the master.
package agent
