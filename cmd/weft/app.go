package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weftnet/weft/sched/api"
)

func init() { registerCommand(appCommand()) }

// appCommand is `weft app`: Marathon apps through the master's /v2 API.
func appCommand() *cli.Command {
	force := &cli.BoolFlag{Name: "force", Usage: "override a deployment that holds the app (Marathon's ?force=true)", EnvVars: envName("force")}
	return &cli.Command{
		Name:  "app",
		Usage: "long-running services (the Marathon v2 apps API)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "create or update apps from a Marathon app definition (an object, or an array of them)",
				ArgsUsage: "FILE.json (- for stdin)",
				Flags:     []cli.Flag{force},
				Action:    appAdd,
			},
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list apps as the Marathon UI does: ID, memory, CPUs, tasks/instances, health, status",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the apps as JSON", EnvVars: envName("json")},
				},
				Action: appList,
			},
			{
				Name:      "show",
				Usage:     "print one app with its tasks, counts, deployments and last failure as JSON",
				ArgsUsage: "ID",
				Action:    appShow,
			},
			{
				Name:      "scale",
				Usage:     "set an app's number of instances",
				ArgsUsage: "ID N",
				Flags:     []cli.Flag{force},
				Action:    appScale,
			},
			{
				Name:      "restart",
				Usage:     "replace every task of an app, following its upgradeStrategy",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{force},
				Action:    appRestart,
			},
			{
				Name:      "remove",
				Aliases:   []string{"rm", "delete", "destroy"},
				Usage:     "delete an app and kill its tasks",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{force},
				Action:    appRemove,
			},
			{
				Name:      "tasks",
				Usage:     "list an app's tasks: id, host, ports, state, health, started (--stats: cpu and memory use and limits)",
				ArgsUsage: "ID",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the tasks as JSON", EnvVars: envName("json")},
					&cli.BoolFlag{Name: "stats", Usage: "show each running task's cpu seconds, memory (RSS) and limits, read from its agent (GET /v1/tasks/{id}/stats)", EnvVars: envName("stats")},
				},
				Action: appTasks,
			},
		},
	}
}

func appPath(id string) string { return "/v2/apps/" + strings.Trim(id, "/") }

func withForce(c *cli.Context, path string) string {
	if c.Bool("force") {
		if strings.Contains(path, "?") {
			return path + "&force=true"
		}
		return path + "?force=true"
	}
	return path
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("expected one argument, %s (see 'weft app %s --help')", what, c.Command.Name)
	}
	return c.Args().First(), nil
}

func printDeployment(c *cli.Context, what string, res api.DeploymentResult) {
	fmt.Fprintf(c.App.Writer, "%s: deployment %s (version %s); follow it with 'weft deployment watch %s'\n",
		what, res.DeploymentID, res.Version, res.DeploymentID)
}

func appAdd(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	if c.NArg() != 1 {
		return fmt.Errorf("expected one argument, the app definition file (or - for stdin)")
	}
	name := c.Args().First()
	var raw []byte
	var err error
	if name == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("reading the app definition: %w", err)
	}
	trimmed := bytes.TrimSpace(raw)
	client := apiClient(c)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var res api.DeploymentResult
		if _, err := client.Do(c.Context, http.MethodPut, withForce(c, "/v2/apps"), bytes.NewReader(trimmed), &res); err != nil {
			return err
		}
		printDeployment(c, "apps updated", res)
		return nil
	}
	var probe struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return fmt.Errorf("%s is not a JSON app definition: %w", name, err)
	}
	if probe.ID == "" {
		return fmt.Errorf("%s has no \"id\": every Marathon app definition needs one, e.g. \"id\": \"/group/app\"", name)
	}
	var res api.DeploymentResult
	h, err := client.Do(c.Context, http.MethodPut, withForce(c, appPath(probe.ID)), bytes.NewReader(trimmed), &res)
	if err != nil {
		return err
	}
	what := "updated " + probe.ID
	if h.Get("Location") != "" {
		what = "created " + probe.ID
	}
	printDeployment(c, what, res)
	return nil
}

// appStatus is the Marathon UI's status word for an app.
func appStatus(a *api.AppInfo, q *api.QueueItem, now time.Time) string {
	if q != nil {
		if q.Delay.TimeLeftSeconds > 0 {
			return "Delayed"
		}
		since, _ := time.Parse("2006-01-02T15:04:05.000Z", q.Since)
		declined := q.ProcessedOffersSummary != nil && q.ProcessedOffersSummary.UnusedOffersCount > 0
		if declined || (!since.IsZero() && now.Sub(since) > 10*time.Second) {
			return "Waiting"
		}
	}
	if len(a.Deployments) > 0 {
		return "Deploying"
	}
	if a.Instances == 0 && a.TasksRunning == 0 {
		return "Suspended"
	}
	return "Running"
}

func appHealth(a *api.AppInfo) string {
	if len(a.HealthChecks) == 0 {
		return "-"
	}
	unknown := a.TasksRunning - a.TasksHealthy - a.TasksUnhealthy
	s := fmt.Sprintf("%d healthy", a.TasksHealthy)
	if a.TasksUnhealthy > 0 {
		s += fmt.Sprintf(", %d unhealthy", a.TasksUnhealthy)
	}
	if unknown > 0 {
		s += fmt.Sprintf(", %d unknown", unknown)
	}
	return s
}

func fmtMem(mb float64) string {
	if mb >= 1024 {
		return strconv.FormatFloat(mb/1024, 'f', -1, 64) + " GiB"
	}
	return strconv.FormatFloat(mb, 'f', -1, 64) + " MiB"
}

func appList(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	client := apiClient(c)
	apps, err := client.Apps(c.Context, "apps.counts", "apps.deployments")
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c, apps)
	}
	var queue struct {
		Queue []api.QueueItem `json:"queue"`
	}
	if _, err := client.Do(c.Context, http.MethodGet, "/v2/queue", nil, &queue); err != nil {
		return err
	}
	byApp := map[string]*api.QueueItem{}
	for i := range queue.Queue {
		byApp[queue.Queue[i].App.ID] = &queue.Queue[i]
	}
	t := newTable(c, "ID", "MEMORY", "CPUS", "TASKS/INSTANCES", "HEALTH", "STATUS")
	now := time.Now()
	for i := range apps {
		a := &apps[i]
		t.row(a.ID, fmtMem(a.Mem), strconv.FormatFloat(a.Cpus, 'f', -1, 64),
			fmt.Sprintf("%d/%d", a.TasksRunning, a.Instances), appHealth(a), appStatus(a, byApp[a.ID], now))
	}
	return t.flush()
}

func appShow(c *cli.Context) error {
	id, err := oneArg(c, "the app id")
	if err != nil {
		return err
	}
	var out struct {
		App json.RawMessage `json:"app"`
	}
	if _, err := apiClient(c).Do(c.Context, http.MethodGet, appPath(id), nil, &out); err != nil {
		return err
	}
	var v any
	_ = json.Unmarshal(out.App, &v)
	return printJSON(c, v)
}

func appScale(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	if c.NArg() != 2 {
		return fmt.Errorf("expected two arguments, the app id and the number of instances")
	}
	n, err := strconv.Atoi(c.Args().Get(1))
	if err != nil || n < 0 {
		return fmt.Errorf("the number of instances must be a whole number ≥ 0, not %q", c.Args().Get(1))
	}
	id := c.Args().First()
	var res api.DeploymentResult
	if _, err := apiClient(c).Do(c.Context, http.MethodPut, withForce(c, appPath(id)), map[string]int{"instances": n}, &res); err != nil {
		return err
	}
	printDeployment(c, fmt.Sprintf("scaling %s to %d", id, n), res)
	return nil
}

func appRestart(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	id, err := oneArg(c, "the app id")
	if err != nil {
		return err
	}
	var res api.DeploymentResult
	if _, err := apiClient(c).Do(c.Context, http.MethodPost, withForce(c, appPath(id)+"/restart"), nil, &res); err != nil {
		return err
	}
	printDeployment(c, "restarting "+id, res)
	return nil
}

func appRemove(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	id, err := oneArg(c, "the app id")
	if err != nil {
		return err
	}
	res, err := apiClient(c).DeleteApp(c.Context, id, c.Bool("force"))
	if err != nil {
		return err
	}
	printDeployment(c, "removing "+id, *res)
	return nil
}

func appTasks(c *cli.Context) error {
	if err := applyConfig(c); err != nil {
		return err
	}
	id, err := oneArg(c, "the app id")
	if err != nil {
		return err
	}
	var out struct {
		Tasks []api.Task `json:"tasks"`
	}
	if _, err := apiClient(c).Do(c.Context, http.MethodGet, appPath(id)+"/tasks", nil, &out); err != nil {
		return err
	}
	if c.Bool("stats") {
		return appTaskStats(c, out.Tasks)
	}
	if c.Bool("json") {
		return printJSON(c, out.Tasks)
	}
	t := newTable(c, "ID", "HOST", "PORTS", "STATE", "HEALTH", "STARTED", "VERSION")
	for _, task := range out.Tasks {
		ports := make([]string, len(task.Ports))
		for i, p := range task.Ports {
			ports[i] = strconv.Itoa(p)
		}
		health := "-"
		if h, ok := task.Healthy(); ok {
			health = "unhealthy"
			if h {
				health = "healthy"
			}
		}
		started := task.StartedAt
		if started == "" {
			started = "-"
		}
		t.row(task.ID, task.Host, strings.Join(ports, ","), strings.TrimPrefix(task.State, "TASK_"), health, started, task.Version)
	}
	return t.flush()
}

// appTaskStats prints the usage of each running task, asked of the master
// one task at a time (GET /v1/tasks/{id}/stats). A task whose usage cannot
// be read shows why instead.
func appTaskStats(c *cli.Context, tasks []api.Task) error {
	type row struct {
		api.Task
		Stats *api.ResourceStatistics `json:"statistics,omitempty"`
		Error string                  `json:"error,omitempty"`
	}
	rows := make([]row, 0, len(tasks))
	for _, task := range tasks {
		r := row{Task: task}
		if st, err := apiClient(c).TaskStats(c.Context, task.ID); err != nil {
			r.Error = err.Error()
			if e, ok := err.(*api.Error); ok && e.Body.Message != "" {
				r.Error = e.Body.Message
			}
		} else {
			r.Stats = &st.Statistics
		}
		rows = append(rows, r)
	}
	if c.Bool("json") {
		return printJSON(c, rows)
	}
	mb := func(b uint64) string {
		if b == 0 {
			return "-"
		}
		return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64)
	}
	t := newTable(c, "ID", "HOST", "STATE", "CPU_SECS", "CPUS_LIMIT", "RSS_MB", "MEM_MB", "MEM_LIMIT_MB")
	for _, r := range rows {
		state := strings.TrimPrefix(r.State, "TASK_")
		if r.Stats == nil {
			t.row(r.ID, r.Host, state, "-", "-", "-", "-", "- ("+r.Error+")")
			continue
		}
		s := r.Stats
		lim := "-"
		if s.CpusLimit > 0 {
			lim = strconv.FormatFloat(s.CpusLimit, 'f', 2, 64)
		}
		t.row(r.ID, r.Host, state, strconv.FormatFloat(s.CpusUserTimeSecs+s.CpusSystemTimeSecs, 'f', 2, 64), lim,
			mb(s.MemRSSBytes), mb(s.MemTotalBytes), mb(s.MemLimitBytes))
	}
	return t.flush()
}
