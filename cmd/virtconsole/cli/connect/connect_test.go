package connect

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// TestUntrustedProxyNamesCAFile: a proxy whose certificate is signed by an
// unknown CA fails with exit 4 and one line that names --ca-file.
func TestUntrustedProxyNamesCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	f := testFactory(t, map[string]string{EnvToken: "tok"})
	r := resolveArgs(t, f, nil, "--proxy", "wss://"+srv.Listener.Addr().String(), "--proxy-timeout", "10s")
	_, err := r.Dial(context.Background())
	if err == nil {
		t.Fatal("dial succeeded")
	}
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitTLS {
		t.Errorf("exit code %d, want %d (%v)", code, cmdutil.ExitTLS, err)
	}
	msg := cmdutil.OneLine(err)
	if !strings.Contains(msg, "not signed by the system's trusted CAs") || !strings.HasSuffix(msg, "; pass --ca-file with the CA that signed it") {
		t.Errorf("error %q: want the CA problem and --ca-file as the fix", msg)
	}
}

// TestLocalPortBusy: a busy --local-port is a usage error that says what
// to do.
func TestLocalPortBusy(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	_, err = (&LocalOptions{Address: "127.0.0.1", Port: port}).Listen()
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitUsage {
		t.Fatalf("exit code %d, want %d (%v)", code, cmdutil.ExitUsage, err)
	}
	want := "listen on 127.0.0.1:" + strconv.Itoa(port) + ": address already in use; choose another --local-port (0 picks a free one) or stop the program using it"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// TestDomainArg: DOMAIN or --token-file, never both.
func TestDomainArg(t *testing.T) {
	newCmd := func(tokenFile bool) *cobra.Command {
		c := &cobra.Command{}
		c.Flags().String("token-file", "", "")
		if tokenFile {
			c.Flags().Set("token-file", "t")
		}
		return c
	}
	if d, err := DomainArg(newCmd(false), []string{"myvm"}); d != "myvm" || err != nil {
		t.Errorf("DOMAIN: %q %v", d, err)
	}
	if d, err := DomainArg(newCmd(true), nil); d != "" || err != nil {
		t.Errorf("--token-file: %q %v", d, err)
	}
	if _, err := DomainArg(newCmd(true), []string{"myvm"}); cmdutil.ExitCode(err) != cmdutil.ExitUsage || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both: %v", err)
	}
}
