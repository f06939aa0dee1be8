package main

import (
	"context"
	"net/http"
	"time"

	"github.com/weftnet/weft/lb"
)

// setupLB builds the node's marathon-lb-compatible proxy.
func (n *node) setupLB() error {
	cfg := lb.DefaultConfig()
	cfg.Group = n.c.StringSlice("lb-group")
	cfg.HTTPAddr = n.c.String("lb-http-addr")
	cfg.HTTPSAddr = n.c.String("lb-https-addr")
	cfg.Certs = n.c.StringSlice("lb-certs")
	// Without --lb-certs the HTTPS frontend opens once an app brings a
	// certificate (HAPROXY_{n}_SSL_CERT); failing to listen then is a
	// reported problem, not a start failure.
	// The admin and app-id frontends bind like the master API (overlay or
	// loopback); vhosts and service ports stay public, as marathon-lb's.
	cfg.AdminAddr, cfg.AppIDAddr = "", ""
	if n.c.String("lb-admin-addr") != "" {
		cfg.AdminAddr = n.controlAddr("lb-admin-addr")
		cfg.AdminClients = n.localClient
	}
	if n.c.String("lb-appid-addr") != "" {
		cfg.AppIDAddr = n.controlAddr("lb-appid-addr")
	}
	cfg.BindHost = n.c.String("lb-bind")
	var warn string
	cfg.MaxConns, warn = lbMaxConns(n.c.Int("lb-max-conns"), n.nofile)
	if warn != "" {
		n.log.Warn(warn)
	}
	cfg.Site = n.site
	cfg.Source = n.stateWatcher().Consumer()
	cfg.Registry = n.registry
	cfg.Logger = n.log
	// What the lb cannot honour goes to the master, which shows it on
	// /v2/events and GET /v1/lb/problems (the user does not read every
	// node's log).
	cfg.Report = func(appID string, problems []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := n.finder.client()
		if err == nil {
			body := map[string]any{"appId": appID, "node": n.name, "problems": problems}
			_, err = c.Do(ctx, http.MethodPost, "/v1/lb/problems", body, nil)
		}
		if err != nil {
			n.log.Warn("reporting lb problems to the master", "app", appID, "err", err)
		}
	}
	p, err := lb.New(cfg)
	if err != nil {
		return err
	}
	n.runs = append(n.runs, p.Run)
	n.addr("lb vhosts", "http://"+cfg.HTTPAddr)
	if cfg.HTTPSAddr != "" {
		where := "https://" + cfg.HTTPSAddr
		if len(cfg.Certs) == 0 {
			where += "  (opens when an app has HAPROXY_{n}_SSL_CERT)"
		}
		n.addr("lb https", where)
	}
	n.addr("lb admin", "http://"+cfg.AdminAddr+"/_haproxy_getconfig")
	n.addr("lb app id", "http://"+cfg.AppIDAddr+"  (X-Marathon-App-Id)")
	bind := cfg.BindHost
	if bind == "" {
		bind = "all addresses"
	}
	n.addr("lb services", "service ports on "+bind)
	return nil
}
