package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/sched/api"
)

func init() { registerCommand(jobCommand()) }

// jobCommand is `weft job`: Chronos jobs through the master's Chronos API.
func jobCommand() *cli.Command {
	return &cli.Command{
		Name:  "job",
		Usage: "repeating and dependent batch jobs (the Chronos API)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "create or replace jobs from a Chronos job definition (an object, or an array of them, parents first)",
				ArgsUsage: "FILE.json (- for stdin)",
				Action:    jobAdd,
			},
			{
				Name:  "list",
				Usage: "list jobs: schedule or parents, last success, last error, status",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the jobs as JSON", EnvVars: envName("json")},
				},
				Action: jobList,
			},
			{
				Name:      "show",
				Usage:     "print one job's definition and counters as JSON",
				ArgsUsage: "NAME",
				Action:    jobShow,
			},
			{
				Name:      "run",
				Usage:     "run a job now",
				ArgsUsage: "NAME [ARGUMENT...]",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "arguments", Usage: "arguments appended to the job's command for this run", EnvVars: envName("arguments")},
				},
				Action: jobRun,
			},
			{
				Name:      "remove",
				Aliases:   []string{"rm", "delete"},
				Usage:     "delete a job (its dependants inherit its parents or schedule, as in Chronos)",
				ArgsUsage: "NAME",
				Action:    jobRemove,
			},
			{
				Name:      "history",
				Usage:     "a job's run ledger: every run, skip and retry",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the runs as JSON", EnvVars: envName("json")},
				},
				Action: jobHistory,
			},
			{
				Name:      "logs",
				Usage:     "print a run's stdout (or stderr) through the master; the latest run by default",
				ArgsUsage: "JOB [RUN]",
				Flags:     logFlags(),
				Action:    jobLogs,
			},
		},
	}
}

func jobArgName(c *cli.Context) (string, error) {
	if c.NArg() < 1 || c.Args().First() == "" {
		return "", fmt.Errorf("weft job %s: name the job (see 'weft job list')", c.Command.Name)
	}
	return c.Args().First(), nil
}

func jobAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("weft job add: give one FILE.json (or - for stdin)")
	}
	path := c.Args().First()
	var (
		raw []byte
		err error
	)
	if path == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return fmt.Errorf("reading the job definition: %w", err)
	}
	var defs []json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &defs); err != nil {
			return fmt.Errorf("%s is not a JSON array of jobs: %w", path, err)
		}
	} else {
		defs = []json.RawMessage{raw}
	}
	cl := apiClient(c)
	for _, d := range defs {
		// Send the definition as written so Chronos's defaults apply to
		// what it leaves out; parents decide the endpoint.
		var head struct {
			Name    string   `json:"name"`
			Parents []string `json:"parents"`
		}
		if err := json.Unmarshal(d, &head); err != nil {
			return fmt.Errorf("%s is not a Chronos job (JSON object): %w", path, err)
		}
		if err := cl.PutJobJSON(c.Context, d, len(head.Parents) > 0); err != nil {
			return fmt.Errorf("adding job %q: %w", head.Name, err)
		}
		how := "scheduled"
		if len(head.Parents) > 0 {
			how = "after " + strings.Join(head.Parents, ", ")
		}
		fmt.Fprintf(c.App.Writer, "job %s saved (%s)\n", head.Name, how)
	}
	return nil
}

// ago renders a Chronos timestamp as an age, "-" when empty.
func jobAgo(ts string, now time.Time) string {
	if ts == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

func jobList(c *cli.Context) error {
	cl := apiClient(c)
	jobs, err := cl.Jobs(c.Context)
	if err != nil {
		return fmt.Errorf("listing jobs: %w", err)
	}
	if c.Bool("json") {
		return jobWriteJSON(c.App.Writer, jobs)
	}
	sum, err := cl.JobsSummary(c.Context)
	if err != nil {
		return fmt.Errorf("listing jobs: %w", err)
	}
	state := map[string]api.JobSummary{}
	for _, s := range sum {
		state[s.Name] = s
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCHEDULE / PARENTS\tLAST SUCCESS\tLAST ERROR\tSTATUS")
	for _, j := range jobs {
		when := j.Schedule
		if j.ScheduleTimeZone != "" {
			when += " (" + j.ScheduleTimeZone + ")"
		}
		if len(j.Parents) > 0 {
			when = "after " + strings.Join(j.Parents, ", ")
		}
		s := state[j.Name]
		status := s.Status
		if s.State != "" && s.State != "idle" {
			status += ", " + s.State
		}
		if j.Disabled {
			status += ", disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.Name, when, jobAgo(j.LastSuccess, now), jobAgo(j.LastError, now), status)
	}
	return tw.Flush()
}

func jobShow(c *cli.Context) error {
	name, err := jobArgName(c)
	if err != nil {
		return err
	}
	j, err := apiClient(c).Job(c.Context, name)
	if err != nil {
		return fmt.Errorf("job %s: %w", name, err)
	}
	return jobWriteJSON(c.App.Writer, j)
}

func jobRun(c *cli.Context) error {
	name, err := jobArgName(c)
	if err != nil {
		return err
	}
	args := append(c.StringSlice("arguments"), c.Args().Tail()...)
	if err := apiClient(c).RunJob(c.Context, name, args); err != nil {
		return fmt.Errorf("running job %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "job %s queued; follow it with 'weft job history %s'\n", name, name)
	return nil
}

func jobRemove(c *cli.Context) error {
	name, err := jobArgName(c)
	if err != nil {
		return err
	}
	if err := apiClient(c).DeleteJob(c.Context, name); err != nil {
		return fmt.Errorf("removing job %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "job %s removed\n", name)
	return nil
}

func jobHistory(c *cli.Context) error {
	name, err := jobArgName(c)
	if err != nil {
		return err
	}
	runs, err := apiClient(c).JobRuns(c.Context, name)
	if err != nil {
		return fmt.Errorf("history of job %s: %w", name, err)
	}
	if c.Bool("json") {
		return jobWriteJSON(c.App.Writer, runs)
	}
	short := func(ts string) string {
		if ts == "" {
			return "-"
		}
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t.Local().Format("2006-01-02 15:04:05")
		}
		return ts
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tTRIGGER\tSTATE\tATTEMPT\tSCHEDULED\tSTARTED\tFINISHED\tTASK\tMESSAGE")
	for _, r := range runs {
		id := r.ID
		if i := strings.LastIndexByte(id, '#'); i >= 0 {
			id = strings.TrimLeft(id[i+1:], "0")
		}
		attempt := fmt.Sprint(r.Attempt)
		if r.Lost > 0 {
			attempt += fmt.Sprintf(" (%d lost)", r.Lost)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, r.Trigger, r.State, attempt,
			short(r.ScheduledAt), short(r.StartedAt), short(r.FinishedAt), r.TaskID, r.Message)
	}
	return tw.Flush()
}

func jobWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
