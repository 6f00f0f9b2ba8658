// Package share implements "virtconsole share": a share link (a signed,
// short-lived grant, package grant) of a console or a live session, with
// a role and an expiry, minted with the proxies' grant key or through a
// proxy's admin API.
package share

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/open"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/sessions"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/grant"
	"github.com/virtconsole/virtconsole/tunnel/web"
)

// Options are the flags of "virtconsole share".
type Options struct {
	IO *cmdutil.IOStreams

	// What is shared: a libvirt domain's console (DOMAIN, --type,
	// --index), the token of --token-file (only its ID goes in the
	// grant), a token ID, or a live session.
	Domain  string
	Index   int
	Token   connect.ProxyOptions
	TokenID string
	Session string

	Role string
	TTL  time.Duration
	Type string // the console page of the link

	// How it is minted: with the key file, or through the admin API.
	GrantKey string
	Admin    sessions.Options

	// NewKey writes a new key file instead of minting.
	NewKey string

	Insecure bool
	JSON     bool
	// Profile gives --proxy and --proxy-insecure (not --token-file: here
	// it names what is shared).
	Profile connect.ProfileOptions
}

// Result is what share prints (--json).
type Result struct {
	Link    string    `json:"link,omitempty"` // with --proxy
	Grant   string    `json:"grant"`
	JTI     string    `json:"jti"`
	Expires time.Time `json:"expires"`
}

// NewCmdShare returns "virtconsole share". runF replaces the run
// function in tests; nil runs the command.
func NewCmdShare(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Admin: sessions.Options{IO: f.IOStreams}}
	cmd := &cobra.Command{
		Use:   "share [DOMAIN]",
		Short: "Mint a share link: a console or a live session, a role, an expiry",
		Long: `Mint a share link: a short-lived grant, signed with the key that the proxies
read from --grant-key FILE, that opens a console or joins a live session
with a role (view by default) until its expiry (--ttl, at most 24h). Every
proxy with the key checks it without a store. It prints the browser link
(with --proxy: the console page with the grant in the fragment) and the
grant, which CLI clients take as their token (--token-file).

What it shares: DOMAIN's console of --type and number --index, on a
proxy that resolves libvirt consoles ("virtconsole server"); the console
of the token in --token-file, or of --token-id (the token's ID, as the
audit log's token_id), on a proxy with a static token file (--tokens); or
the live session --session ID (from "virtconsole sessions list"), on any
proxy. The grant holds a domain's name or the token's ID, never a token. A session share stops working when the session ends, and its viewers
are ended with it; every grant's viewers are ended at its expiry.

Minting: --grant-key FILE mints here, with the key (the grant says who
minted it: user@host); --server URL --tls-dir DIR mints through the proxy's
admin API (POST /v1/grants, a client certificate from its
--admin-client-ca; the grant names the certificate's CN, and the audit log
records grant_minted). --new-key FILE writes a new random key (mode 0600).

A refused grant is answered 403 before the websocket upgrade: "grant
expired", "grant signature invalid", "grant role not allowed", "shared
session has ended". The audit log's session_start of a viewer it let in
carries "grant": its jti, who minted it, its role and what it shares.

` + cmdutil.ExitCodesLine,
		Example: `  virtconsole share --new-key /etc/virtconsole/grant.key
  virtconsole share myvm --type vnc --ttl 30m --grant-key /etc/virtconsole/grant.key --proxy https://proxy.example:6443
  virtconsole share --token-file ./vnctoken --role view --ttl 15m --grant-key /etc/virtconsole/grant.key --proxy https://proxy.example:6443
  virtconsole share --session 3f46e0a823f092c8 --type serial --ttl 1h --server https://127.0.0.1:6444 --tls-dir ./pki --proxy https://proxy.example:6443`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				opts.Domain = args[0]
			}
			if err := opts.Profile.Apply(f, cmd, nil, "token-file", "token-command"); err != nil {
				return err
			}
			if opts.Token.URL == "" {
				opts.Token.URL = f.Getenv(connect.EnvProxy)
			}
			if runF != nil {
				return runF(opts)
			}
			return runShare(f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Token.TokenFile, "token-file", "", "share the console of the token in `FILE` (- for stdin); the grant holds only its ID")
	fl.StringVar(&opts.TokenID, "token-id", "", "share the console of the token whose `ID` is this (the audit log's token_id)")
	fl.StringVar(&opts.Session, "session", "", "share the live session `ID` (from 'virtconsole sessions list')")
	fl.StringVar(&opts.Role, "role", string(protocols.RoleView), "the most the link's viewers may do: `ROLE` view or control")
	fl.DurationVar(&opts.TTL, "ttl", 15*time.Minute, "the link stops working after `DURATION` (at most 24h)")
	fl.StringVar(&opts.Type, "type", string(protocols.KindVNC), "the console `TYPE` (of DOMAIN, and the link's page): vnc, spice, serial or console")
	fl.IntVar(&opts.Index, "index", 0, "with DOMAIN: which console device of the type: `N` (0 is the first)")
	fl.StringVar(&opts.Token.URL, "proxy", "", "print the browser link for the proxy at `URL` (https://host:port; env "+connect.EnvProxy+")")
	fl.BoolVar(&opts.Insecure, "proxy-insecure", false, "allow an http:// proxy URL")
	fl.StringVar(&opts.GrantKey, "grant-key", "", "mint with the proxies' grant key in `FILE`")
	fl.StringVar(&opts.Admin.Server, "server", "", "mint through the proxy's admin API at `URL` (https://host:port, its --admin-listen)")
	fl.StringVar(&opts.Admin.TLSDir, "tls-dir", "", "the admin API's client credentials in `DIR` (ca-cert.pem, client-cert.pem, client-key.pem)")
	fl.StringVar(&opts.NewKey, "new-key", "", "write a new grant key to `FILE` (mode 0600) and exit")
	fl.BoolVar(&opts.JSON, "json", false, "print link, grant, jti and expires as JSON")
	connect.AddProfileFlags(cmd, &opts.Profile)
	return cmd
}

func runShare(f *cmdutil.Factory, opts *Options) error {
	if opts.NewKey != "" {
		if err := grant.WriteNewKey(opts.NewKey); err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		_, err := fmt.Fprintf(opts.IO.Out, "wrote a new grant key to %s: give it to every proxy with --grant-key\n", opts.NewKey)
		return err
	}
	claims, err := opts.what(f)
	if err != nil {
		return err
	}
	var base string
	if opts.Token.URL != "" {
		if base, err = open.ProxyBase(opts.Token.URL, opts.Insecure); err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		if _, ok := web.Pages[opts.Type]; !ok {
			return &cmdutil.FlagError{Err: &web.KindError{Kind: opts.Type}}
		}
	}
	var res Result
	switch {
	case opts.GrantKey != "" && opts.Admin.Server != "":
		return &cmdutil.FlagError{Err: errors.New("give --grant-key or --server, not both")}
	case opts.GrantKey != "":
		key, err := grant.LoadKey(opts.GrantKey)
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		claims.By = minter()
		tok, c, err := key.Mint(claims, time.Now(), opts.TTL)
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		res = Result{Grant: tok, JTI: c.JTI, Expires: c.Expiry().UTC()}
	case opts.Admin.Server != "":
		body, _ := json.Marshal(map[string]any{"console": claims.Console, "domain": claims.Domain, "kind": claims.Kind,
			"index": claims.Index, "session": claims.Session, "role": claims.Role, "ttl": opts.TTL.String()})
		answer, err := opts.Admin.Call("POST", "/v1/grants", body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(answer, &res); err != nil || !grant.Is(res.Grant) {
			return fmt.Errorf("the admin API at %s answered something other than a grant; is --server the proxy's --admin-listen?", opts.Admin.Server)
		}
	default:
		return &cmdutil.FlagError{Err: errors.New("nothing to mint with: give --grant-key FILE, or --server URL --tls-dir DIR (the proxy's admin API)")}
	}
	if base != "" {
		if res.Link, err = web.Link(base, opts.Type, res.Grant); err != nil {
			return &cmdutil.FlagError{Err: err}
		}
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if res.Link != "" {
		fmt.Fprintf(opts.IO.Out, "link:    %s\n", res.Link)
	}
	_, err = fmt.Fprintf(opts.IO.Out, "grant:   %s\nexpires: %s\n", res.Grant, res.Expires.Format(time.RFC3339))
	return err
}

// what checks what is shared and with which role.
func (opts *Options) what(f *cmdutil.Factory) (grant.Claims, error) {
	role, err := protocols.ParseRole(opts.Role)
	if err != nil {
		return grant.Claims{}, &cmdutil.FlagError{Err: errors.New("--role must be view or control")}
	}
	c := grant.Claims{Role: role, Console: opts.TokenID, Session: opts.Session}
	if opts.Domain != "" {
		if _, ok := web.Pages[opts.Type]; !ok {
			return c, &cmdutil.FlagError{Err: &web.KindError{Kind: opts.Type}}
		}
		c.Domain, c.Kind, c.Index = opts.Domain, protocols.Kind(opts.Type), opts.Index
	}
	n := 0
	for _, s := range []string{opts.Domain, opts.Token.TokenFile, opts.TokenID, opts.Session} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return c, &cmdutil.FlagError{Err: errors.New("share one thing: give DOMAIN, --token-file FILE, --token-id ID or --session ID")}
	}
	if opts.Token.TokenFile != "" {
		tok, err := opts.Token.ReadToken(f)
		if err != nil {
			return c, err
		}
		c.Console = resolver.TokenID(tok)
	}
	return c, nil
}

// minter names who mints a grant with the key: user@host.
func minter() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
