package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// The sessions API, on the admin listener (--admin-listen):
//
//	GET    /v1/sessions       200, a JSON array of proxy.SessionInfo
//	DELETE /v1/sessions/{id}  204 ended; 404 no live session id
//	POST   /v1/grants         201 a share link minted (grants.go)
//	GET    /v1/vv?domain=NAME 200 a .vv file for the domain's SPICE console (vvapi.go)
//
// Only clients with a certificate from --admin-client-ca may use it, and
// that is checked before anything else, for every path and method: the
// TLS handshake asks for a certificate without insisting (so that the
// refusal is an HTTP answer the client can print, not a TLS alert), and
// the handler answers 401 when none was presented and 403 when it does
// not verify against --admin-client-ca for client authentication.
// crypto/tls has already checked that the client holds the certificate's
// key (its CertificateVerify message).

// Admin are the admin listener's flags.
type Admin struct {
	// Listen is where the sessions API is served; "" means nowhere.
	Listen string
	// ClientCA is the CA file whose client certificates may use it.
	ClientCA string

	grants *granter // POST /v1/grants; nil: no --grant-key
	vv     *vvMaker // GET /v1/vv
}

// addAdminFlags registers --admin-listen and --admin-client-ca.
func addAdminFlags(fl *pflag.FlagSet, o *Admin) {
	fl.StringVar(&o.Listen, "admin-listen", "", "serve the sessions API (list and end live sessions; 'virtconsole sessions') over TLS at `ADDR` (host:port; needs --admin-client-ca; default: off)")
	fl.StringVar(&o.ClientCA, "admin-client-ca", "", "the admin listener accepts only client certificates signed by the CA in `FILE` (401 without one, 403 with another)")
}

// sessionsAPI is what the API needs of the proxy.
type sessionsAPI interface {
	Sessions() []proxy.SessionInfo
	KillSession(id, by string) bool
}

// listener adds the admin listener serving p's sessions to d, with the
// server certificate of tlsDir; nothing without --admin-listen.
func (o *Admin) listener(d *daemon, p sessionsAPI, tlsDir string, policy tlscreds.Policy, log *slog.Logger) error {
	switch {
	case o.Listen == "" && o.ClientCA == "":
		return nil
	case o.Listen == "":
		return &cmdutil.FlagError{Err: errors.New("--admin-client-ca goes with --admin-listen ADDR")}
	case o.ClientCA == "":
		return &cmdutil.FlagError{Err: errors.New("--admin-listen needs --admin-client-ca FILE: the CA whose client certificates may list and end sessions")}
	case tlsDir == "":
		return &cmdutil.FlagError{Err: errors.New("--admin-listen needs --tls-dir DIR: the admin listener serves TLS with its server certificate")}
	}
	// Reloaded with the daemon's other credentials (SIGHUP, renewals).
	creds, err := tlscreds.NewReloader(func() (adminCreds, error) {
		creds, err := tlscreds.Load(tlsDir, tlscreds.RoleServer)
		if err != nil {
			return adminCreds{}, err // a *tlscreds.CheckError: ExitTLS
		}
		ca, err := tlscreds.LoadCAFile(o.ClientCA)
		if err != nil {
			return adminCreds{}, err
		}
		cfg := creds.ServerConfig(policy, false)
		cfg.ClientAuth = tls.RequestClientCert // verified by requireAdmin, which answers 401/403
		return adminCreds{cfg: cfg, roots: ca.CAs}, nil
	}, tlsDir, o.ClientCA)
	if err != nil {
		return err
	}
	addCredentials(d, "admin listener credentials", creds)
	cfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return creds.Current().cfg, nil }}
	roots := func() *x509.CertPool { return creds.Current().roots }
	d.sides = append(d.sides, side{name: "admin", flag: "--admin-listen", addr: o.Listen, tls: cfg,
		path: "/v1/sessions", handler: requireAdmin(roots, adminHandler(p, o.grants, o.vv, log), log)})
	return nil
}

// adminCreds are the admin listener's TLS config and the CAs of
// --admin-client-ca.
type adminCreds struct {
	cfg   *tls.Config
	roots *x509.CertPool
}

// requireAdmin answers 401 to a request without a client certificate and
// 403 to one whose certificate roots do not verify for client
// authentication, before next sees it.
func requireAdmin(roots func() *x509.CertPool, next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			refuseAdmin(w, r, log, http.StatusUnauthorized, "no client certificate: the sessions API needs one issued by the --admin-client-ca CA (give --tls-dir DIR with client-cert.pem and client-key.pem)")
			return
		}
		chain := r.TLS.PeerCertificates
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots(), Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			refuseAdmin(w, r, log, http.StatusForbidden, fmt.Sprintf("client certificate %q is not allowed: %s; use one issued by the --admin-client-ca CA",
				chain[0].Subject.String(), cmdutil.OneLine(err)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminName names the administrator of a request requireAdmin let
// through: its certificate's subject CN, or its whole subject when it has
// none.
func adminName(r *http.Request) string {
	c := r.TLS.PeerCertificates[0]
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

func refuseAdmin(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, reason string) {
	log.Warn("admin request refused", "peer", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", status, "reason", reason)
	http.Error(w, reason, status)
}

// adminHandler serves the sessions API behind requireAdmin.
func adminHandler(p sessionsAPI, g *granter, v *vvMaker, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/vv", func(w http.ResponseWriter, r *http.Request) { v.serve(w, r, adminName(r), log) })
	mux.HandleFunc("POST /v1/grants", func(w http.ResponseWriter, r *http.Request) { g.mint(w, r, adminName(r), log) })
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.Sessions()) // a failed write is the client's loss
	})
	mux.HandleFunc("DELETE /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, admin := r.PathValue("id"), adminName(r)
		if !p.KillSession(id, "admin "+admin) {
			http.Error(w, fmt.Sprintf("no live session %q: list them with 'virtconsole sessions list'", id), http.StatusNotFound)
			return
		}
		log.Info("session ended by an administrator", "id", id, "admin", admin, "peer", r.RemoteAddr)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
