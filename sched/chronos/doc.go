// Package chronos is weft's batch-job framework: Chronos's repeating
// (ISO 8601 R/start/period or 5-field cron) and dependent jobs, retries,
// epsilon and concurrency rules, and the Chronos REST API at /scheduler/*
// and /v1/scheduler/*.
//
// Every fact that decides whether a run happens lives in the master's Raft
// store: jobs (sched.TableJobs, with their counters), the run ledger
// (sched.TableJobRuns) and each job's scheduling state — the last schedule
// occurrence handled and which parents have succeeded since the job last
// ran (sched.TableMeta, "chronos/state/<job>"). A run is written as an
// intent before its task is launched, task ids are derived from the run,
// and a new leader reconciles runs against tasks, so a master restart
// neither loses nor duplicates a run (mesos/chronos#411, #811).
//
// The package imports sched (the Framework SPI and the Store) and
// sched/api only; it must never import another framework, the agent, dns,
// lb or mesh.
package chronos
