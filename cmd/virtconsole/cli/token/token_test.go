package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
)

// run executes "token args..." the way the root command does.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return cmdtest.Run(t, NewCmdToken, args...)
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestNew(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 20 {
		out, stderr, err := run(t, "new")
		if err != nil || stderr != "" {
			t.Fatalf("token new: %v %q", err, stderr)
		}
		tok, ok := strings.CutSuffix(out, "\n")
		if !ok || strings.Contains(tok, "\n") || !tokenRE.MatchString(tok) {
			t.Fatalf("output %q: want one line of 43 base64url characters", out)
		}
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != Bytes {
			t.Fatalf("token %q decodes to %d bytes (%v), want %d", tok, len(b), err, Bytes)
		}
		if seen[tok] {
			t.Fatalf("token repeated")
		}
		seen[tok] = true
	}
}

func TestNewJSON(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, "new", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if len(got) != 1 || !tokenRE.MatchString(got["token"]) || strings.Count(out, "\n") != 1 {
		t.Errorf("output %q: want one line {\"token\": TOKEN}", out)
	}
}

func TestNewUsesRand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	opts := &NewOptions{IO: cmdutil.Test(nil, &out, &bytes.Buffer{}), Rand: bytes.NewReader(bytes.Repeat([]byte{0xfb}, Bytes))}
	if err := runNew(opts); err != nil {
		t.Fatal(err)
	}
	// 0xfb bytes give "+" and "/" in standard base64, "-" and "_" here.
	if want := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, Bytes)) + "\n"; out.String() != want || !strings.ContainsAny(want, "-_") {
		t.Errorf("output %q, want %q", out.String(), want)
	}

	out.Reset()
	opts.Rand = iotest.ErrReader(errors.New("no entropy"))
	err := runNew(opts)
	if err == nil || cmdutil.ExitCode(err) != cmdutil.ExitFailure || out.Len() != 0 {
		t.Errorf("failing source: err %v (exit %d), output %q", err, cmdutil.ExitCode(err), out.String())
	}
	out.Reset()
	opts.Rand = bytes.NewReader(make([]byte, Bytes-1))
	if err := runNew(opts); err == nil || out.Len() != 0 {
		t.Errorf("short source: err %v, output %q", err, out.String())
	}
}

func TestNewArgs(t *testing.T) {
	t.Parallel()
	if _, _, err := run(t, "new", "extra"); err == nil {
		t.Errorf("token new extra: no error")
	}
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}))
	var got *NewOptions
	cmd := NewCmdTokenNew(f, func(o *NewOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got == nil || !got.JSON || got.IO != f.IOStreams {
		t.Errorf("NewOptions = %+v", got)
	}
}

func TestHelpText(t *testing.T) {
	t.Parallel()
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}))
	cmd := NewCmdToken(f)
	cmdtest.CheckHelp(t, cmd)
	if len(cmd.Commands()) != 1 {
		t.Errorf("subcommands: %d", len(cmd.Commands()))
	}
}
