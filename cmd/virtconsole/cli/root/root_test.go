package root

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

func testRoot() *cobra.Command {
	io := cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	cmd := NewCmdRoot(cmdutil.NewFactory(io))
	cmd.InitDefaultCompletionCmd()
	return cmd
}

// TestFlagPlaceholders: every flag that takes a value shows an upper-case
// placeholder in --help ("--host NAME_OR_IP"), never pflag's type name
// ("--host stringArray", "--days int").
func TestFlagPlaceholders(t *testing.T) {
	cmdutil.Walk(testRoot(), func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() == "bool" {
				return
			}
			name, _ := pflag.UnquoteUsage(f)
			if name == "" || strings.ToUpper(name) != name {
				t.Errorf("%s --%s: placeholder %q; put an upper-case one in backquotes in its usage", c.CommandPath(), f.Name, name)
			}
		})
	})
}

// execute runs the command tree with args and returns its error.
func execute(args ...string) (stdout string, err error) {
	var out bytes.Buffer
	io := cmdutil.Test(strings.NewReader(""), &out, &bytes.Buffer{})
	f := cmdutil.NewFactory(io)
	f.Getenv = func(string) string { return "" } // no VIRTCONSOLE_PROXY
	err = cmdutil.Execute(context.Background(), NewCmdRoot(f), args)
	return out.String(), err
}

// TestFlagErrorPointsToHelp: a flag error is a usage error (exit 1) that
// names close flags and the command's --help.
func TestFlagErrorPointsToHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serial", "--proxi", "wss://h:1"}, "unknown flag: --proxi (did you mean --proxy?); see 'virtconsole serial --help'"},
		{[]string{"serial", "--token", "f"}, "unknown flag: --token (did you mean --token-file?); see 'virtconsole serial --help'"},
		{[]string{"server", "proxy", "--listne", ":1"}, "unknown flag: --listne (did you mean --listen?); see 'virtconsole server proxy --help'"},
		{[]string{"certs", "create", "--day", "3"}, "unknown flag: --day (did you mean --days?); see 'virtconsole certs create --help'"},
		{[]string{"enable", "--zzz", "vm"}, "unknown flag: --zzz; see 'virtconsole enable --help'"},
		{[]string{"serial", "--proxy-timeout", "3"}, `invalid argument "3" for "--proxy-timeout" flag: must be a duration like "30s" or "5m"; see 'virtconsole serial --help'`},
		{[]string{"serial", "--connect-timeout", "3"}, `invalid argument "3" for "--connect-timeout" flag: must be a duration like "30s" or "5m"; see 'virtconsole serial --help'`},
	} {
		_, err := execute(tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v;\n want %s", tc.args, err, tc.want)
			continue
		}
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitUsage {
			t.Errorf("%v: exit code %d, want %d", tc.args, code, cmdutil.ExitUsage)
		}
	}
}

// TestExitCodesTopic: the exit-code table is the help topic "virtconsole
// help exit-codes", listed in the root's help; commands point to it in one
// line instead of carrying the table.
func TestExitCodesTopic(t *testing.T) {
	out, err := execute("help", "exit-codes")
	if err != nil || !strings.Contains(out, cmdutil.ExitCodesHelp) {
		t.Fatalf("help exit-codes: %v\n%s", err, out)
	}
	out, _ = execute("--help")
	if !strings.Contains(out, "Additional help topics:") || !strings.Contains(out, "virtconsole exit-codes") {
		t.Errorf("root --help does not list the exit-codes topic:\n%s", out)
	}
	for _, args := range [][]string{{"serial"}, {"vnc"}, {"spice"}, {"enable"}, {"disable"}, {"rotate"}, {"consoles"}} {
		out, err := execute(append(args, "--help")...)
		if err != nil || !strings.Contains(out, cmdutil.ExitCodesLine) || strings.Contains(out, "130  interrupted") {
			t.Errorf("%v --help: want the line %q, not the table: %v\n%s", args, cmdutil.ExitCodesLine, err, out)
		}
	}
}

// TestMissingArguments: a command given nothing to work on says what it
// wants, in words, as a usage error.
func TestMissingArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serial"}, "no console given: give DOMAIN (on a libvirt host) or --proxy URL (or VIRTCONSOLE_PROXY) with --token-file; see 'virtconsole serial --help'"},
		{[]string{"vnc"}, "no console given: give DOMAIN (on a libvirt host), --proxy URL (or VIRTCONSOLE_PROXY) with --token-file, or --target HOST:PORT; see 'virtconsole vnc --help'"},
		{[]string{"spice", "--local-port", "0"}, "no console given: give DOMAIN (on a libvirt host), --proxy URL (or VIRTCONSOLE_PROXY) with --token-file, or --target HOST:PORT; see 'virtconsole spice --help'"},
		{[]string{"enable"}, "enable: give the DOMAIN (name, UUID or ID) whose consoles to enable"},
		{[]string{"disable", "-c", "qemu:///system"}, "disable: give the DOMAIN (name, UUID or ID) whose consoles to disable"},
		{[]string{"rotate"}, "rotate: give the DOMAIN (name, UUID or ID) whose tokens to rotate"},
		{[]string{"consoles", "--json"}, "consoles: give the DOMAIN (name, UUID or ID) whose consoles to list"},
		{[]string{"enable", "vm1", "vm2"}, "enable: one DOMAIN at a time, got 2: vm1 vm2"},
		{[]string{"serial", "--proxy", "https://proxy.example:6443", "--token-file", "t"}, `proxy URL "https://proxy.example:6443": use wss://proxy.example:6443 (the proxy's websocket URL)`},
		{[]string{"vnc", "--proxy", "http://proxy.example:80"}, `proxy URL "http://proxy.example:80": use ws://proxy.example:80 (the proxy's websocket URL) with --proxy-insecure`},
		{[]string{"sessions", "list"}, "no --server URL: give the proxy's admin listener, https://host:port (its --admin-listen)"},
		{[]string{"sessions", "kill", "3f46e0a823f092c8", "--server", "http://127.0.0.1:6444"}, `--server "http://127.0.0.1:6444": want https://host:port, the proxy's --admin-listen`},
		{[]string{"sessions", "list", "--server", "https://127.0.0.1:6444"}, "no --tls-dir DIR: the sessions API needs a client certificate (client-cert.pem, client-key.pem) and the proxy's CA (ca-cert.pem)"},
	} {
		_, err := execute(tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v;\n want %s", tc.args, err, tc.want)
			continue
		}
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitUsage {
			t.Errorf("%v: exit code %d, want %d", tc.args, code, cmdutil.ExitUsage)
		}
	}
}

// TestCobraErrorsAreUsage: cobra's own refusals (arguments, commands,
// required flags) are usage errors although cobra gives them no type.
func TestCobraErrorsAreUsage(t *testing.T) {
	for _, args := range [][]string{
		{"serial", "vm1", "vm2"},
		{"no-such-command"},
		{"version", "extra"},
		{"certs", "check"},
		{"sessions", "kill"},
		{"sessions", "list", "extra"},
	} {
		_, err := execute(args...)
		if code := cmdutil.ExitCode(err); err == nil || code != cmdutil.ExitUsage {
			t.Errorf("%v: exit code %d (%v), want %d", args, code, err, cmdutil.ExitUsage)
		}
	}
}

// TestDeprecatedFlags: the former names of renamed flags still work and
// say on standard error (never on standard output, where a console's
// output goes) which name to use now.
func TestDeprecatedFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serial", "--tls-dir", "/pki", "--help"}, "Flag --tls-dir has been deprecated, use --proxy-tls-dir instead\n"},
		{[]string{"vnc", "--insecure", "--help"}, "Flag --insecure has been deprecated, use --proxy-insecure instead\n"},
		{[]string{"spice", "--connect-timeout", "5s", "--help"}, "Flag --connect-timeout has been deprecated, use --proxy-timeout instead\n"},
		{[]string{"enable", "--insecure", "--help"}, "Flag --insecure has been deprecated, use --cleartext instead\n"},
	} {
		var out, errOut bytes.Buffer
		f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &errOut))
		if err := cmdutil.Execute(context.Background(), NewCmdRoot(f), tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if errOut.String() != tc.want || strings.Contains(out.String(), "deprecated") {
			t.Errorf("%v: stderr %q, want %q; stdout has it: %v", tc.args, errOut.String(), tc.want, strings.Contains(out.String(), "deprecated"))
		}
		if name := strings.Fields(tc.want)[1]; strings.Contains(out.String(), name+" ") {
			t.Errorf("%v: help shows %s", tc.args, name)
		}
	}
}

// TestHelpFlagSections: the client commands show their flags by group,
// the same groups in the same order; other commands keep cobra's one
// alphabetical list.
func TestHelpFlagSections(t *testing.T) {
	for _, c := range []string{"serial", "vnc", "spice"} {
		out, err := execute(c, "--help")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{cmdutil.GroupProxy, cmdutil.GroupDomain, cmdutil.GroupDirect, cmdutil.GroupTLS, cmdutil.GroupTimeouts}
		if c != "serial" {
			want = append(want, cmdutil.GroupListener)
		}
		want = append(want, "Other flags")
		last := -1
		for _, w := range want {
			i := strings.Index(out, "\n"+w+":\n")
			if i <= last {
				t.Errorf("%s --help: section %q missing or out of order:\n%s", c, w, out)
				break
			}
			last = i
		}
	}
	out, _ := execute("enable", "--help")
	if !strings.Contains(out, "\nFlags:\n") || strings.Contains(out, "Other flags") {
		t.Errorf("enable --help:\n%s", out)
	}
}
