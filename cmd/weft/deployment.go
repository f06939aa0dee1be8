package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/sched/api"
)

func init() { registerCommand(deploymentCommand()) }

// deploymentCommand is `weft deployment`: Marathon deployments.
func deploymentCommand() *cli.Command {
	return &cli.Command{
		Name:  "deployment",
		Usage: "running deployments of apps (the Marathon v2 deployments API)",
		Subcommands: []*cli.Command{
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list running deployments: id, apps, current step and actions",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the deployments as JSON", EnvVars: envName("json")},
				},
				Action: deploymentList,
			},
			{
				Name:      "watch",
				Usage:     "follow a deployment until it ends: exit 0 when it succeeds, non-zero when it fails or is stopped",
				ArgsUsage: "ID",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "timeout", Usage: "give up (non-zero exit) after this long; 0 waits forever", EnvVars: envName("timeout")},
				},
				Action: deploymentWatch,
			},
		},
	}
}

func deploymentList(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	deps, err := apiClient(c).Deployments(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, deps)
	}
	t := newTable(c, "ID", "APPS", "STEP", "CURRENT ACTIONS", "VERSION")
	for _, d := range deps {
		t.row(d.ID, strings.Join(append(append([]string(nil), d.AffectedApps...), d.AffectedPods...), ","), fmt.Sprintf("%d/%d", d.CurrentStep, d.TotalSteps), actionsText(d.CurrentActions), d.Version)
	}
	return t.flush()
}

func actionsText(as []api.DeploymentAction) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, a.Action+" "+a.App+a.Pod) // one of them is set
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// deploymentWatch follows a deployment until it ends. weft's
// /v1/deployments/{id} says whether it runs, succeeded or failed (rolled
// back, superseded by a forced change, stopped), even when it ended before
// the watch began; /v2/deployments and the affected apps show the progress.
// An id that names no deployment (a CI job that got a 409 and passes
// "null" on) is an error, never a success.
func deploymentWatch(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	if c.NArg() != 1 {
		return fmt.Errorf("expected one argument, the deployment id (see 'weft deployment list')")
	}
	id := c.Args().First()
	ctx := c.Context
	if d := c.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	client := apiClient(c)
	out := c.App.Writer
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	last := ""
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var o api.DeploymentOutcome
		_, err := client.Do(ctx, http.MethodGet, "/v1/deployments/"+url.PathEscape(id), nil, &o)
		var aerr *api.Error
		switch {
		case errors.As(err, &aerr) && aerr.Status == http.StatusNotFound:
			return fmt.Errorf("no deployment %q is running or ended in the last hour (see 'weft deployment list')", id)
		case err != nil && ctx.Err() == nil:
			return err
		case err == nil && o.Status != api.DeploymentRunning:
			if tty && last != "" {
				fmt.Fprintln(out)
			}
			if o.Status == api.DeploymentSucceeded {
				fmt.Fprintf(out, "deployment %s succeeded\n", id)
				return nil
			}
			reason := o.Reason
			if reason == "" {
				reason = o.Status
			}
			return fmt.Errorf("deployment %s failed: %s", id, reason)
		case err == nil:
			if line := deploymentProgress(ctx, client, id); line != "" {
				if tty {
					fmt.Fprintf(out, "\r\033[K%s", line)
				} else if line != last {
					fmt.Fprintln(out, line)
				}
				last = line
			}
		}
		select {
		case <-ctx.Done():
			if c.Context.Err() != nil {
				return c.Context.Err()
			}
			return fmt.Errorf("deployment %s still running after %v; it goes on (see 'weft deployment list')", id, c.Duration("timeout"))
		case <-tick.C:
		}
	}
}

// deploymentProgress is the progress line of running deployment id, or ""
// when /v2/deployments no longer lists it.
func deploymentProgress(ctx context.Context, client *api.Client, id string) string {
	deps, err := client.Deployments(ctx)
	if err != nil {
		return ""
	}
	for i := range deps {
		if deps[i].ID == id {
			return progressLine(ctx, client, &deps[i])
		}
	}
	return ""
}

// progressLine describes where a deployment stands: the step, and for
// each app of the current step how many of its instances are up.
func progressLine(ctx context.Context, client *api.Client, d *api.Deployment) string {
	var parts []string
	up, want := 0, 0
	for _, a := range d.CurrentActions {
		if a.Pod != "" {
			parts = append(parts, fmt.Sprintf("%s %s", a.Action, a.Pod))
			continue
		}
		var info struct {
			App api.AppInfo `json:"app"`
		}
		if _, err := client.Do(ctx, http.MethodGet, "/v2/apps"+a.App, nil, &info); err != nil {
			parts = append(parts, fmt.Sprintf("%s %s", a.Action, a.App))
			continue
		}
		n := 0
		for _, t := range info.App.Tasks {
			if t.State == api.TaskRunning && t.Version <= info.App.Version && (info.App.VersionInfo == nil || t.Version >= info.App.VersionInfo.LastConfigChangeAt) {
				n++
			}
		}
		up += n
		want += info.App.Instances
		parts = append(parts, fmt.Sprintf("%s %s %d/%d running", a.Action, a.App, n, info.App.Instances))
	}
	bar := ""
	if want > 0 {
		const width = 20
		filled := up * width / want
		if filled > width {
			filled = width
		}
		bar = "[" + strings.Repeat("#", filled) + strings.Repeat(" ", width-filled) + "] "
	}
	return fmt.Sprintf("%sstep %d/%d: %s", bar, d.CurrentStep, d.TotalSteps, strings.Join(parts, "; "))
}
