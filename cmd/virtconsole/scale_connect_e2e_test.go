package main

// Scale-out of the SPICE CONNECT gateway (issues 15 and 17): remote-viewer
// opens a .vv file whose proxy is HAProxy's spice-connect frontend in
// front of three replicas' gateways; every channel's CONNECT carries the
// same credential and lands on one replica, which holds the session.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// TestScaleOutSPICEConnect: three replicas of "virtconsole server" with
// --spice-connect-listen over one libvirtd, behind haproxy.cfg as
// shipped; "virtconsole vv DOMAIN --gateway https://BALANCER" (the token
// read from libvirt, single-use) and the real remote-viewer under Xvfb.
// Its main, display, inputs and cursor channels all open on one replica,
// under one session; the other replicas see none; the replicas log the
// viewer's address from the PROXY header, not the balancer's.
func TestScaleOutSPICEConnect(t *testing.T) {
	bins := qemutest.Need(t, "xvfb-run", "remote-viewer", "unshare")
	d := libvirttest.Start(t)
	dom := enabledDomain(t, d, libvirttest.DomainOptions{SPICE: true}, "spice")
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	var replicas []*daemon
	var addrs, gateways []string
	for range 3 {
		r := startDaemon(t, append(replicaArgs(dir), gatewayFlags...)...)
		replicas, addrs, gateways = append(replicas, r), append(addrs, r.addr), append(gateways, gatewayAddr(t, r))
	}
	_, front, hlog := balancerWithGateway(t, dir, addrs, gateways)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("HAProxy's log:\n%s", hlog.String())
		}
	})
	// "vv" asks the gateway, through the balancer, for its certificate's
	// CA and subject: it succeeds once HAProxy has the gateways up.
	out := filepath.Join(t.TempDir(), "console.vv")
	waitFor(t, 30*time.Second, "vv through the balancer", func() bool {
		return run(t, nil, "vv", dom.Name, "--gateway", "https://"+front, "--ca-file", ca, "-o", out).code == 0
	})
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	before := sessionStarts(replicas)
	x := viewerThroughGateway(t, bins[1], ca, vvCopy(t, string(raw)), "")
	holder := oneReplica(t, x, replicas, before)
	for _, l := range strings.Split(replicas[holder].log.String(), "\n") {
		if strings.Contains(l, `msg="session start"`) && (!strings.Contains(l, "via=connect") || !strings.Contains(l, "peer=127.0.0.1:")) {
			t.Errorf("a channel not through the gateway, or not from the viewer's address (PROXY header): %s", l)
		}
	}
	stopViewer(t, x)
}
