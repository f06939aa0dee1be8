// Command weft joins laptops, cloud VMs and edge hosts into one cluster and
// runs services and batch jobs on it. See DESIGN.md for the command line
// contract; this package wires the roles together and holds no logic of its
// own.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/sched/api"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

// commands is filled by each command file's init, so the files that add
// commands (app.go, job.go, mesh.go, ...) do not depend on each other.
var commands []*cli.Command

func registerCommand(c *cli.Command) { commands = append(commands, c) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		os.Exit(1)
	}
}

// newApp builds the CLI; tests run it in-process.
func newApp() *cli.App {
	cmds := append([]*cli.Command{}, commands...)
	cmds = append(cmds, &cli.Command{
		Name:  "version",
		Usage: "print weft's version",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "weft %s\n", Version)
			return nil
		},
	})
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return &cli.App{
		Name:                 "weft",
		Usage:                "one cluster of laptops, cloud VMs and edge hosts: overlay, scheduler, DNS and load balancer",
		Version:              Version,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "api", Value: cli.NewStringSlice("http://127.0.0.1:8080"), Usage: "a master API client commands talk to; repeat it (or give WEFT_API=a,b,c) to name several, tried in turn when one does not answer; http://master.pcm:8080 through weft's DNS names every master", EnvVars: []string{"WEFT_API"}},
			&cli.StringFlag{Name: "api-token", Usage: "the ACL token's secret client commands send (Authorization: Bearer)", EnvVars: []string{"WEFT_API_TOKEN"}},
			&cli.StringFlag{Name: "config", Usage: "a YAML file of flag values (flag name: value)", EnvVars: []string{"WEFT_CONFIG"}},
		},
		Before:   loadConfigFile,
		Commands: cmds,
	}
}

// apiClient returns a client for the masters named by --api.
func apiClient(c *cli.Context) *api.Client {
	cl := api.NewClientOf(c.StringSlice("api")...)
	cl.Token = c.String("api-token")
	return cl
}

// loadConfigFile applies --config: every key names a flag; values set on
// the command line or in the environment win over the file.
func loadConfigFile(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading --config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("--config %s is not YAML: %w", path, err)
	}
	configValues = m
	return nil
}

// configValues holds --config's values; applyConfig sets them on a command.
var configValues map[string]any

// applyConfig sets flags of the running (sub)command from --config, unless
// the command line or the environment set them. It fails on a key that names
// no flag, so a typo does not pass silently.
func applyConfig(c *cli.Context) error {
	if len(configValues) == 0 {
		return nil
	}
	known := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			known[n] = f
		}
	}
	for k, v := range configValues {
		f, ok := known[k]
		if !ok {
			if k == "api" || k == "config" || k == "api-token" {
				continue
			}
			return fmt.Errorf("--config: %q is not a flag of 'weft %s'", k, c.Command.Name)
		}
		if c.IsSet(k) || envSet(f) {
			continue
		}
		var vals []string
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				vals = append(vals, fmt.Sprint(e))
			}
		default:
			vals = []string{fmt.Sprint(x)}
		}
		for _, s := range vals {
			if err := c.Set(k, s); err != nil {
				return fmt.Errorf("--config: %s: %w", k, err)
			}
		}
	}
	return nil
}

func envSet(f cli.Flag) bool {
	type envFlag interface{ GetEnvVars() []string }
	if ef, ok := f.(envFlag); ok {
		for _, e := range ef.GetEnvVars() {
			if _, ok := os.LookupEnv(e); ok {
				return true
			}
		}
	}
	return false
}

// envName is the WEFT_ variable for a flag name.
func envName(flag string) []string {
	return []string{"WEFT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// defaultDataDir follows DESIGN.md: /var/lib/weft for root, else
// $XDG_DATA_HOME/weft.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/weft"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "weft")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "weft")
}
