package server

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// ListenTLS are the flags of a TLS listener, shared by every daemon.
type ListenTLS struct {
	TLSDir            string
	ClientCA          string
	RequireClientCert bool
	Insecure          bool
	MinVersion        string
	CipherSuites      []string
}

func (o *ListenTLS) addFlags(fl *pflag.FlagSet) {
	fl.StringVar(&o.TLSDir, "tls-dir", "", "serve TLS with server-cert.pem and server-key.pem from `DIR`")
	fl.StringVar(&o.ClientCA, "client-ca", "", "require client certificates signed by the CA in `FILE` (mutual TLS)")
	fl.BoolVar(&o.RequireClientCert, "require-client-cert", false, "require client certificates signed by ca-cert.pem in --tls-dir (mutual TLS)")
	fl.BoolVar(&o.Insecure, "listen-insecure", false, "serve cleartext HTTP/websockets (tokens travel in the clear)")
	fl.StringVar(&o.MinVersion, "tls-min-version", "1.2", "lowest TLS `VERSION` accepted or offered: 1.2 or 1.3")
	fl.StringSliceVar(&o.CipherSuites, "tls-cipher-suites", nil, "TLS 1.2 cipher `SUITES` allowed (comma-separated Go names; default: Go's secure set)")
}

// policy parses the TLS policy flags.
func (o *ListenTLS) policy() (tlscreds.Policy, error) {
	p, err := tlscreds.ParsePolicy(o.MinVersion, o.CipherSuites)
	if err != nil {
		return p, &cmdutil.FlagError{Err: err}
	}
	return p, nil
}

// config loads and checks the listener's credentials; nil means cleartext.
func (o *ListenTLS) config(p tlscreds.Policy) (*tls.Config, error) {
	switch {
	case o.Insecure && o.TLSDir != "":
		return nil, &cmdutil.FlagError{Err: errors.New("give --tls-dir or --listen-insecure, not both")}
	case o.Insecure:
		return nil, nil
	case o.TLSDir == "":
		return nil, &cmdutil.FlagError{Err: errors.New("no TLS credentials for the listener: give --tls-dir DIR (see 'virtconsole certs create'), or --listen-insecure for cleartext")}
	}
	creds, err := tlscreds.Load(o.TLSDir, tlscreds.RoleServer)
	if err != nil {
		return nil, cmdutil.WithCode(cmdutil.ExitTLS, err)
	}
	require := o.RequireClientCert || o.ClientCA != ""
	cfg := creds.ServerConfig(p, require)
	if o.ClientCA != "" {
		ca, err := tlscreds.LoadCAFile(o.ClientCA)
		if err != nil {
			return nil, cmdutil.WithCode(cmdutil.ExitTLS, err)
		}
		cfg.ClientCAs = ca.CAs
	} else if require && creds.CAs == nil {
		return nil, cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("--require-client-cert: no %s in %s; add it or give --client-ca FILE", "ca-cert.pem", o.TLSDir))
	}
	return cfg, nil
}
