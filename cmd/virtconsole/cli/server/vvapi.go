package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/vv"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// GET /v1/vv?domain=NAME[&index=N]&gateway=https://HOST:PORT on the admin
// listener: the .vv file 'virtconsole vv DOMAIN' writes, made by the
// server: the token libvirt holds for the domain's SPICE console number
// index (single-use unless --single-use=false), the gateway's own
// description (its certificate, or with --spice-connect-passthrough the
// console's, and the SPICE password). gateway is the gateway's URL as
// viewers reach it (the server cannot know its public name). Bundled mode
// only ('virtconsole server', which reads libvirt): a proxy with a token
// file or a resolver has no token per domain to give (501).

// vvMaker serves GET /v1/vv.
type vvMaker struct {
	f       *cmdutil.Factory
	uris    []string                     // libvirt URIs; nil: not bundled mode
	gateway func() *proxy.ConnectGateway // nil result: no --spice-connect-listen
}

func (v *vvMaker) serve(w http.ResponseWriter, r *http.Request, admin string, log *slog.Logger) {
	q := r.URL.Query()
	domain := q.Get("domain")
	index, err := strconv.Atoi(q.Get("index"))
	if q.Get("index") == "" {
		index, err = 0, nil
	}
	var gw *proxy.ConnectGateway
	if v != nil && v.gateway != nil {
		gw = v.gateway()
	}
	switch {
	case domain == "":
		http.Error(w, "give domain=NAME (a libvirt name, UUID or ID) and gateway=https://HOST:PORT", http.StatusBadRequest)
		return
	case err != nil || index < 0:
		http.Error(w, fmt.Sprintf("index=%q: want the SPICE device's number, 0 for the first", q.Get("index")), http.StatusBadRequest)
		return
	case v == nil || len(v.uris) == 0:
		http.Error(w, "this proxy reads no libvirt (a token file or a resolver): .vv files by domain come from the bundled 'virtconsole server'; with a token, run 'virtconsole vv --token-file'", http.StatusNotImplemented)
		return
	case gw == nil:
		http.Error(w, "no SPICE CONNECT gateway here: start the server with --spice-connect-listen ADDR", http.StatusNotFound)
		return
	}
	gwURL, err := vv.GatewayURL(q.Get("gateway"), true)
	if err != nil {
		http.Error(w, "gateway="+cmdutil.OneLine(err), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	token, err := v.token(ctx, domain, index)
	if err != nil {
		status := http.StatusBadGateway
		if cmdutil.ExitCode(err) == cmdutil.ExitNotFound {
			status = http.StatusNotFound
		}
		http.Error(w, cmdutil.OneLine(err), status)
		return
	}
	info, err := gw.Info(ctx, token)
	if err != nil {
		status, reason := http.StatusBadGateway, "see the server's log"
		if e := (*proxy.Error)(nil); errors.As(err, &e) {
			status, reason = e.Status, e.Reason
		}
		log.Warn(".vv file not made", "domain", domain, "index", index, "err", err)
		http.Error(w, "the gateway cannot describe the console: "+reason, status)
		return
	}
	log.Info(".vv file given", "admin", admin, "peer", r.RemoteAddr, "domain", domain, "index", index,
		"token_id", resolver.TokenID(token), "passthrough", info.Passthrough)
	w.Header().Set("Content-Type", "application/x-virt-viewer")
	w.Header().Set("Content-Disposition", `attachment; filename="console.vv"`)
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, info.VVFile(gwURL, token, domain+" (release the cursor: shift+f12)"))
}

// token is the token libvirt holds for domain's SPICE console number
// index, from the first of the server's libvirt URIs that has it.
func (v *vvMaker) token(ctx context.Context, domain string, index int) (string, error) {
	var errs []error
	for _, uri := range v.uris {
		o := connect.DomainOptions{URI: uri, Index: index}
		tok, err := o.DomainToken(ctx, v.f, domain, protocols.KindSPICE)
		if err == nil {
			return tok, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}
