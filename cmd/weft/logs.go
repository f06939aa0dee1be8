package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/sched/api"
)

func init() { registerCommand(taskCommand()) }

func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing what the task writes, until it ends", EnvVars: envName("follow")},
		&cli.BoolFlag{Name: "stderr", Usage: "print stderr instead of stdout", EnvVars: envName("stderr")},
		&cli.Int64Flag{Name: "offset", Usage: "start at this byte (negative: this many bytes before the end)", EnvVars: envName("offset")},
	}
}

// taskCommand is `weft task`: one task, wherever it runs.
func taskCommand() *cli.Command {
	return &cli.Command{
		Name:  "task",
		Usage: "one task, wherever it runs",
		Subcommands: []*cli.Command{
			{
				Name:      "logs",
				Usage:     "print a task's stdout (or stderr), read from its agent through the master",
				ArgsUsage: "TASK",
				Flags:     logFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 || c.Args().First() == "" {
						return errors.New("weft task logs: name one task (see 'weft app tasks APP' or 'weft job history JOB')")
					}
					return printTaskLogs(c, c.Args().First())
				},
			},
		},
	}
}

// jobLogs is `weft job logs JOB [RUN]`: the logs of a run (its number as
// `weft job history` shows it, its run id, or its task id), by default the
// latest run that started a task.
func jobLogs(c *cli.Context) error {
	name, err := jobArgName(c)
	if err != nil {
		return err
	}
	if c.NArg() > 2 {
		return errors.New("weft job logs: JOB [RUN] (see 'weft job history JOB' for the runs)")
	}
	runs, err := apiClient(c).JobRuns(c.Context, name)
	if err != nil {
		return fmt.Errorf("runs of job %s: %w", name, err)
	}
	want := c.Args().Get(1)
	var pick *api.JobRun
	for i := range runs {
		r := &runs[i]
		if want == "" {
			if r.TaskID != "" && (pick == nil || runOrder(r) >= runOrder(pick)) {
				pick = r
			}
			continue
		}
		short := r.ID
		if i := strings.LastIndexByte(short, '#'); i >= 0 {
			short = strings.TrimLeft(short[i+1:], "0")
		}
		if want == r.ID || want == short || want == r.TaskID {
			pick = r
		}
	}
	switch {
	case pick == nil && want == "":
		return fmt.Errorf("job %s has no run that started a task yet", name)
	case pick == nil:
		return fmt.Errorf("job %s has no run %s (see 'weft job history %s')", name, want, name)
	case pick.TaskID == "":
		return fmt.Errorf("run %s of job %s started no task (%s)", want, name, pick.State)
	}
	return printTaskLogs(c, pick.TaskID)
}

// runOrder orders runs by when they started (or were scheduled).
func runOrder(r *api.JobRun) string {
	if r.StartedAt != "" {
		return r.StartedAt
	}
	return r.ScheduledAt
}

func printTaskLogs(c *cli.Context, taskID string) error {
	stream := "stdout"
	if c.Bool("stderr") {
		stream = "stderr"
	}
	rc, err := apiClient(c).TaskLogs(c.Context, taskID, stream, c.Int64("offset"), c.Bool("follow"))
	if err != nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	defer rc.Close()
	if _, err := io.Copy(c.App.Writer, rc); err != nil && c.Context.Err() == nil {
		return fmt.Errorf("logs of task %s: %w", taskID, err)
	}
	return nil
}
