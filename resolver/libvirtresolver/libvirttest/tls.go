package libvirttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// TLSDir holds the certificates of the test libvirtd's QEMU and of its
// clients, in the cert-dir convention (ca-cert.pem, server-*.pem for QEMU,
// client-*.pem for virtconsole), all from one throwaway CA. Tests pass it
// to virtconsole as --connect-tls-dir. The server certificate is for
// 127.0.0.1 and localhost, where test domains listen.
const TLSDir = "/etc/pki/virtconsole-test"

// ClientPKIDir holds the client credentials for libvirt's TLS transport
// (TLSURI) under the names libvirt and go-libvirt look for with
// ?pkipath=: cacert.pem, clientcert.pem and clientkey.pem (root only).
const ClientPKIDir = TLSDir + "/libvirt-client"

// TLSURI reaches the test libvirtd over its TLS transport on loopback,
// as a proxy reaches a remote hypervisor: libvirtd verifies the client
// certificate of ClientPKIDir, the client verifies libvirtd's.
const TLSURI = "qemu+tls://127.0.0.1/system?pkipath=" + ClientPKIDir

// libvirtdTLSAddr is where libvirtd listens for TLSURI.
const libvirtdTLSAddr = "127.0.0.1:16514"

// libvirtdConf is libvirtd's configuration: its TLS listener, on loopback
// only, with TLSDir's server certificate; clients need a certificate from
// TLSDir's CA (TCP without TLS stays off: it would have no
// authentication).
const libvirtdConf = "/etc/libvirt/libvirtd.conf"

func libvirtdBlock() string {
	return confBegin + `
listen_tls = 1
listen_tcp = 0
listen_addr = "127.0.0.1"
key_file = "` + TLSDir + `/server-key.pem"
cert_file = "` + TLSDir + `/server-cert.pem"
ca_file = "` + TLSDir + `/ca-cert.pem"
` + confEnd + "\n"
}

// qemuConf is libvirt's QEMU driver configuration. TLS for QEMU's consoles
// can only be set there, for every domain of the host (TESTBED.md).
const qemuConf = "/etc/libvirt/qemu.conf"

// The block Start appends to qemu.conf: VeNCrypt x509 with client
// certificates for VNC, a TLS port for SPICE, and certificates for TCP
// chardevs with tls='yes' (chardev_tls stays off, so plain TCP chardevs
// stay plain). Between the markers, so it is added once and recognisable.
const (
	confBegin = "# BEGIN virtconsole tests (resolver/libvirtresolver/libvirttest)"
	confEnd   = "# END virtconsole tests"
)

func confBlock() string {
	return confBegin + `
vnc_tls = 1
vnc_tls_x509_cert_dir = "` + TLSDir + `"
vnc_tls_x509_verify = 1
spice_tls = 1
spice_tls_x509_cert_dir = "` + TLSDir + `"
chardev_tls_x509_cert_dir = "` + TLSDir + `"
chardev_tls_x509_verify = 1
` + confEnd + "\n"
}

// renewBefore is how long before expiry Start mints new certificates, so
// that a machine that keeps TLSDir never runs tests on expiring ones.
const renewBefore = 30 * 24 * time.Hour

// setUpTLS makes sure TLSDir holds valid certificates readable by QEMU and
// that qemu.conf and libvirtd.conf use them. It reports whether libvirtd
// must be restarted: to read a changed configuration, or certificates
// minted anew (its TLS listener keeps the ones it read at start).
func setUpTLS() (restart bool, err error) {
	if restart, err = ensureCerts(); err != nil {
		return false, err
	}
	for _, c := range []struct{ path, block string }{{qemuConf, confBlock()}, {libvirtdConf, libvirtdBlock()}} {
		added, err := appendOnce(c.path, c.block)
		if err != nil {
			return false, err
		}
		restart = restart || added
	}
	return restart, nil
}

// appendOnce appends block to the file at path unless it has the block's
// first line already, and reports whether it did.
func appendOnce(path, block string) (bool, error) {
	conf, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("libvirttest: read %s: %w", path, err)
	}
	first, _, _ := strings.Cut(block, "\n")
	if bytes.Contains(conf, []byte(first)) {
		return false, nil
	}
	if len(conf) > 0 && conf[len(conf)-1] != '\n' {
		conf = append(conf, '\n')
	}
	conf = append(conf, block...)
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return false, fmt.Errorf("libvirttest: write %s: %w", path, err)
	}
	return true, nil
}

// listensTLS reports whether libvirtd's TLS listener accepts connections.
func listensTLS() bool {
	c, err := net.DialTimeout("tcp", libvirtdTLSAddr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ensureCerts mints TLSDir's certificates when they are missing, fail a
// check, or expire within renewBefore (reporting whether it did), and
// gives QEMU (group libvirt-qemu) read access: directory 0750, files 0640.
func ensureCerts() (minted bool, err error) {
	// QEMU must be able to traverse the parent, which Create would make
	// 0700 if it were missing.
	if err := os.MkdirAll(filepath.Dir(TLSDir), 0o755); err != nil {
		return false, fmt.Errorf("libvirttest: %w", err)
	}
	if !certsOK() {
		err := tlscreds.Create(TLSDir, []string{"127.0.0.1", "localhost"}, tlscreds.CreateOptions{Force: true})
		if err != nil {
			return false, fmt.Errorf("libvirttest: %w", err)
		}
		minted = true
	}
	return minted, permitCerts()
}

// permitCerts sets TLSDir's modes and copies the client credentials to
// ClientPKIDir.
func permitCerts() error {
	gid := -1
	if g, err := user.LookupGroup("libvirt-qemu"); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := tlscreds.GrantGroup(TLSDir, gid); err != nil {
		return fmt.Errorf("libvirttest: %w", err)
	}
	// The same client credentials under libvirt's names, for TLSURI.
	if err := os.MkdirAll(ClientPKIDir, 0o700); err != nil {
		return fmt.Errorf("libvirttest: %w", err)
	}
	for src, dst := range map[string]string{
		tlscreds.CACertFile:            "cacert.pem",
		tlscreds.RoleClient.CertFile(): "clientcert.pem",
		tlscreds.RoleClient.KeyFile():  "clientkey.pem",
	} {
		b, err := os.ReadFile(filepath.Join(TLSDir, src))
		if err != nil {
			return fmt.Errorf("libvirttest: %w", err)
		}
		if err := os.WriteFile(filepath.Join(ClientPKIDir, dst), b, 0o600); err != nil {
			return fmt.Errorf("libvirttest: %w", err)
		}
	}
	return nil
}

// certsOK reports whether both roles' files in TLSDir pass every check
// a renewBefore from now.
func certsOK() bool {
	later := time.Now().Add(renewBefore)
	for _, role := range []tlscreds.Role{tlscreds.RoleServer, tlscreds.RoleClient} {
		for _, r := range tlscreds.Check(TLSDir, role, later) {
			if r.Err != nil || r.Skipped {
				return false
			}
		}
	}
	return true
}
