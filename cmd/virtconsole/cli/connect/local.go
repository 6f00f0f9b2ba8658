package connect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/forward"
)

// LocalOptions are the flags of a local listener for desktop viewers.
type LocalOptions struct {
	Port        int
	Address     string
	AllowRemote bool
	JSON        bool
	Once        bool
	Viewer      string
}

// AddLocalFlags registers the local listener flags; scheme is the URI
// scheme viewers use ("vnc" or "spice").
func AddLocalFlags(cmd *cobra.Command, o *LocalOptions, scheme string) {
	fl := cmd.Flags()
	fl.IntVar(&o.Port, "local-port", 0, "listen for viewers on `PORT` (0 picks a free port)")
	fl.StringVar(&o.Address, "listen-address", "127.0.0.1", "listen on `ADDRESS`; a non-loopback address needs --allow-remote")
	fl.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a non-loopback --listen-address (anyone who can reach it gets the console)")
	fl.BoolVar(&o.JSON, "json", false, `print the listening address as JSON ({"address":…,"port":…})`)
	fl.BoolVar(&o.Once, "once", false, "exit when the first viewer connection ends")
	fl.StringVar(&o.Viewer, "viewer", "none", "start a viewer: auto, none, remote-viewer, vncviewer, or a `COMMAND` with {host} and {port} (and {uri})")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupListener, "local-port", "listen-address", "allow-remote", "json", "once", "viewer")
}

// Listen opens the local listener after checking the address policy.
func (o *LocalOptions) Listen() (net.Listener, error) {
	if o.Port < 0 || o.Port > 65535 {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--local-port %d: want 0-65535", o.Port)}
	}
	ip := net.ParseIP(o.Address)
	if o.Address == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if (ip == nil || !ip.IsLoopback()) && !o.AllowRemote {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--listen-address %s is not a loopback address: anyone who reaches it gets the console; pass --allow-remote if you mean it", o.Address)}
	}
	addr := net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, cmdutil.ListenError(addr, "--local-port (0 picks a free one)", err)
	}
	return l, nil
}

// Announce prints where viewers should connect.
func (o *LocalOptions) Announce(out io.Writer, addr net.Addr) error {
	host, port := hostPort(addr)
	if o.JSON {
		return json.NewEncoder(out).Encode(struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		}{host, port})
	}
	_, err := fmt.Fprintf(out, "listening on %s\n", net.JoinHostPort(host, strconv.Itoa(port)))
	return err
}

func hostPort(addr net.Addr) (string, int) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String(), 0
	}
	return ta.IP.String(), ta.Port
}

// ViewerCommand returns the viewer's argv for scheme ("vnc", "spice")
// at addr, or nil for none. getenv tells whether a display exists.
func (o *LocalOptions) ViewerCommand(scheme string, addr net.Addr, getenv func(string) string) ([]string, error) {
	host, port := hostPort(addr)
	p := strconv.Itoa(port)
	uri := scheme + "://" + net.JoinHostPort(host, p)
	known := map[string][]string{
		"remote-viewer": {"remote-viewer", uri},
		// TigerVNC's HOST::PORT means a TCP port (HOST:N is a display).
		"vncviewer": {"vncviewer", host + "::" + p},
	}
	switch v := strings.TrimSpace(o.Viewer); v {
	case "", "none":
		return nil, nil
	case "auto":
		if getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" {
			return nil, nil
		}
		candidates := []string{"remote-viewer"}
		if scheme == "vnc" {
			candidates = append(candidates, "vncviewer")
		}
		for _, c := range candidates {
			if _, err := exec.LookPath(c); err == nil {
				return known[c], nil
			}
		}
		return nil, nil
	case "remote-viewer", "vncviewer":
		if v == "vncviewer" && scheme != "vnc" {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("--viewer vncviewer cannot show %s; use remote-viewer", scheme)}
		}
		return known[v], nil
	default:
		fields := strings.Fields(v)
		for i, f := range fields {
			f = strings.ReplaceAll(f, "{host}", host)
			f = strings.ReplaceAll(f, "{port}", p)
			fields[i] = strings.ReplaceAll(f, "{uri}", uri)
		}
		return fields, nil
	}
}

// StartViewer runs argv and returns a channel closed when it exits.
func StartViewer(ctx context.Context, argv []string, errOut io.Writer) (<-chan error, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("viewer %q not found; install it or choose another with --viewer", argv[0])}
		}
		return nil, fmt.Errorf("start viewer %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done, nil
}

// Handler returns the forward.Handler that serves one viewer connection
// along route: it dials, attaches the viewer and joins the two. When that
// fails, refuse (if set) tells the viewer why in its own protocol before
// the connection is closed. A failure is printed on errOut, once, when it
// happens, and returned marked as reported (cmdutil.Reported): with
// --once it becomes the command's exit code without being printed again.
//
// With rc, a failed dial is tried again (rc.Dial) while the viewer waits,
// unless the failure is final (a refusal, TLS).
func Handler(errOut io.Writer, route *Route, rc *Reconnector, refuse func(context.Context, net.Conn, error)) forward.Handler {
	return func(ctx context.Context, local net.Conn) error {
		defer local.Close()
		report := func(err error) error {
			if errors.Is(err, context.Canceled) {
				return err
			}
			fmt.Fprintf(errOut, "virtconsole: viewer %s: %s\n", local.RemoteAddr(), cmdutil.OneLine(err))
			return cmdutil.Reported(err)
		}
		client, server, err := open(ctx, route, rc, local)
		if err != nil {
			if refuse != nil {
				refuse(ctx, local, err)
			}
			return report(err)
		}
		if _, err := tunnel.Join(ctx, client, server); err != nil && ctx.Err() == nil {
			return report(&cmdutil.LostError{Err: err})
		}
		return nil
	}
}

// open dials the console for the viewer local (with rc, retrying) and
// attaches it.
func open(ctx context.Context, route *Route, rc *Reconnector, local net.Conn) (client, server net.Conn, err error) {
	var up *Conn
	if rc != nil {
		up, err = rc.Dial(ctx, fmt.Sprintf("viewer %s: ", local.RemoteAddr()))
	} else {
		up, err = route.Dial(ctx)
	}
	if err != nil {
		return nil, nil, err
	}
	return up.Attach(ctx, local)
}
