// Package dns is weft's Mesos-DNS-compatible DNS server: it turns the
// master's state (sched/api.State) into the records Mesos-DNS would serve
// for Marathon and Chronos tasks, plus weft's own node records, and serves
// them over UDP and TCP on every node, forwarding other names upstream.
//
// It imports sched/api and miekg/dns; it never imports sched internals or
// mesh: node facts (overlay address, host address, site, role) come from
// api.State.Nodes.
//
// # Records
//
// BuildRecords is pure: the same state and RecordConfig give the same
// Table. It follows Mesos-DNS (records/generator.go, records/chains.go,
// records/labels) rule for rule: task labels are Marathon's task name (the
// app path reversed and joined with '.') sanitised as one RFC 1123 label
// ("/ssk2/whereisbot" → "whereisbot-ssk2", 63 characters at most; RFC 952
// with RecordConfig.EnforceRFC952); A records for t.f.d, the canonical
// t-<hash>-<agent>.f.d and their .slave. variants; resource ports as
// _t._tcp/_t._udp SRV records under f.slave.d; DiscoveryInfo ports as
// _t._<proto>.f.d and named _<port>._t._<proto>.f.d; the legacy copy under
// the raw DiscoveryInfo name (whereisbot.ssk2.marathon.d); leader.d,
// master.d, masterN.d, _leader._tcp/_udp.d, slave.d, _slave._tcp.d, f.d and
// _framework._tcp.f.d; SOA and NS at the apex with SOAMname's address.
//
// Deliberate differences from Mesos-DNS:
//
//   - Address: a task's own address is used only when it is on the overlay
//     (inside a node's overlay block) or on a container network that is
//     not a Docker bridge network (172.16.0.0/12); otherwise the agent's
//     overlay address, otherwise its host address. Mesos-DNS's netinfo
//     source answered 172.17.x.x bridge addresses (mesos-dns#332, #369).
//   - Health: only TASK_RUNNING tasks are answered (as Mesos-DNS), and under
//     the shared names (t.f.d, SRV) only healthy ones; a task of an app
//     with health checks but no results yet counts as not healthy; when no
//     task of an app is healthy, all its running tasks are answered. The
//     per-task canonical names stay, so every SRV target resolves.
//   - Order: answers put records of the querying node's site first (the
//     client's address is looked up among node and overlay-block
//     addresses; unknown clients count as Config.Site), each group
//     shuffled. Mesos-DNS shuffles everything.
//   - Negative answers: SRV queries for unknown names get NXDOMAIN with the
//     SOA like every other type (Mesos-DNS answered NOERROR without SOA);
//     empty non-terminals (marathon.slave.pcm.) get NODATA, not NXDOMAIN.
//   - Truncation: the client's EDNS0 buffer size is honoured (OPT echoed,
//     we advertise 1232), additional records are dropped first, then
//     answers, and TC is always set when answers are cut (Mesos-DNS cut at
//     512 bytes even with EDNS0 and could be configured not to set TC).
//   - PTR records for overlay addresses: nodes (→ <node>.node.d) and tasks
//     with their own overlay address (→ canonical name). Mesos-DNS has none.
//   - weft's own names: <node>.node.d → the node's overlay address (else its
//     host address); node names are sanitised as one label.
//   - Chronos tasks answer as <job>.chronos.d and, as Mesos-DNS named them
//     from Chronos's task name "ChronosTask:<job>", chronostask<job>.chronos.d.
//   - A task label too long to fit "-<hash>-<agent>" or a leading "_" in 63
//     characters is shortened inside the canonical and SRV labels
//     (Mesos-DNS generated invalid names there); records whose names are
//     still invalid are dropped.
//   - Marathon DiscoveryInfo ports without a protocol count as tcp
//     (Marathon's default); "udp,tcp" gives both.
//   - masterN follows the masters sorted by node name, so an index does not
//     move when the leader changes. A task whose agent is not (yet) in the
//     node list is answered with task.host when that is an IP address
//     (Mesos-DNS skips it).
//   - The frameworks run inside the leading master: marathon.d and
//     chronos.d are the leader's address, _framework._tcp.f.d its API port.
//   - ANY queries answer every record of the name; AXFR/IXFR over DNS are
//     REFUSED (GET /v1/axfr has the table).
//   - The TTL defaults to 5 s (Mesos-DNS: 60 s), since answers change by push.
//   - Masters and agents come from the node list (roles master, agent,
//     master+agent); failed and departed nodes get no master/slave records.
//     _slave._tcp.d points at each agent API's port (5051 when unknown).
//     SOAMname resolves to the addresses this server listens on.
//   - A Marathon task whose app is gone from the state is treated as a task
//     without DiscoveryInfo (resource ports under both f.d and f.slave.d).
//   - A state with index 0 after a non-empty one (a master answering with
//     an empty body while shutting down) is treated as a failed fetch.
//   - /v1/config has exactly Mesos-DNS's keys (records.Config), with
//     weft's effective settings and, for settings weft does not use, what
//     --dns-config gave or Mesos-DNS's default; the Mesos credentials'
//     secret is always empty (Mesos-DNS shows it).
//
// # Serving
//
// Answers are precompiled per (name, type) in wire format; the UDP path
// parses the question itself and falls back to miekg/dns only for unusual
// messages. Each UDP socket is read by one thread blocked in recvmmsg on a
// blocking socket (Config.UDPWorkers), outside Go's poller, and answered
// with one sendmmsg per batch. A task change recompiles only the names of
// the task groups that changed (incremental.go); nodes, the leader or the
// record config changing rebuild the table. Before the first successful sync, in-zone queries get SERVFAIL
// (resolvers do not cache it and try another server) unless
// Config.ServeBeforeSync, which serves an empty zone (NXDOMAIN). While the
// master is unreachable the last good table is served. Names outside the
// zone are forwarded to every upstream at once, first usable answer wins,
// at most 2 s each, never to this server's own addresses; with forwarding
// off they get REFUSED.
//
// # Mesos-DNS config.json
//
// `weft up|master|agent --dns-config FILE` reads a Mesos-DNS config.json
// (ApplyMesosDNSConfig); flags given on the command line win over it. It
// honours: domain, ttl, resolvers (Upstreams), externalon (Forward),
// timeout (ForwardTimeout, capped at 2 s), refreshSeconds (ResyncEvery,
// capped at 30 s: weft is pushed, not polled), listener+port (Listen),
// httpon+httpListener+httpport (HTTPListen; off unless one of them is in
// the file, where Mesos-DNS defaults to on at 0.0.0.0:8123, and a wildcard
// address serves on the overlay or loopback, as --dns-http-addr), SOAMname,
// SOARname (an '@' counts as a '.'), SOARefresh, SOARetry, SOAExpire,
// srvRecordDefaultWeight, enforceRFC952, and IPSources ("host" first: every
// task answers with its agent's address; otherwise weft's address rule
// above). Kept and shown in /v1/config without being honoured, each
// logged as a warning: zk, masters, zkDetectionTimeout,
// stateTimeoutSeconds, mesosAuthentication, mesosCredentials (never the
// secret), the TLS fields (weft reads state from its own master API);
// SetTruncateBit (always on); SOAMinttl (Mesos-DNS emits the TTL there, so
// does weft); EnumerationOn (always on); zoneResolvers (not supported);
// recurseon (the RA bit follows externalon). A key Mesos-DNS does not have
// is warned about and ignored. What Mesos-DNS refuses (a value of the
// wrong type, an unknown IP source, dnson and httpon both false) and what
// weft cannot serve (dnson false, an invalid domain, port or address) stop
// the node with an error naming the key.
package dns
