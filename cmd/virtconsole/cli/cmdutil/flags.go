package cmdutil

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// FlagGroupAnnotation is the flag annotation naming a flag's group: help
// shows each group as a section of its own (see root's usage template).
const FlagGroupAnnotation = "virtconsole_flag_group"

// The flag groups of the client commands, each registered in one place
// (package connect) with the same names and meanings on every command.
const (
	GroupProxy    = "Proxy flags (through a virtconsole proxy)"
	GroupDomain   = "Domain flags (DOMAIN on a libvirt host)"
	GroupDirect   = "Direct flags (straight to QEMU, no proxy)"
	GroupTLS      = "TLS policy flags (every TLS connection: to the proxy and to QEMU)"
	GroupTimeouts = "Timeout flags"
	GroupListener = "Local listener flags (for viewers)"
	GroupProfile  = "Profile flags (defaults from the client config file)"
)

// FlagGroups are the groups in the order help shows them; flags in none
// of them come last, under "Flags:".
var FlagGroups = []string{GroupProxy, GroupDomain, GroupDirect, GroupTLS, GroupTimeouts, GroupListener, GroupProfile}

// SetFlagGroup puts the named flags of fl in group.
func SetFlagGroup(fl *pflag.FlagSet, group string, names ...string) {
	annotate(fl, FlagGroupAnnotation, group, names...)
}

// FlagGroup returns the group of f, or "" for none.
func FlagGroup(f *pflag.Flag) string { return annotation(f, FlagGroupAnnotation) }

// annotate sets the annotation key of the named flags of fl to value.
func annotate(fl *pflag.FlagSet, key, value string, names ...string) {
	for _, n := range names {
		_ = fl.SetAnnotation(n, key, []string{value})
	}
}

// annotation returns the value of f's annotation key, or "".
func annotation(f *pflag.Flag, key string) string {
	if v := f.Annotations[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// DeprecatedAlias registers old as a former name of the flag name: bound
// to the same value, it keeps working, and cobra prints a deprecation
// notice (on standard error: see root) when it is used. Help, man pages
// and completions show only name.
func DeprecatedAlias(fl *pflag.FlagSet, old, name string) {
	f := fl.Lookup(name)
	fl.AddFlag(&pflag.Flag{Name: old, Usage: f.Usage, Value: f.Value, DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal})
	_ = fl.MarkDeprecated(old, "use --"+name+" instead")
	MarkAlias(fl, old, name)
}

// AliasAnnotation is the annotation of a deprecated flag naming the flag
// it sets: given on the command line, the alias counts as that flag (so a
// config file or the environment does not override it).
const AliasAnnotation = "virtconsole_alias_of"

// MarkAlias records that the flag old of fl sets the flag name.
func MarkAlias(fl *pflag.FlagSet, old, name string) { annotate(fl, AliasAnnotation, name, old) }

// AliasOf returns the name of the flag f is an alias of, or "".
func AliasOf(f *pflag.Flag) string { return annotation(f, AliasAnnotation) }

// AddLibvirtURIFlag registers -c/--connect, the libvirt URI of every
// command that takes a DOMAIN.
func AddLibvirtURIFlag(cmd *cobra.Command, uri *string) {
	cmd.Flags().StringVarP(uri, "connect", "c", "", "libvirt `URI` of DOMAIN (default $LIBVIRT_DEFAULT_URI or qemu:///system)")
}

// SecretAnnotation is the flag annotation marking a flag whose value is,
// or may contain, a secret: a daemon's --print-config masks it.
const SecretAnnotation = "virtconsole_secret"

// The kinds of secret a flag may hold.
const (
	SecretValue = "value" // the whole value: a password or token itself
	SecretURL   = "url"   // a URL whose userinfo may carry a password
)

// MarkSecret marks the named flags of fl as holding secrets of kind
// (SecretValue or SecretURL). Paths to files of secrets are not secrets.
func MarkSecret(fl *pflag.FlagSet, kind string, names ...string) {
	annotate(fl, SecretAnnotation, kind, names...)
}

// SecretKind returns the kind of secret f holds, or "" for none.
func SecretKind(f *pflag.Flag) string { return annotation(f, SecretAnnotation) }
