// Package vv implements "virtconsole vv": a virt-viewer connection file
// (.vv) that brings a native SPICE client (remote-viewer, virt-manager,
// GNOME Boxes) to a VM's SPICE console through the proxy's SPICE CONNECT
// gateway (server --spice-connect-listen), with nothing of ours on the
// client's machine.
package vv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// EnvGateway is the environment variable --gateway defaults to.
const EnvGateway = connect.EnvGateway

// Options are the flags and arguments of "virtconsole vv".
type Options struct {
	IO *cmdutil.IOStreams

	Domain      string
	Gateway     string
	Proxy       connect.ProxyOptions // TokenFile, CAFile, Insecure
	Libvirt     connect.DomainOptions
	Output      string
	Title       string
	Viewer      string
	Profile     connect.ProfileOptions
	Timeout     time.Duration
	Insecure    bool
	Passthrough bool
}

// NewCmdVV returns "virtconsole vv". runF replaces the run function in
// tests; nil runs the command.
func NewCmdVV(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "vv [DOMAIN]",
		Short: "Write a .vv file that opens a VM's SPICE console in remote-viewer",
		Long: `Write a virt-viewer connection file (.vv) for a SPICE console, reached through
the proxy's SPICE CONNECT gateway (virtconsole server or server proxy with
--spice-connect-listen). remote-viewer, virt-manager and GNOME Boxes open it
with nothing else installed: each SPICE channel is an HTTP CONNECT to the
gateway, authenticated by the token, then TLS inside the tunnel to the proxy,
which connects to QEMU with TLS and supplies the SPICE password.

The file holds:
  type=spice, host=` + proxy.ConnectHost + `, tls-port=` + fmt.Sprint(proxy.ConnectPort) + `
                the gateway's one CONNECT target: the console the token opens
  proxy=        the gateway's URL with the token (base64url) as the password
  ca, host-subject
                the CA and subject of the certificate the gateway presents
                inside the tunnel (asked of the gateway at ` + proxy.InfoPath + `)
  secure-channels=all, delete-this-file=1, a title and the hot-keys
No VM password is in it: the proxy supplies it. The token is: anyone with the
file has the console until the token is spent (the bundled server's tokens are
single-use: one session) or revoked. Treat the file as a password; -o writes
it with mode 0600.

With DOMAIN (a libvirt name, UUID or ID; -c picks the libvirt URI), the token
of its SPICE console number --index is read from libvirt, as "virtconsole
spice DOMAIN --proxy" does. Without DOMAIN, the token comes from --token-file
(- for standard input) or ` + connect.EnvToken + `.

--gateway is the gateway's URL, https://HOST:PORT (env ` + EnvGateway + `);
its certificate is checked against --ca-file, or the system roots, as
remote-viewer checks it against the system roots. http:// needs
--proxy-insecure: the token then travels in the clear to the gateway.

--viewer auto (or a viewer's path) starts remote-viewer with the file instead
of printing it: the file is written, mode 0600, in a private directory and
removed when the viewer exits; the token is never on a command line.
remote-viewer honours SPICE_PROXY like proxy= in the file.

--passthrough is for a gateway started with --spice-connect-passthrough, which
relays the tunnels to QEMU's TLS port unterminated so that viewers check
QEMU's own certificate: the file then carries QEMU's CA and certificate
subject and the VM's SPICE password (password=), which the gateway gives the
token's holder; the proxy cannot supply it. Anyone with that file has the VM
password for as long as QEMU keeps it, not only until the token is spent.
The token admits the first client address that uses it for the session's
first minute. Without --passthrough, vv refuses to write such a file.`,
		Example: `  # a .vv file for a libvirt domain's SPICE console
  virtconsole vv myvm -c qemu:///system --gateway https://proxy.example:3128 -o myvm.vv

  # a token from a static token file, opened in remote-viewer at once
  virtconsole vv --token-file ./spicetoken --gateway https://proxy.example:3128 --viewer auto

  # the gateway's certificate from a private CA
  virtconsole vv --token-file ./spicetoken --gateway https://proxy.example:3128 --ca-file ca.pem > console.vv

  # a passthrough gateway: QEMU's certificate, and the VM password in the file
  virtconsole vv --passthrough --token-file ./spicetoken --gateway https://proxy.example:3128 -o console.vv`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Domain, err = connect.DomainArg(cmd, args); err != nil {
				return err
			}
			if err := opts.Profile.Apply(f, cmd, &opts.Proxy); err != nil {
				return err
			}
			if opts.Gateway == "" {
				opts.Gateway = f.Getenv(EnvGateway)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runVV(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Gateway, "gateway", "", "the SPICE CONNECT gateway's `URL`, https://HOST:PORT (env "+EnvGateway+")")
	fl.StringVar(&opts.Proxy.TokenFile, "token-file", "", "read the console token from `FILE` (- for the first line of stdin; env "+connect.EnvToken+" otherwise)")
	fl.StringVar(&opts.Proxy.CAFile, "ca-file", "", "trust the gateway's certificate if signed by the CA in `FILE` (default: system roots)")
	fl.BoolVar(&opts.Insecure, "proxy-insecure", false, "allow an http:// gateway (the token in cleartext to it)")
	fl.BoolVar(&opts.Passthrough, "passthrough", false, "for a --spice-connect-passthrough gateway: write QEMU's CA and subject and the VM's SPICE password into the file")
	fl.IntVar(&opts.Libvirt.Index, "index", 0, "which SPICE device of DOMAIN: `N` (0 is the first)")
	cmdutil.AddLibvirtURIFlag(cmd, &opts.Libvirt.URI)
	fl.StringVarP(&opts.Output, "output", "o", "", "write the file to `FILE` (mode 0600) instead of standard output")
	fl.StringVar(&opts.Title, "title", "", "the viewer window's `TITLE` (default: DOMAIN, or \"SPICE console\", and the hot-keys)")
	fl.StringVar(&opts.Viewer, "viewer", "", "start a viewer with the file instead of writing it: auto (remote-viewer) or the viewer's `PATH`")
	fl.DurationVar(&opts.Timeout, "timeout", 15*time.Second, "give up asking the gateway after `DURATION`")
	connect.AddProfileFlags(cmd, &opts.Profile)
	return cmd
}

func runVV(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	gw, err := GatewayURL(opts.Gateway, opts.Insecure)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	var token string
	if opts.Domain != "" {
		token, err = opts.Libvirt.DomainToken(ctx, f, opts.Domain, protocols.KindSPICE)
	} else {
		token, err = opts.Proxy.ReadToken(f)
	}
	if err != nil {
		return err
	}
	info, err := gatewayInfo(ctx, gw, opts.Proxy.CAFile, opts.Timeout, "")
	if err != nil {
		return err
	}
	switch {
	case info.Passthrough && !opts.Passthrough:
		return &cmdutil.FlagError{Err: fmt.Errorf("the gateway %s relays to QEMU unterminated (--spice-connect-passthrough): its .vv file must carry the VM's SPICE password; pass --passthrough to write one", gw.Host)}
	case !info.Passthrough && opts.Passthrough:
		return &cmdutil.FlagError{Err: fmt.Errorf("--passthrough: the gateway %s terminates TLS and supplies the SPICE password itself; drop --passthrough", gw.Host)}
	case info.Passthrough:
		if info, err = gatewayInfo(ctx, gw, opts.Proxy.CAFile, opts.Timeout, token); err != nil {
			return err
		}
	}
	title := opts.Title
	if title == "" {
		title = "SPICE console"
		if opts.Domain != "" {
			title = opts.Domain
		}
		title += " (release the cursor: shift+f12)"
	}
	file := info.VVFile(gw, token, title)
	switch {
	case opts.Viewer != "":
		return runViewer(ctx, opts.Viewer, file)
	case opts.Output != "" && opts.Output != "-":
		return writePrivate(opts.Output, file)
	}
	_, err = io.WriteString(opts.IO.Out, file)
	return err
}

// gatewayURL checks the gateway's URL: https:// (http:// with insecure),
// a host and port, nothing else.
func GatewayURL(raw string, insecure bool) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("no gateway: give --gateway https://HOST:PORT, the proxy's --spice-connect-listen address (or set %s)", EnvGateway)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("gateway URL %q: want https://HOST:PORT", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure {
			return nil, fmt.Errorf("gateway URL %q is cleartext; use https:// or pass --proxy-insecure", raw)
		}
	default:
		return nil, fmt.Errorf("gateway URL %q: scheme must be https", raw)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("gateway URL %q has no port: give the --spice-connect-listen port", raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// gatewayInfo asks the gateway what a .vv file needs of it, trusting its
// certificate if signed by caFile's CA (or the system roots); with a
// token, a passthrough gateway what the file needs of the token's console
// (POST, the token as a CONNECT's Proxy-Authorization).
func gatewayInfo(ctx context.Context, gw *url.URL, caFile string, timeout time.Duration, token string) (proxy.ConnectInfo, error) {
	var info proxy.ConnectInfo
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if caFile != "" {
		ca, err := tlscreds.LoadCAFile(caFile)
		if err != nil {
			return info, err
		}
		tr.TLSClientConfig = ca.ClientConfig(tlscreds.DefaultPolicy(), gw.Hostname())
	}
	c := &http.Client{Transport: tr, Timeout: timeout}
	defer tr.CloseIdleConnections()
	method := http.MethodGet
	if token != "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, gw.String()+proxy.InfoPath, nil)
	if err != nil {
		return info, err
	}
	if token != "" {
		req.SetBasicAuth(proxy.ConnectUser, proxy.EncodeConnectToken(token))
		req.Header["Proxy-Authorization"], req.Header["Authorization"] = req.Header["Authorization"], nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return info, cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("SPICE CONNECT gateway %s: %v; check --gateway (the proxy's --spice-connect-listen) and --ca-file", gw.Host, err))
	}
	defer resp.Body.Close()
	if token != "" && resp.StatusCode != http.StatusOK {
		reason, _ := bufio.NewReader(io.LimitReader(resp.Body, 1024)).ReadString('\n')
		code := cmdutil.ExitUnreachable
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests {
			code = cmdutil.ExitRefused
		}
		return info, cmdutil.WithCode(code, fmt.Errorf("SPICE CONNECT gateway %s refused the token's console: %s: %s", gw.Host, resp.Status, strings.TrimSpace(reason)))
	}
	if resp.StatusCode != http.StatusOK {
		return info, cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("SPICE CONNECT gateway %s answered %s to %s: is --gateway the proxy's --spice-connect-listen address?", gw.Host, resp.Status, proxy.InfoPath))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil || info.Host == "" || info.TLSPort == 0 || (info.HostSubject == "") != (info.Passthrough && token == "") {
		return info, cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("SPICE CONNECT gateway %s: its %s is not what virtconsole serves (%v)", gw.Host, proxy.InfoPath, err))
	}
	return info, nil
}

// writePrivate writes file to path with mode 0600 (an existing file is
// replaced, and its mode tightened; a device such as /dev/null is
// written, not replaced).
func writePrivate(path, file string) error {
	return resolver.WriteFileAtomicMode(path, []byte(file), 0o600)
}

// runViewer starts the viewer with file, written into a private
// directory (0700) with mode 0600, and removes it when the viewer exits.
func runViewer(ctx context.Context, viewer, file string) error {
	bin := viewer
	if viewer == "auto" {
		var err error
		if bin, err = exec.LookPath("remote-viewer"); err != nil {
			return cmdutil.WithCode(cmdutil.ExitFailure, errors.New("--viewer auto: remote-viewer is not installed (virt-viewer package); write the file with -o and open it with a SPICE viewer"))
		}
	}
	dir, err := os.MkdirTemp("", "virtconsole-vv-*") // mode 0700
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "console.vv")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return cmdutil.WithCode(cmdutil.ExitFailure, fmt.Errorf("viewer %s: %v", bin, err))
	}
	return nil
}
