package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// VVFile is the .vv file (virt-viewer's connection file) that opens
// token's console through the gateway gw (https://HOST:PORT as viewers
// reach it) with info: virt-viewer's key file format (GKeyFile), in
// which a value's newlines are written as \n. The token is the proxy
// URL's password (EncodeConnectToken); the file holds a password= only
// when info has one (passthrough).
func (info ConnectInfo) VVFile(gw *url.URL, token, title string) string {
	pu := url.URL{Scheme: gw.Scheme, Host: gw.Host, User: url.UserPassword(ConnectUser, EncodeConnectToken(token))}
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, keyFileEscape(v)) }
	b.WriteString("[virt-viewer]\n")
	line("type", "spice")
	line("host", info.Host)
	line("tls-port", fmt.Sprint(info.TLSPort))
	line("proxy", pu.String())
	if info.Password != "" {
		line("password", info.Password) // passthrough: the proxy cannot supply it
	}
	if info.CA != "" {
		line("ca", info.CA)
	}
	line("host-subject", info.HostSubject)
	line("secure-channels", "all")
	line("delete-this-file", "1")
	line("title", title)
	line("toggle-fullscreen", "shift+f11")
	line("release-cursor", "shift+f12")
	line("secure-attention", "ctrl+alt+end")
	return b.String()
}

// keyFileEscape escapes a GKeyFile value: backslash, newline, carriage
// return and tab, and a leading space.
func keyFileEscape(v string) string {
	v = strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(v)
	if strings.HasPrefix(v, " ") {
		v = `\s` + v[1:]
	}
	return v
}

// ServeVV answers a browser page's POST for the .vv file of the token in
// its Authorization: Bearer header (never in the URL), for the gateway as
// viewers reach it at gw: the download link of a console (the web
// package's vv.html, whose link carries the token in its fragment). The
// token is checked (an unknown one counts toward the refused-token limit,
// a console that is not SPICE is refused) but not spent: the .vv file
// spends it. A request from another site's page (Origin) is 403.
func (g *ConnectGateway) ServeVV(w http.ResponseWriter, r *http.Request, gw *url.URL) {
	p := g.Proxy
	log := p.logger().With("peer", r.RemoteAddr, "via", "vv")
	if !p.checkOrigin(r) {
		p.refuse(w, r, log, fail(http.StatusForbidden, nil, "origin %q is not allowed; add it with --allowed-origin", r.Header.Get("Origin")))
		return
	}
	host := p.clientAddr(r)
	token := Token(r)
	if token == "" {
		p.refuse(w, r, log, p.refused(host, fail(http.StatusUnauthorized, nil, "no token: send Authorization: Bearer")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	var info ConnectInfo
	var herr *Error
	if g.Passthrough {
		info, _, herr = g.consoleInfo(ctx, token)
	} else {
		info, herr = g.checkedInfo(ctx, token)
	}
	if herr != nil {
		p.refuseUnknown(w, r, log, host, herr)
		return
	}
	log.Info(".vv file given", "token_id", tokenID(token), "passthrough", info.Passthrough)
	w.Header().Set("Content-Type", "application/x-virt-viewer")
	w.Header().Set("Content-Disposition", `attachment; filename="console.vv"`)
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, info.VVFile(gw, token, "SPICE console (release the cursor: shift+f12)"))
}

// checkedInfo is a terminating gateway's info for token, which must open
// a SPICE console (it is resolved, not spent).
func (g *ConnectGateway) checkedInfo(ctx context.Context, token string) (ConnectInfo, *Error) {
	target, herr := g.Proxy.resolve(ctx, token)
	if herr != nil {
		return ConnectInfo{}, herr
	}
	if target.Kind != protocols.KindSPICE {
		return ConnectInfo{}, fail(http.StatusBadRequest, nil, "the token does not open a SPICE console: a .vv file is for SPICE")
	}
	i, err := g.info()
	if err != nil {
		return i, fail(http.StatusInternalServerError, err, "the gateway's certificate cannot be described; see its log")
	}
	return i, nil
}

// refuseUnknown refuses r with herr, an unknown token (404) counting
// against host's refused-token limit as it does on the websocket.
func (p *Proxy) refuseUnknown(w http.ResponseWriter, r *http.Request, log *slog.Logger, host string, herr *Error) {
	if herr.Status == http.StatusNotFound {
		herr = p.refused(host, herr)
	}
	p.refuse(w, r, log, herr)
}
