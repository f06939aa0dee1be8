package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/sched/api"
)

func init() {
	registerCommand(aclCommand())
	registerCommand(secretCommand())
}

// aclCommand is `weft acl`: tokens and policies.
func aclCommand() *cli.Command {
	return &cli.Command{
		Name:  "acl",
		Usage: "ACL tokens and policies: who may do what through the API",
		Subcommands: []*cli.Command{
			{
				Name:   "bootstrap",
				Usage:  "turn ACLs on and print the management token (once: a second bootstrap is refused)",
				Action: aclBootstrap,
			},
			{
				Name:  "policy",
				Usage: "policies: rules by Marathon path, Chronos job name and secret name, plus node, operator and acl rights",
				Subcommands: []*cli.Command{
					{Name: "apply", Usage: "create or replace a policy from a JSON or YAML file", ArgsUsage: "NAME FILE (- for stdin)", Action: aclPolicyApply},
					{Name: "list", Usage: "list policies with their rules", Action: aclPolicyList},
					{Name: "delete", Aliases: []string{"rm"}, Usage: "delete a policy", ArgsUsage: "NAME", Action: aclPolicyDelete},
				},
			},
			{
				Name:  "token",
				Usage: "tokens for people and pipelines",
				Subcommands: []*cli.Command{
					{
						Name:  "create",
						Usage: "create a token and print its secret (shown this once)",
						Flags: []cli.Flag{
							&cli.StringSliceFlag{Name: "policy", Usage: "a policy the token gets (repeatable)", Required: true},
							&cli.StringFlag{Name: "name", Usage: "a name for the token (audit lines and events show it)"},
						},
						Action: aclTokenCreate,
					},
					{Name: "list", Usage: "list tokens: accessor id, name, policies (never secrets)", Action: aclTokenList},
					{Name: "delete", Aliases: []string{"rm"}, Usage: "delete a token by accessor id", ArgsUsage: "ACCESSOR", Action: aclTokenDelete},
					{Name: "self", Usage: "show the token --api-token names, and its rules", Action: aclTokenSelf},
				},
			},
		},
	}
}

func aclBootstrap(c *cli.Context) error {
	tok, err := apiClient(c).ACLBootstrap(c.Context)
	if err != nil {
		if api.StatusCode(err) == 409 {
			return errors.New("ACLs are already bootstrapped: the management token was printed then; use it (--api-token) to create more tokens")
		}
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "AccessorID: %s\nSecretID:   %s\n\n", tok.AccessorID, tok.SecretID)
	fmt.Fprintln(w, "This management token can do everything. Keep the SecretID safe: it is shown this once.")
	fmt.Fprintln(w, "Use it with --api-token or WEFT_API_TOKEN; the API now refuses calls without a token.")
	return nil
}

func aclPolicyApply(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("usage: weft acl policy apply NAME FILE")
	}
	raw, err := readFileArg(c.Args().Get(1))
	if err != nil {
		return err
	}
	pol, err := apiClient(c).ACLPolicyApply(c.Context, c.Args().Get(0), bytes.NewReader(raw))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "policy %s applied\n", pol.Name)
	return nil
}

func readFileArg(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

func aclPolicyList(c *cli.Context) error {
	pols, err := apiClient(c).ACLPolicies(c.Context)
	if err != nil {
		return err
	}
	return printJSON(c, pols)
}

func aclPolicyDelete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: weft acl policy delete NAME")
	}
	if err := apiClient(c).ACLPolicyDelete(c.Context, c.Args().First()); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "policy %s deleted\n", c.Args().First())
	return nil
}

func aclTokenCreate(c *cli.Context) error {
	tok, err := apiClient(c).ACLTokenCreate(c.Context, api.ACLTokenCreate{Name: c.String("name"), Policies: c.StringSlice("policy")})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "AccessorID: %s\nSecretID:   %s\nName:       %s\nPolicies:   %s\n\nThe SecretID is shown this once.\n",
		tok.AccessorID, tok.SecretID, tok.Name, strings.Join(tok.Policies, ", "))
	return nil
}

func aclTokenList(c *cli.Context) error {
	toks, err := apiClient(c).ACLTokens(c.Context)
	if err != nil {
		return err
	}
	t := newTable(c, "ACCESSOR", "NAME", "POLICIES", "CREATED")
	for _, tok := range toks {
		pols := strings.Join(tok.Policies, ",")
		if tok.Management {
			pols = "(management)"
		}
		t.row(tok.AccessorID, dash(tok.Name), dash(pols), tok.CreateTime)
	}
	return t.flush()
}

func aclTokenDelete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: weft acl token delete ACCESSOR")
	}
	if err := apiClient(c).ACLTokenDelete(c.Context, c.Args().First()); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "token %s deleted\n", c.Args().First())
	return nil
}

func aclTokenSelf(c *cli.Context) error {
	self, err := apiClient(c).ACLTokenSelf(c.Context)
	if err != nil {
		return err
	}
	return printJSON(c, self)
}

// secretCommand is `weft secret`: the secret store. Values are read from
// stdin only, never from the command line, and never printed.
func secretCommand() *cli.Command {
	return &cli.Command{
		Name:  "secret",
		Usage: "secrets for tasks (Marathon's secrets field), stored encrypted; values are never shown",
		Subcommands: []*cli.Command{
			{
				Name:      "put",
				Usage:     "store a secret; its value is read from stdin (a terminal prompts without echo)",
				ArgsUsage: "NAME",
				Action:    secretPut,
			},
			{Name: "list", Usage: "list secret names", Action: secretList},
			{Name: "delete", Aliases: []string{"rm"}, Usage: "delete a secret", ArgsUsage: "NAME", Action: secretDelete},
		},
	}
}

func secretPut(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: weft secret put NAME  (the value comes from stdin, never from the command line)")
	}
	var value []byte
	var err error
	ew := c.App.ErrWriter
	if ew == nil {
		ew = os.Stderr
	}
	if restore, ok := noEcho(int(os.Stdin.Fd())); ok {
		fmt.Fprintf(ew, "value of %s (not echoed; Enter ends it): ", c.Args().First())
		line, rerr := readLine(os.Stdin)
		restore()
		fmt.Fprintln(ew)
		value, err = line, rerr
	} else {
		value, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10+1))
		// A value piped with echo ends with one newline that is not part of it.
		value = bytes.TrimSuffix(value, []byte("\n"))
	}
	if err != nil {
		return fmt.Errorf("reading the secret's value from stdin: %w", err)
	}
	if len(value) == 0 {
		return errors.New("the secret's value is empty: pipe it in (weft secret put NAME < file)")
	}
	if err := apiClient(c).SecretPut(c.Context, c.Args().First(), bytes.NewReader(value)); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "secret %s stored\n", c.Args().First())
	return nil
}

func secretList(c *cli.Context) error {
	list, err := apiClient(c).Secrets(c.Context)
	if err != nil {
		return err
	}
	t := newTable(c, "NAME", "UPDATED", "BY")
	for _, s := range list {
		t.row(s.Name, s.UpdatedAt, dash(s.UpdatedBy))
	}
	return t.flush()
}

func secretDelete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: weft secret delete NAME")
	}
	if err := apiClient(c).SecretDelete(c.Context, c.Args().First()); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "secret %s deleted\n", c.Args().First())
	return nil
}

// noEcho turns off the terminal's echo on fd; ok is false when fd is not
// a terminal.
func noEcho(fd int) (restore func(), ok bool) {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, false
	}
	old := *t
	t.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return nil, false
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, &old) }, true
}

// readLine reads up to a newline, one byte at a time (nothing past it is
// consumed).
func readLine(r io.Reader) ([]byte, error) {
	var out []byte
	b := make([]byte, 1)
	for len(out) <= 64<<10 {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				return bytes.TrimSuffix(out, []byte("\r")), nil
			}
			out = append(out, b[0])
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
