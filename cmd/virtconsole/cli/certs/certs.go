// Package certs implements "virtconsole certs": create and check x509
// cert directories in the QEMU/libvirt convention.
package certs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// NewCmdCerts returns "virtconsole certs" with its subcommands.
func NewCmdCerts(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs <command>",
		Short: "Create and check x509 certificate directories",
		Long: `Work with x509 certificate directories in the QEMU/libvirt convention,
the layout every --tls-dir style option of virtconsole reads:

  ca-cert.pem                      the CA that issued the certificates below
  server-cert.pem, server-key.pem  presented by listeners (QEMU, virtconsole server)
  client-cert.pem, client-key.pem  presented by dialers (virtconsole toward QEMU or the proxy)

virtconsole checks a directory when it starts, before any connection; "certs
check" runs the same checks and shows each one.`,
		Example: `  # a throwaway CA and certificates for a test host
  virtconsole certs create --dir ./pki --host hv1.example --host 192.0.2.10

  # check QEMU's directory as libvirt lays it out
  virtconsole certs check --dir /etc/pki/qemu --role server`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(NewCmdCreate(f, nil))
	cmd.AddCommand(NewCmdCheck(f, nil))
	return cmd
}

// CreateOptions are the inputs of "virtconsole certs create".
type CreateOptions struct {
	IO *cmdutil.IOStreams

	Dir   string
	Hosts []string
	Force bool
	Days  int
	For   string
	Group string
}

// qemuGroups are the groups QEMU runs in under libvirt: Debian's and
// Fedora's.
var qemuGroups = []string{"libvirt-qemu", "qemu"}

// NewCmdCreate returns "virtconsole certs create". runF replaces
// runCreate in tests.
func NewCmdCreate(f *cmdutil.Factory, runF func(*CreateOptions) error) *cobra.Command {
	opts := &CreateOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "create --dir DIR --host NAME_OR_IP [--host NAME_OR_IP ...]",
		Short: "Mint a throwaway CA with server and client certificates",
		Long: `Mint a new CA and, signed by it, a server certificate for the given hosts
and a client certificate, and write them to DIR in the QEMU/libvirt layout:
ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem and
client-key.pem. This is for quick starts and tests; use your own PKI in
production.

Each --host is a DNS name or an IP address, put in the server certificate's
subject alternative names (the first is also its common name); name every
address that clients use to reach the server. Keys are ECDSA P-256 with mode
0600 (QEMU's convention is 0640 with the group QEMU runs as); DIR is created
with mode 0700 if it does not exist (missing parents 0755). The CA's key is
not kept: run create again, with --force, to change the hosts; that mints a
new CA too, which clients must then trust.

The same directory serves QEMU and virtconsole, for example:
  qemu ... -object tls-creds-x509,id=tls0,dir=DIR,endpoint=server,verify-peer=on

With --group NAME the directory is made readable for a daemon that runs in
group NAME (a name or a numeric ID), such as virtconsole's systemd units
(DynamicUser= with SupplementaryGroups=virtconsole): DIR mode 0750, every
file mode 0640, all with that group. Each file is written with its group
and mode already set, so a renewal with --force reaches a running daemon
(it checks the files every 10 s) without a moment it cannot read them.

With --for qemu the directory is made readable for QEMU as libvirt runs it:
as --group with QEMU's group (libvirt-qemu on Debian, qemu on Fedora), but
only for ca-cert.pem, server-cert.pem and server-key.pem; the client key
stays 0600 for virtconsole alone. Point qemu.conf's *_tls_x509_cert_dir at
DIR and give virtconsole --connect-tls-dir DIR.

Existing files are not replaced without --force.`,
		Example: `  # certificates for a hypervisor reached by name and by address, valid 30 days
  virtconsole certs create --dir ./pki --host hv1.example --host 192.0.2.10 --days 30

  # replace an existing set
  virtconsole certs create --dir ./pki --host localhost --host 127.0.0.1 --force

  # QEMU's directory on a libvirt host (run as root)
  virtconsole certs create --dir /etc/pki/qemu --host 127.0.0.1 --host localhost --for qemu

  # the directory virtconsole.service reads, and its renewal (run as root)
  virtconsole certs create --dir /etc/pki/virtconsole --host "$(hostname)" --group virtconsole
  virtconsole certs create --dir /etc/pki/virtconsole --host "$(hostname)" --group virtconsole --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runCreate(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "write the certificates and keys to `DIR`")
	cmd.Flags().StringArrayVar(&opts.Hosts, "host", nil, "a `NAME_OR_IP` (DNS name or IP address) for the server certificate (repeatable)")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "replace existing files")
	cmd.Flags().IntVar(&opts.Days, "days", 365, "the certificates are valid for `N` days")
	cmd.Flags().StringVar(&opts.For, "for", "", "`USER` that reads the directory besides you: qemu (QEMU's group under libvirt gets read access)")
	cmd.Flags().StringVar(&opts.Group, "group", "", "let group `NAME` (or a numeric ID) read the directory and every file in it")
	cmd.MarkFlagsMutuallyExclusive("for", "group")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("host")
	return cmd
}

func runCreate(opts *CreateOptions) error {
	if opts.Days <= 0 {
		return &cmdutil.FlagError{Err: fmt.Errorf("--days must be at least 1, not %d", opts.Days)}
	}
	var share *tlscreds.Share
	var shared string // who reads the shared files, for the output
	switch {
	case opts.For != "":
		if opts.For != "qemu" {
			return &cmdutil.FlagError{Err: fmt.Errorf("--for %q: want qemu", opts.For)}
		}
		g, err := lookupGroup(qemuGroups)
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("--for qemu: %w; install libvirt (libvirt-daemon-system) first", err)}
		}
		share, shared = &tlscreds.Share{GID: g, Files: tlscreds.QEMUFiles}, "QEMU's group"
	case opts.Group != "":
		g, err := lookupGroup([]string{opts.Group})
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("--group: %w; create it (groupadd --system %s) or name another", err, opts.Group)}
		}
		share, shared = &tlscreds.Share{GID: g, Files: tlscreds.CreatedFiles}, "group "+opts.Group
	}
	now := time.Now()
	err := tlscreds.Create(opts.Dir, opts.Hosts, tlscreds.CreateOptions{
		Validity: time.Duration(opts.Days) * 24 * time.Hour,
		Now:      now,
		Force:    opts.Force,
		Share:    share,
	})
	switch {
	case errors.Is(err, fs.ErrExist):
		return &cmdutil.FlagError{Err: fmt.Errorf("%w; use --force to replace them", err)}
	case errors.Is(err, tlscreds.ErrInvalidHost):
		return &cmdutil.FlagError{Err: err}
	case err != nil && share != nil && errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w; run as root to give the files to %s", err, shared)
	case err != nil:
		return err
	}

	out := opts.IO.Out
	describe := map[string]string{
		tlscreds.CACertFile:            "CA certificate (its key is not kept)",
		tlscreds.RoleServer.CertFile(): "server certificate for " + strings.Join(opts.Hosts, ", "),
		tlscreds.RoleServer.KeyFile():  "server key " + keyMode(share, tlscreds.RoleServer.KeyFile(), shared),
		tlscreds.RoleClient.CertFile(): "client certificate",
		tlscreds.RoleClient.KeyFile():  "client key " + keyMode(share, tlscreds.RoleClient.KeyFile(), shared),
	}
	for _, f := range tlscreds.CreatedFiles {
		fmt.Fprintf(out, "wrote %-*s  %s\n", len(filepath.Join(opts.Dir, "server-cert.pem")), filepath.Join(opts.Dir, f), describe[f])
	}
	_, err = fmt.Fprintf(out, "valid until %s\n", now.Add(time.Duration(opts.Days)*24*time.Hour).UTC().Format("2006-01-02"))
	return err
}

// lookupGroup returns the ID of the first of names that exists; a name
// may be a numeric ID.
func lookupGroup(names []string) (int, error) {
	for _, n := range names {
		if g, err := user.LookupGroup(n); err == nil {
			return strconv.Atoi(g.Gid)
		}
		if id, err := strconv.Atoi(n); err == nil && id >= 0 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no group %s", strings.Join(names, " or "))
}

// keyMode describes the mode a key file was written with.
func keyMode(share *tlscreds.Share, file, shared string) string {
	if share != nil && slices.Contains(share.Files, file) {
		return "(mode 0640, " + shared + ")"
	}
	return "(mode 0600)"
}

// CheckOptions are the inputs of "virtconsole certs check".
type CheckOptions struct {
	IO *cmdutil.IOStreams

	Dir  string
	Role string
}

// NewCmdCheck returns "virtconsole certs check". runF replaces runCheck
// in tests.
func NewCmdCheck(f *cmdutil.Factory, runF func(*CheckOptions) error) *cobra.Command {
	opts := &CheckOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "check --dir DIR [--role server|client]",
		Short: "Run the startup checks on a certificate directory and show each one",
		Long: `Run on DIR the checks virtconsole runs before it uses a certificate
directory, and print each one with ok, FAIL or skip (a check that needs a file
that failed). For each failure the line below says what is wrong and what to
do.

The checks: each file exists, is readable and parses as PEM; ca-cert.pem is a
CA (basic constraints CA:TRUE), may sign certificates (keyCertSign, where key
usage is set) and is inside its validity period; the server or client
certificate is not a CA, has digitalSignature or keyEncipherment key usage and
serverAuth or clientAuth extended key usage (where present), is inside its
validity period and is signed by ca-cert.pem; the private key is not readable
by others (group-readable is fine), parses (PKCS#1, PKCS#8 or EC) and matches
the certificate.

Without --role, the roles whose certificate or key is in DIR are checked.
Exits with 0 when every check passes, and with 4 when one fails.`,
		Example: `  # check whatever DIR holds
  virtconsole certs check --dir /etc/pki/virtconsole

  # check the client side only, e.g. what virtconsole presents to QEMU
  virtconsole certs check --dir /etc/pki/qemu --role client`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runCheck(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "check the certificate directory `DIR`")
	cmd.Flags().StringVar(&opts.Role, "role", "", "check the certificates of `ROLE`: server or client (default: whichever DIR holds)")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"server", "client"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runCheck(opts *CheckOptions) error {
	var roles []tlscreds.Role
	if opts.Role != "" {
		r, err := tlscreds.ParseRole(opts.Role)
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("--role: %w", err)}
		}
		roles = []tlscreds.Role{r}
	} else {
		// A directory that cannot be checked fails as a check does
		// (ExitTLS, as the help says): an outcome of this command, not a
		// class of error.
		fi, err := os.Stat(opts.Dir)
		if err != nil {
			return cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("tls: cannot read certificate directory: %w", err))
		}
		if !fi.IsDir() {
			return cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("tls: %s is not a directory; name the certificate directory", opts.Dir))
		}
		for _, r := range []tlscreds.Role{tlscreds.RoleServer, tlscreds.RoleClient} {
			if exists(opts.Dir, r.CertFile()) || exists(opts.Dir, r.KeyFile()) {
				roles = append(roles, r)
			}
		}
		if len(roles) == 0 {
			return cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("tls: %s holds neither server-cert.pem nor client-cert.pem; name a certificate directory, or make one with virtconsole certs create", opts.Dir))
		}
	}

	out := opts.IO.Out
	now := time.Now()
	total, failed := 0, 0
	for i, role := range roles {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "%s as %s:\n", opts.Dir, role)
		for _, r := range tlscreds.Check(opts.Dir, role, now) {
			if i > 0 && r.File == tlscreds.CACertFile {
				continue // the CA was shown with the first role
			}
			total++
			if r.Err != nil {
				failed++
			}
			printResult(out, r)
		}
	}
	fmt.Fprintln(out)
	if failed > 0 {
		fmt.Fprintf(out, "%d of %d checks failed\n", failed, total)
		return &cmdutil.SilentError{Code: cmdutil.ExitTLS}
	}
	_, err := fmt.Fprintf(out, "all %d checks passed\n", total)
	return err
}

func printResult(out io.Writer, r tlscreds.Result) {
	status := "ok"
	switch {
	case r.Err != nil:
		status = "FAIL"
	case r.Skipped:
		status = "skip"
	}
	fmt.Fprintf(out, "  %-4s  %-15s  %s\n", status, r.File, r.Name)
	if r.Err != nil {
		fmt.Fprintf(out, "        %s\n", cmdutil.OneLine(r.Err))
	}
}

func exists(dir, name string) bool {
	_, err := os.Lstat(filepath.Join(dir, name))
	return err == nil
}
