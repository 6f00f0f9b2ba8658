package proxy

import (
	"fmt"
	"net/url"
	"strings"
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
