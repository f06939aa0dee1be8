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
// Semantics where Chronos left a choice or was wrong:
//
//   - A schedule occurrence missed by more than the job's epsilon (a master
//     outage) is not run; a "skipped" run records it. Occurrences before a
//     job or its new schedule existed are neither run nor recorded.
//   - concurrent=false: a due run waits while an earlier run of the job is
//     running or waiting to retry; if it cannot start within epsilon of
//     its scheduled time it is skipped and recorded. Manual and dependency
//     runs wait without a deadline.
//   - retries: a failed attempt is retried after Config.FailureRetry, with
//     a new task id (run, attempt); only the last failure counts in
//     errorCount, lastError and errorsSinceLastSuccess. An attempt lost
//     with its agent (TASK_LOST, TASK_GONE, TASK_DROPPED, unreachable past
//     Config.UnreachableAfter) is retried at once and uses up no retry.
//   - maxCompletionTime (seconds): the task is killed and the attempt fails
//     (and is retried while retries last).
//   - A dependent job runs once after every parent has succeeded since its
//     last run; PUT /job/success/{name} counts as a success.
//   - R[n] is the number of occurrences; the stored schedule is not
//     rewritten after each run as Chronos did (an empty start is pinned to
//     the submit time). R0 disables the job.
//   - Deleting a job hands its dependants its parents, or its schedule, as
//     Chronos does; its ledger goes with it.
//
// The package imports sched (the Framework SPI and the Store) and
// sched/api only; it must never import another framework, the agent, dns,
// lb or mesh.
package chronos
