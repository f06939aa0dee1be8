// Package e2e holds end-to-end tests that run the real weft binary: a
// one-node `weft up` on loopback, and multi-host clusters on network
// namespaces (mesh/meshtest). They use only the binary's command line and
// its HTTP APIs, as a user would.
package e2e
