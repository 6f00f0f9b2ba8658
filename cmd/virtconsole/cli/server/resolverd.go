package server

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
)

// ResolverOptions are the flags of "virtconsole server resolver".
type ResolverOptions struct {
	Listen  string
	TLS     ListenTLS
	Tokens  string
	Connect []string
	Ops     Ops // the metrics listener (no audit log: it opens no sessions)

	Ready func(net.Addr)

	// configReload re-reads the config file on SIGHUP (nil: none).
	configReload *reloadPart
}

// NewCmdResolver returns "virtconsole server resolver".
func NewCmdResolver(f *cmdutil.Factory, runF func(context.Context, *ResolverOptions) error) *cobra.Command {
	opts := &ResolverOptions{}
	dopts := &daemonOptions{table: "resolver"}
	cmd := &cobra.Command{
		Use:   "resolver",
		Short: "Run the token resolver (REST API of libvirt-console-proxy)",
		Long: `Run the token resolver daemon.

It answers GET <base>/token/<token> with the console the token opens, as JSON
({"type","address","insecure","tlsTunnel","password"}), 404 for an unknown
token and 503 while its backend is unavailable: the REST API of the original
libvirt-console-proxy, so existing proxies can use it. Any base path works
(e.g. /consoleresolver/token/<token>). /healthz answers "ok".

Tokens come from a static token file (--tokens) or from libvirt (--connect):
the values of the secrets named in running domains' console-proxy metadata,
followed live; while libvirtd is unreachable it answers 503. pty consoles
cannot be described over the API (501): serve them with "virtconsole server".

Serve it with TLS and require client certificates (--require-client-cert or
--client-ca): its answers carry console addresses and passwords.
` + configHelp("resolver"),
		Example: `  virtconsole server resolver --listen 127.0.0.1:8081 --tls-dir ./pki --require-client-cert --tokens tokens.json
  virtconsole server resolver --listen :8081 --tls-dir /etc/pki/virtconsole --require-client-cert -c qemu:///system -c qemu+tls://hv2/system
  VIRTCONSOLE_LOG_LEVEL=debug virtconsole server resolver --config ./server.toml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := dopts.load(cmd, f)
			if err != nil {
				return err
			}
			if dopts.PrintConfig {
				return dopts.print(cmd, f.IOStreams.Out, src)
			}
			opts.configReload = dopts.configReload(cmd, f, src)
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runResolver(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	addDaemonFlags(cmd, dopts, &f.Log)
	addListenFlags(fl, &opts.Listen, &opts.TLS, "127.0.0.1:8081")
	addTokensFlag(fl, &opts.Tokens)
	addConnectFlag(fl, &opts.Connect, "give it or --tokens")
	addMetricsFlags(fl, &opts.Ops)
	return cmd
}

func runResolver(ctx context.Context, f *cmdutil.Factory, opts *ResolverOptions) error {
	policy, err := opts.TLS.policy()
	if err != nil {
		return err
	}
	listenTLS, err := opts.TLS.live(policy)
	if err != nil {
		return err
	}
	var res resolver.Resolver
	if len(opts.Connect) > 0 && opts.Tokens != "" {
		return &cmdutil.FlagError{Err: errors.New("give --tokens or --connect, not both")}
	}
	d := &daemon{name: "resolver", addr: opts.Listen, ready: opts.Ready, drainTimeout: 5 * time.Second}
	d.serveTLS(listenTLS)
	m, err := opts.Ops.metrics(d)
	if err != nil {
		return err
	}
	if len(opts.Connect) > 0 {
		// The REST API has no way to retire a token: answers are reusable.
		lopts := []libvirtresolver.Option{libvirtresolver.WithLogger(f.Logger()), libvirtresolver.WithReusableTokens()}
		if m != nil {
			lopts = append(lopts, libvirtresolver.WithConnState(m.LibvirtConnState))
		}
		lr, err := libvirtresolver.New(opts.Connect, lopts...)
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		defer lr.Close()
		res = lr
	} else if res, err = newResolver(f, opts.Tokens, "", "", policy); err != nil {
		return err
	}
	d.background = watchTokens(res, f.Logger())
	d.reloadTokens(res)
	if m != nil {
		res = m.Resolver(backend(res), res)
		d.reloaded = m.Reloaded
	}
	d.reloadConfigFirst(opts.configReload)
	d.handler = resolver.NewHandler(res, f.Logger())
	return d.serve(ctx, f.Logger())
}
