// Package ui is weft's web UI, served by the master at /ui/: server-rendered
// pages for apps, jobs, nodes by site and the mesh, with a little plain
// JavaScript that follows /v2/events for live updates.
//
// Every page is built by calling the master's own HTTP API in-process with
// the logged-in user's token as "Authorization: Bearer", so what a page shows
// is exactly what that token may read, and every action goes through the
// same checks as the API. ui imports only sched/api of weft (never sched
// internals, never mesh); facts that live on the nodes (task logs, mesh
// status) come from each node's agent API through a client the caller
// provides.
package ui
