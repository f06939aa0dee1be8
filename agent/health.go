package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// outcome is what one run of a check found.
type outcome int

const (
	healthy outcome = iota
	unhealthy
	ignored // e.g. a 1xx answer with ignoreHttp1xx: neither healthy nor not
)

// checkState is one health check's state for one task, as Marathon keeps
// it (Health.scala): a task is alive when its last success is later than
// its last failure. Failures before the first success are ignored while
// the task is within its grace period.
type checkState struct {
	firstSuccess, lastSuccess, lastFailure time.Time
	failures                               int
	cause                                  string
	counted                                bool // at least one result counted
}

// apply records one outcome at now for a task running since started, and
// reports whether the published result changed: alive flipped, a failure
// was counted, or the first result came in. A run of successes after the
// first changes nothing worth posting.
func (s *checkState) apply(o outcome, cause string, now, started time.Time, grace time.Duration) bool {
	switch o {
	case healthy:
		changed := !s.counted || !s.alive() || s.failures != 0
		if s.firstSuccess.IsZero() {
			s.firstSuccess = now
		}
		s.lastSuccess = now
		s.failures = 0
		s.counted = true
		return changed
	case unhealthy:
		if s.firstSuccess.IsZero() && now.Sub(started) < grace {
			return false
		}
		s.lastFailure = now
		s.failures++
		s.cause = cause
		s.counted = true
		return true
	}
	return false
}

func (s *checkState) alive() bool {
	return !s.lastSuccess.IsZero() && (s.lastFailure.IsZero() || s.lastSuccess.After(s.lastFailure))
}

// result is the check's state as the API shows it.
func (s *checkState) result(taskID string) api.HealthCheckResult {
	r := api.HealthCheckResult{
		Alive:               s.alive(),
		ConsecutiveFailures: s.failures,
		TaskID:              taskID,
		LastFailureCause:    s.cause,
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return api.Timestamp(t)
	}
	r.FirstSuccess, r.LastSuccess, r.LastFailure = ts(s.firstSuccess), ts(s.lastSuccess), ts(s.lastFailure)
	return r
}

// baseProtocol maps the MESOS_* aliases to the protocol they check with.
func baseProtocol(p string) string {
	p = strings.ToUpper(p)
	return strings.TrimPrefix(p, "MESOS_")
}

// httpOutcome applies Marathon's rule to an HTTP status: 200-399 is
// healthy; a 1xx is ignored with ignoreHttp1xx and unhealthy otherwise;
// anything else is unhealthy.
func httpOutcome(code int, ignore1xx bool) (outcome, string) {
	switch {
	case code >= 200 && code < 400:
		return healthy, ""
	case code >= 100 && code < 200 && ignore1xx:
		return ignored, ""
	}
	return unhealthy, fmt.Sprintf("Got status code %d", code)
}

// checkPort resolves a check's port: portIndex into the task's host
// ports, else port, else the first host port.
func checkPort(portIndex, port *int, ports []int) (int, error) {
	switch {
	case portIndex != nil:
		if *portIndex < 0 || *portIndex >= len(ports) {
			return 0, fmt.Errorf("portIndex %d has no port (the task has %d)", *portIndex, len(ports))
		}
		return ports[*portIndex], nil
	case port != nil && *port > 0:
		return *port, nil
	case len(ports) > 0:
		return ports[0], nil
	}
	return 0, errors.New("the check names no port and the task has none")
}

// checks are the running health and readiness checks of one task.
type checks struct{ wg sync.WaitGroup }

func (c *checks) wait() { c.wg.Wait() }

// startChecks starts the task's health and readiness checks; they stop
// when ctx ends.
func (a *Agent) startChecks(ctx context.Context, t *taskRun, asg api.Assignment, h Handle) *checks {
	c := &checks{}
	hcs := asg.Spec.HealthChecks
	if len(hcs) > 0 {
		states := make([]*checkState, len(hcs))
		for i := range states {
			states[i] = &checkState{}
		}
		var mu sync.Mutex
		for i, hc := range hcs {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				a.runHealthCheck(ctx, t, asg, h, hc, func(o outcome, cause string) {
					mu.Lock()
					defer mu.Unlock()
					a.mu.Lock()
					started := t.startedAt
					a.mu.Unlock()
					grace := time.Duration(hc.GracePeriodSeconds) * a.cfg.CheckSecond
					if !states[i].apply(o, cause, a.cfg.Now(), started, grace) {
						return
					}
					results := make([]api.HealthCheckResult, 0, len(states))
					for _, s := range states {
						if !s.counted {
							return // post once every check has a result
						}
						results = append(results, s.result(t.id))
					}
					a.mu.Lock()
					defer a.mu.Unlock()
					if t.finished || t.killReq || ctx.Err() != nil {
						return
					}
					st := a.status(t.id, api.TaskRunning, "")
					st.HealthCheckResults = results
					a.reportLocked(t, st)
				})
			}()
		}
	}
	if len(asg.Spec.ReadinessChecks) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			a.runReadiness(ctx, t, asg)
		}()
	}
	return c
}

// scaled turns a count of check seconds into a duration (def when n <= 0).
func (a *Agent) scaled(n, def int) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * a.cfg.CheckSecond
}

// runHealthCheck runs one check every interval, after its delay.
func (a *Agent) runHealthCheck(ctx context.Context, t *taskRun, asg api.Assignment, h Handle, hc api.HealthCheck, record func(outcome, string)) {
	interval := a.scaled(hc.IntervalSeconds, 60)
	timeout := a.scaled(hc.TimeoutSeconds, 20)
	delay := time.Duration(max(hc.DelaySeconds, 0)) * a.cfg.CheckSecond
	if !sleepCtx(ctx, delay) {
		return
	}
	for {
		o, cause := a.probe1(ctx, t, asg, h, hc, timeout)
		if ctx.Err() != nil {
			return
		}
		record(o, cause)
		if !sleepCtx(ctx, interval) {
			return
		}
	}
}

// probe1 runs a health check once.
func (a *Agent) probe1(ctx context.Context, t *taskRun, asg api.Assignment, h Handle, hc api.HealthCheck, timeout time.Duration) (outcome, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	proto := baseProtocol(hc.Protocol)
	if proto == "COMMAND" {
		if hc.Command == nil || hc.Command.Value == "" {
			return unhealthy, "COMMAND check without command.value"
		}
		return a.commandCheck(ctx, t, asg, h, hc.Command.Value)
	}
	var addr string
	if c := asg.Spec.Container; c != nil && c.Type == "DOCKER" {
		// Containers: the host port in BRIDGE/HOST mode, the container's
		// own address and port on a container network, as Marathon does.
		var err error
		if addr, err = DockerCheckAddr(asg.Spec, h.IPAddresses(), a.checkHost(), hc.PortIndex, hc.Port); err != nil {
			return unhealthy, err.Error()
		}
	} else {
		port, err := checkPort(hc.PortIndex, hc.Port, asg.Spec.Ports)
		if err != nil {
			return unhealthy, err.Error()
		}
		host := a.checkHost()
		if ips := h.IPAddresses(); len(asg.Spec.Ports) == 0 && len(ips) > 0 {
			// IP-per-task without host ports: check the task's own address.
			host = ips[0].IPAddress
		}
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	switch proto {
	case "TCP":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return unhealthy, err.Error()
		}
		c.Close()
		return healthy, ""
	case "HTTP", "HTTPS", "":
		scheme := "http"
		if proto == "HTTPS" {
			scheme = "https"
		}
		code, err := httpGet(ctx, scheme+"://"+addr+pathOrRoot(hc.Path))
		if err != nil {
			return unhealthy, err.Error()
		}
		return httpOutcome(code, hc.IgnoreHTTP1xx)
	}
	return unhealthy, fmt.Sprintf("unknown health check protocol %q", hc.Protocol)
}

func pathOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

func (a *Agent) checkHost() string {
	switch a.cfg.HostIP {
	case "", "0.0.0.0", "::":
		return "127.0.0.1"
	}
	return a.cfg.HostIP
}

// checkClient does not verify certificates (as Marathon) and does not
// follow redirects: a 3xx counts as healthy.
var checkClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func httpGet(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// commandCheck runs a COMMAND check: in the task's environment via the
// handle when it can, else /bin/sh -c in the sandbox.
func (a *Agent) commandCheck(ctx context.Context, t *taskRun, asg api.Assignment, h Handle, cmdline string) (outcome, string) {
	if r, ok := h.(CommandRunner); ok {
		code, out, err := r.RunCommand(ctx, cmdline)
		if err != nil {
			return unhealthy, err.Error()
		}
		if code != 0 {
			return unhealthy, commandCause(code, out)
		}
		return healthy, ""
	}
	cmd := exec.Command("/bin/sh", "-c", cmdline)
	cmd.Dir = t.sandbox
	cmd.Env = envList(a.taskEnv(asg, t.sandbox))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return unhealthy, err.Error()
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			code := -1
			if cmd.ProcessState != nil {
				code = cmd.ProcessState.ExitCode()
			}
			return unhealthy, commandCause(code, out.String())
		}
		return healthy, ""
	case <-ctx.Done():
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		return unhealthy, "command timed out"
	}
}

func commandCause(code int, out string) string {
	out = strings.TrimSpace(out)
	if len(out) > 200 {
		out = out[len(out)-200:]
	}
	if out == "" {
		return fmt.Sprintf("command exited with status %d", code)
	}
	return fmt.Sprintf("command exited with status %d: %s", code, out)
}

// runReadiness probes the task's readiness checks until all are ready,
// then posts Ready=true once.
func (a *Agent) runReadiness(ctx context.Context, t *taskRun, asg api.Assignment) {
	rcs := asg.Spec.ReadinessChecks
	ready := make([]bool, len(rcs))
	interval := a.scaled(rcs[0].IntervalSeconds, 30)
	for {
		for i, rc := range rcs {
			if !ready[i] {
				ready[i] = a.readyOnce(ctx, asg, rc)
			}
		}
		if !slices.Contains(ready, false) {
			a.mu.Lock()
			if !t.finished && !t.killReq && ctx.Err() == nil {
				yes := true
				st := a.status(t.id, api.TaskRunning, "")
				st.Ready = &yes
				a.reportLocked(t, st)
			}
			a.mu.Unlock()
			return
		}
		if !sleepCtx(ctx, interval) {
			return
		}
	}
}

// readyOnce runs one readiness check once.
func (a *Agent) readyOnce(ctx context.Context, asg api.Assignment, rc api.ReadinessCheck) bool {
	ctx, cancel := context.WithTimeout(ctx, a.scaled(rc.TimeoutSeconds, 10))
	defer cancel()
	port := 0
	if rc.PortName != "" {
		if v, err := strconv.Atoi(asg.Spec.Env["PORT_"+strings.ToUpper(rc.PortName)]); err == nil {
			port = v
		}
	}
	if port == 0 {
		if len(asg.Spec.Ports) == 0 {
			return false
		}
		port = asg.Spec.Ports[0]
	}
	scheme := "http"
	if strings.EqualFold(rc.Protocol, "HTTPS") {
		scheme = "https"
	}
	code, err := httpGet(ctx, scheme+"://"+net.JoinHostPort(a.checkHost(), strconv.Itoa(port))+pathOrRoot(rc.Path))
	if err != nil {
		return false
	}
	codes := rc.HTTPStatusCodesForReady
	if len(codes) == 0 {
		codes = []int{200}
	}
	return slices.Contains(codes, code)
}
