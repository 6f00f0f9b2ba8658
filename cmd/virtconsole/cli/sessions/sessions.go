// Package sessions implements "virtconsole sessions": the client of the
// proxy's sessions API (server --admin-listen), which lists the live
// sessions and ends one.
package sessions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// Options are the flags every "sessions" subcommand shares, and each
// one's own.
type Options struct {
	IO *cmdutil.IOStreams
	// Server is the admin listener's https://host:port.
	Server string
	// TLSDir holds ca-cert.pem (the proxy's CA) and client-cert.pem,
	// client-key.pem (a certificate from its --admin-client-ca).
	TLSDir string

	JSON bool   // list
	ID   string // kill
}

// NewCmdSessions returns "virtconsole sessions" with its subcommands.
// runF replaces the subcommands' run functions in tests when not nil.
func NewCmdSessions(f *cmdutil.Factory, runF func(cmd string, opts *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "sessions <command>",
		Short: "List a proxy's live sessions, or end one",
		Long: `List the live sessions of a proxy, or end one, through its sessions API: the
admin listener that "virtconsole server" and "server proxy" serve with
--admin-listen ADDR, over TLS, to clients with a certificate from its
--admin-client-ca only (401 without one, 403 with another).

--server is that listener's https://host:port; --tls-dir holds ca-cert.pem
(the CA of the proxy's certificate) and client-cert.pem, client-key.pem (a
certificate from --admin-client-ca; when that is another CA, ca-cert.pem
holds both).

` + cmdutil.ExitCodesLine,
		Example: `  virtconsole sessions list --server https://127.0.0.1:6444 --tls-dir ./pki
  virtconsole sessions kill 3f46e0a823f092c8 --server https://127.0.0.1:6444 --tls-dir ./pki`,
		Args: cobra.NoArgs,
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&opts.Server, "server", "", "the proxy's admin listener at `URL` (https://host:port, its --admin-listen)")
	fl.StringVar(&opts.TLSDir, "tls-dir", "", "client credentials in `DIR`: ca-cert.pem, and client-cert.pem and client-key.pem from the proxy's --admin-client-ca")
	cmd.AddCommand(newCmdList(opts, runF), newCmdKill(opts, runF))
	return cmd
}

func newCmdList(opts *Options, runF func(string, *Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the live sessions",
		Long: `List the proxy's live sessions, oldest first: ID (for "sessions kill"),
console kind, domain (when the libvirt resolver knows it), console address,
client address, start time (UTC), bytes to and from the console, and
viewers: the websockets of the session (1, or a SPICE session's channels,
which are listed and ended as one session).

With --json: an array of objects with the keys id, kind, domain,
domain_uuid, console, client, forwarded_for, client_cert, started
(RFC 3339), bytes_to_console, bytes_from_console, viewers and spice_session
(the empty ones left out).`,
		Example: `  virtconsole sessions list --server https://127.0.0.1:6444 --tls-dir ./pki
  virtconsole sessions list --server https://127.0.0.1:6444 --tls-dir ./pki --json | jq -r '.[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF("list", opts)
			}
			return runList(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the sessions as a JSON array")
	return cmd
}

func newCmdKill(opts *Options, runF func(string, *Options) error) *cobra.Command {
	return &cobra.Command{
		Use:   "kill ID",
		Short: "End a live session",
		Long: `End the live session ID (from "sessions list"; every channel of a SPICE
session). Its viewer's websocket is closed with code 4002 and the reason
"session ended by an administrator", which "virtconsole serial" prints
before exiting with 5 (as "vnc" and "spice" do with --once); the
proxy's audit log records session_killed with killed_by "admin" and the CN
of this command's client certificate.

An ID that is not live (unknown, or already ended) exits with 7.`,
		Example: `  virtconsole sessions kill 3f46e0a823f092c8 --server https://127.0.0.1:6444 --tls-dir ./pki`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF("kill", opts)
			}
			return runKill(opts)
		},
	}
}

func runList(opts *Options) error {
	var list []proxy.SessionInfo
	body, err := opts.Call(http.MethodGet, "/v1/sessions", nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("the sessions API at %s answered something other than a session list (%v); is --server the proxy's --admin-listen?", opts.Server, err)
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	return writeTable(opts.IO.Out, list)
}

// writeTable prints list as an aligned table with a header.
func writeTable(w io.Writer, list []proxy.SessionInfo) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no live sessions")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tDOMAIN\tCONSOLE\tCLIENT\tSTARTED\tTO CONSOLE\tFROM CONSOLE\tVIEWERS\tROLES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.Kind, orDash(s.Domain), s.Console, s.Client,
			s.Started.UTC().Format(time.RFC3339), s.BytesToConsole, s.BytesFromConsole, s.Viewers, roles(s.Connections))
	}
	return tw.Flush()
}

// roles counts a session's connections by role, e.g. "1 control, 2 view"
// ("-" from a proxy that does not say).
func roles(conns []proxy.Connection) string {
	var control, view int
	for _, c := range conns {
		if c.Role == protocols.RoleView {
			view++
		} else {
			control++
		}
	}
	var parts []string
	if control > 0 {
		parts = append(parts, fmt.Sprintf("%d control", control))
	}
	if view > 0 {
		parts = append(parts, fmt.Sprintf("%d view", view))
	}
	return orDash(strings.Join(parts, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runKill(opts *Options) error {
	if _, err := opts.Call(http.MethodDelete, "/v1/sessions/"+url.PathEscape(opts.ID), nil); err != nil {
		return err
	}
	_, err := fmt.Fprintf(opts.IO.Out, "ended session %s\n", opts.ID)
	return err
}

// Call makes one request to the admin API (a JSON body, or none when
// nil) and returns the body of a 2xx answer; any other is an
// *cmdutil.APIError with the server's reason.
func (opts *Options) Call(method, path string, body []byte) ([]byte, error) {
	base, client, err := opts.client()
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--server %q: %v", opts.Server, err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		cause := err
		if ue, ok := errors.AsType[*url.Error](err); ok {
			cause = ue.Err // its text repeats the method and URL
		}
		return nil, &cmdutil.DialError{Msg: fmt.Sprintf("sessions API at %s: %s", req.URL.Host, cmdutil.OneLine(cause)), Err: err}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, &cmdutil.DialError{Msg: fmt.Sprintf("sessions API at %s: reading its answer: %s", req.URL.Host, cmdutil.OneLine(err)), Err: err}
	}
	if resp.StatusCode/100 != 2 {
		reason := strings.Join(strings.Fields(string(answer)), " ")
		if reason == "" {
			reason = http.StatusText(resp.StatusCode)
		}
		return nil, &cmdutil.APIError{Status: resp.StatusCode, Msg: fmt.Sprintf("sessions API at %s: %d %s", req.URL.Host, resp.StatusCode, reason)}
	}
	return answer, nil
}

// client checks the flags and returns the API's base URL and the HTTPS
// client presenting --tls-dir's certificate.
func (opts *Options) client() (string, *http.Client, error) {
	if opts.Server == "" {
		return "", nil, &cmdutil.FlagError{Err: errors.New("no --server URL: give the proxy's admin listener, https://host:port (its --admin-listen)")}
	}
	u, err := url.Parse(opts.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", nil, &cmdutil.FlagError{Err: fmt.Errorf("--server %q: want https://host:port, the proxy's --admin-listen", opts.Server)}
	}
	if opts.TLSDir == "" {
		return "", nil, &cmdutil.FlagError{Err: errors.New("no --tls-dir DIR: the sessions API needs a client certificate (client-cert.pem, client-key.pem) and the proxy's CA (ca-cert.pem)")}
	}
	creds, err := tlscreds.LoadClient(opts.TLSDir)
	if err != nil {
		return "", nil, err // a *tlscreds.CheckError: ExitTLS
	}
	tr := &http.Transport{TLSClientConfig: creds.ClientConfig(tlscreds.DefaultPolicy(), u.Host), ForceAttemptHTTP2: true}
	return strings.TrimSuffix(opts.Server, "/"), &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
