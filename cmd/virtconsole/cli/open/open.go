// Package open implements "virtconsole open": the browser link of a
// console on a proxy that serves the console pages (--web).
package open

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/web"
)

// Options are the flags and arguments of "virtconsole open".
type Options struct {
	IO *cmdutil.IOStreams

	Domain   string
	Type     string
	Proxy    connect.ProxyOptions
	Libvirt  connect.DomainOptions
	Browser  bool
	Insecure bool
	VV       bool
	Profile  connect.ProfileOptions

	// OpenBrowser opens link in the desktop's browser; nil runs xdg-open.
	OpenBrowser func(ctx context.Context, link string) error
}

// NewCmdOpen returns "virtconsole open". runF replaces the run function
// in tests; nil runs the command.
func NewCmdOpen(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "open [DOMAIN]",
		Short: "Print (or open) the browser link of a VM's console",
		Long: `Print the browser link of a console on a proxy that serves the console pages
(virtconsole server, or server proxy --web), or open it with --browser.

The link is the proxy's page for the console type with the token in the
fragment, which browsers never send to a server:
  https://PROXY[/PREFIX]/vnc.html#token=TOKEN     (--type vnc)
  https://PROXY[/PREFIX]/spice.html#token=TOKEN   (--type spice)
  https://PROXY[/PREFIX]/serial.html#token=TOKEN  (--type serial or console)
  https://PROXY[/PREFIX]/vv.html#token=TOKEN      (--vv: a SPICE console)
The page hands the token to the proxy's websocket in a cookie. --proxy is the
proxy's address as https:// (or its wss:// websocket URL), with the prefix a
front proxy serves it under, if any (env ` + connect.EnvProxy + `).

With DOMAIN (a libvirt name, UUID or ID; -c picks the libvirt URI), the token
of its --type console number --index is read from libvirt, as "virtconsole vnc
DOMAIN --proxy" does (the console must be enabled: see "virtconsole
enable"). Tokens of the bundled server are single-use: the page spends it
when it connects, and a later reconnect needs a fresh link. Without DOMAIN,
the token comes from --token-file (- for standard input) or ` + connect.EnvToken + `.

Anyone with the link has the console until its token is spent or revoked:
treat it as a password. --browser does not put it on xdg-open's command line,
which other local users can see: xdg-open gets a page that only you can read
(in $XDG_RUNTIME_DIR/virtconsole/open/; a later --browser removes pages older
than two minutes), which sends the browser on to the link.

--vv links to the page that downloads the SPICE console's .vv file (as
'virtconsole vv' writes it) for remote-viewer, through the proxy's SPICE
CONNECT gateway (--spice-connect-listen, at the link's host name and the
gateway's port): the page sends the token in a request header, never in a
URL, and saves the answer as console.vv. The file holds the token: the user
opens it once, nothing of ours installed.`,
		Example: `  # the VNC page of a libvirt domain's console, through the bundled server
  virtconsole open myvm -c qemu:///system --proxy https://proxy.example:6443

  # its serial console, opened in the desktop's browser
  virtconsole open myvm --type serial --proxy https://proxy.example:6443 --browser

  # a token from a static token file, behind a front proxy's /consoles/ prefix
  virtconsole open --token-file ./vnctoken --type vnc --proxy https://front.example/consoles/

  # a link that downloads a .vv file for remote-viewer
  virtconsole open myvm --vv --proxy https://proxy.example:6443`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Domain, err = connect.DomainArg(cmd, args); err != nil {
				return err
			}
			if err := opts.Profile.Apply(f, cmd, &opts.Proxy); err != nil {
				return err
			}
			if opts.Proxy.URL == "" {
				opts.Proxy.URL = f.Getenv(connect.EnvProxy)
			}
			if opts.VV {
				if cmd.Flags().Changed("type") && opts.Type != string(protocols.KindSPICE) {
					return &cmdutil.FlagError{Err: errors.New("--vv is for SPICE consoles: drop --type " + opts.Type)}
				}
				opts.Type = string(protocols.KindSPICE)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runOpen(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Type, "type", string(protocols.KindVNC), "the console `TYPE`: vnc, spice, serial or console")
	fl.IntVar(&opts.Libvirt.Index, "index", 0, "which console device of the type: `N` (0 is the first)")
	cmdutil.AddLibvirtURIFlag(cmd, &opts.Libvirt.URI)
	fl.StringVar(&opts.Proxy.URL, "proxy", "", "the proxy's `URL`, e.g. https://proxy.example:6443 (or its wss:// URL; env "+connect.EnvProxy+")")
	fl.StringVar(&opts.Proxy.TokenFile, "token-file", "", "read the console token from `FILE` (- for the first line of stdin; env "+connect.EnvToken+" otherwise)")
	fl.BoolVar(&opts.Insecure, "proxy-insecure", false, "allow an http:// proxy (the token and the console in cleartext)")
	fl.BoolVar(&opts.Browser, "browser", false, "open the link with xdg-open instead of printing it")
	fl.BoolVar(&opts.VV, "vv", false, "link to the page that downloads the SPICE console's .vv file for remote-viewer (the proxy needs --spice-connect-listen)")
	connect.AddProfileFlags(cmd, &opts.Profile)
	return cmd
}

func runOpen(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	base, err := ProxyBase(opts.Proxy.URL, opts.Insecure)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	kind := protocols.Kind(opts.Type)
	if _, ok := web.Pages[opts.Type]; !ok {
		return &cmdutil.FlagError{Err: &web.KindError{Kind: opts.Type}}
	}
	var tok string
	if opts.Domain != "" {
		tok, err = opts.Libvirt.DomainToken(ctx, f, opts.Domain, kind)
	} else {
		tok, err = opts.Proxy.ReadToken(f)
	}
	if err != nil {
		return err
	}
	link, err := web.Link(base, opts.Type, tok)
	if opts.VV {
		link, err = web.VVLink(base, tok)
	}
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	if !opts.Browser {
		_, err = fmt.Fprintln(opts.IO.Out, link)
		return err
	}
	openBrowser := opts.OpenBrowser
	if openBrowser == nil {
		openBrowser = xdgOpen
	}
	return openBrowser(ctx, link)
}

// ProxyBase checks the proxy's URL: https:// or wss:// (http:// and ws://
// with insecure), a host, no query (a token goes in the fragment only).
func ProxyBase(raw string, insecure bool) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("no proxy: give --proxy https://HOST:PORT (or set %s)", connect.EnvProxy)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("proxy URL %q: want https://HOST:PORT[/PREFIX]", raw)
	}
	switch u.Scheme {
	case "https", "wss":
	case "http", "ws":
		if !insecure {
			return "", fmt.Errorf("proxy URL %q is cleartext; use https:// or pass --proxy-insecure", raw)
		}
	default:
		return "", fmt.Errorf("proxy URL %q: scheme must be https (or wss)", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("proxy URL %q must carry no query or fragment (the token comes from DOMAIN, --token-file or %s)", raw, connect.EnvToken)
	}
	return raw, nil
}

// xdgOpen hands link to the desktop's browser. The link carries the
// token, and a command line is visible to every local user (ps), so
// xdg-open gets the file:// URL of a redirect page readable by the user
// only, as Jupyter does; the page sends the browser on to link.
func xdgOpen(ctx context.Context, link string) error {
	page, err := redirectPage(link)
	if err != nil {
		return fmt.Errorf("--browser: %v; run without --browser and open the printed link yourself", err)
	}
	// Its output is dropped: it may quote what it opens.
	if err := exec.CommandContext(ctx, "xdg-open", (&url.URL{Scheme: "file", Path: page}).String()).Run(); err != nil {
		return fmt.Errorf("xdg-open failed (%v); run without --browser and open the printed link yourself", err)
	}
	return nil
}

// redirectPageAge is how long a redirect page is kept: the browser reads
// it soon after xdg-open returns, but not necessarily before.
const redirectPageAge = 2 * time.Minute

// redirectPage writes a page that redirects to link into a directory of
// the user's own (mode 0700, under $XDG_RUNTIME_DIR or the user's cache
// directory), mode 0600, and returns its path. Pages older than
// redirectPageAge are removed first: the token they carry may still be
// live, and nothing else would delete them.
func redirectPage(link string) (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(base, "virtconsole", "open")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	if old, err := filepath.Glob(filepath.Join(dir, "*.html")); err == nil {
		for _, p := range old {
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > redirectPageAge {
				os.Remove(p)
			}
		}
	}
	f, err := os.CreateTemp(dir, "console-*.html") // mode 0600
	if err != nil {
		return "", err
	}
	q := html.EscapeString(link)
	js, _ := json.Marshal(link)
	_, err = fmt.Fprintf(f, "<!DOCTYPE html>\n<meta charset=\"utf-8\">\n<meta name=\"referrer\" content=\"no-referrer\">\n<meta http-equiv=\"refresh\" content=\"0;url=%s\">\n<script>location.replace(%s)</script>\n<a href=\"%s\">Open the console</a>\n", q, js, q)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
