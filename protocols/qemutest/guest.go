package qemutest

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// GuestReady is the line the tiny Linux guest (LinuxGuest) prints on its
// first serial port once its shell is about to start.
const GuestReady = "virtconsole-guest-ready"

// GuestPointer is the line the tiny Linux guest prints on its first
// serial port at the first event of a virtio pointer device (QEMU's
// virtio-mouse-pci or virtio-tablet-pci, as GraphicsGuest has): proof that
// a viewer's mouse reached the guest's kernel.
const GuestPointer = "virtconsole-pointer-event"

// GuestRestart is what the kernel prints on the serial port when it
// restarts the machine, quiet or not (pr_emerg). A guest booted with
// GuestVTCmdline restarts at Ctrl+Alt+Del on its keyboard (a VNC or SPICE
// viewer's), and QEMU boots it again.
const GuestRestart = "reboot: Restarting system"

// guestModules are the kernel modules, in load order, that give the guest
// virtio input devices and their /dev/input/event* nodes; the cloud kernel
// has neither built in (nor a PS/2 mouse driver).
var guestModules = []string{
	"kernel/drivers/virtio/virtio_ring.ko", // virtio needs it (modules.dep)
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/drivers/virtio/virtio_input.ko",
	"kernel/drivers/input/evdev.ko",
}

// GuestCmdline is the kernel command line the tiny Linux guest expects:
// kernel messages and the shell on the first serial port.
const GuestCmdline = "console=ttyS0 quiet"

// GuestVTCmdline is GuestCmdline plus the switch (guestTTY1) that makes
// the guest's /init also run a root shell on tty1: the VGA text console,
// whose input is the PS/2 keyboard (the cloud kernel has the VT, i8042
// and atkbd built in), so what a VNC or SPICE viewer types reaches it.
// Ctrl+Alt+Del restarts it (GuestRestart). ttyS0 behaves as with
// GuestCmdline. Boot it in a machine with a VGA device (StartVNC,
// StartSPICE; GraphicsGuest).
const GuestVTCmdline = GuestCmdline + " " + guestTTY1

// guestTTY1 is the kernel parameter /init looks for in /proc/cmdline. The
// kernel takes a dotted unknown parameter for a module's and ignores it.
const guestTTY1 = "virtconsole.tty1"

// GuestLoginCmdline is a kernel parameter that makes the guest's first
// serial port show a login prompt ("virtconsole-guest login: ", busybox's
// getty and login) instead of a shell; root logs in with no password, and
// the shell's prompt ends in "# ". ttyS0 still shows GuestReady first.
const GuestLoginCmdline = guestLogin

// GuestHostname is the guest's host name with GuestLoginCmdline: its login
// prompt is GuestHostname + " login: ".
const GuestHostname = "virtconsole-guest"

const guestLogin = "virtconsole.login"

// guestInit is the initramfs's /init. It runs the shell in a loop so that
// "exit" does not make init return (which panics the kernel).
const guestInit = `#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=vt100
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
if [ -f /lib/modules/order ]; then
	for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done
fi
for d in /sys/class/input/event*; do
	case "$(cat $d/device/name 2>/dev/null)" in
	*Virtio*Mouse*|*Virtio*Tablet*)
		(dd if=/dev/input/${d##*/} of=/dev/null bs=24 count=1 2>/dev/null &&
			echo "` + GuestPointer + `" > /dev/ttyS0) & ;;
	esac
done
if grep -qw ` + guestTTY1 + ` /proc/cmdline; then
	# Ctrl+Alt+Del on the keyboard restarts at once (the kernel prints
	# GuestRestart) instead of signalling init.
	echo 1 > /proc/sys/kernel/ctrl-alt-del
	# tty1, the VGA console, as its controlling terminal (setsid -c);
	# cttyhack would pick /dev/console, which is ttyS0.
	while true; do
		setsid -c sh -l <> /dev/tty1 >&0 2>&1
	done &
fi
echo "` + GuestReady + `" > /dev/ttyS0
if grep -qw ` + guestLogin + ` /proc/cmdline; then
	# A login prompt, as a distribution's serial getty gives: root, no
	# password (/etc/passwd).
	hostname ` + GuestHostname + `
	while true; do
		setsid getty -L 115200 ttyS0 vt100
	done
fi
while true; do
	setsid cttyhack sh -l < /dev/ttyS0 > /dev/ttyS0 2>&1
done
`

// guestVersion changes whenever the initramfs layout or /init changes, so
// that cached images of an older layout are not reused.
const guestVersion = 6

// LinuxGuest returns a Linux kernel and an initramfs that boot, in about
// five seconds under TCG with 128 MiB, to a root shell on the first serial
// port (ttyS0): boot them with GuestCmdline, wait for GuestReady, then type
// (send "\r" over a pty, "\n" over a socket). The kernel is Debian's
// linux-image-cloud-amd64 (serial console and devtmpfs built in), the
// initramfs holds a static busybox (busybox-static) and is built in Go,
// cached under os.TempDir() by busybox's modification time. Missing
// packages skip t, or fail it when CI is set.
func LinuxGuest(t testing.TB) (kernel, initrd string) {
	t.Helper()
	kernel = guestKernel(t)
	busybox := Need(t, "busybox")[0]
	if p, err := filepath.EvalSymlinks(busybox); err == nil {
		busybox = p
	}
	fi, err := os.Stat(busybox)
	if err != nil {
		t.Fatal(err)
	}
	// The modules must match the kernel: its version names their directory.
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	var modules []string
	for _, m := range guestModules {
		if p := filepath.Join("/lib/modules", release, m); fileExists(p) {
			modules = append(modules, p)
		}
	}
	initrd = filepath.Join(os.TempDir(), fmt.Sprintf("virtconsole-guest-v%d-%s-%d-%d-%d.cpio.gz",
		guestVersion, release, len(modules), fi.ModTime().UnixNano(), fi.Size()))
	if _, err := os.Stat(initrd); err == nil {
		return kernel, initrd
	}
	img, err := BuildInitramfs(busybox, modules...)
	if err != nil {
		t.Fatalf("build the guest's initramfs: %v", err)
	}
	// Write under a temporary name and rename: tests in other packages may
	// build the same file at the same time.
	tmp, err := os.CreateTemp(filepath.Dir(initrd), ".virtconsole-guest-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(img); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		t.Fatal(err)
	}
	tmp.Chmod(0o644)
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), initrd); err != nil {
		os.Remove(tmp.Name())
		t.Fatal(err)
	}
	return kernel, initrd
}

// guestKernel finds the newest /boot/vmlinuz-*-cloud-amd64.
func guestKernel(t testing.TB) string {
	t.Helper()
	found, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(found) == 0 {
		msg := "no /boot/vmlinuz-*-cloud-amd64: install the Debian package linux-image-cloud-amd64 (see .ci/install-deps)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	sort.Strings(found)
	k := found[len(found)-1]
	f, err := os.Open(k)
	if err != nil {
		t.Fatalf("kernel %s is not readable (Debian makes it root-only): %v", k, err)
	}
	f.Close()
	return k
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// BuildInitramfs returns a gzipped cpio ("newc") initramfs holding the
// static busybox binary at busyboxPath as /bin/busybox, a symlink per
// applet, a /dev/console node and the guest's /init, which loads modules
// (uncompressed .ko files, in the order given) from /lib/modules.
func BuildInitramfs(busyboxPath string, modules ...string) ([]byte, error) {
	if err := checkStatic(busyboxPath); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(busyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busyboxPath, err)
	}

	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	w := &cpioWriter{w: zw}
	dirs := map[string]bool{}
	mkdir := func(dir string) {
		var parts []string
		for d := dir; d != "." && d != "/" && d != ""; d = path.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			if !dirs[parts[i]] {
				dirs[parts[i]] = true
				w.entry(parts[i], 0o040755, nil, 0, 0)
			}
		}
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc"} {
		mkdir(d)
	}
	w.entry("dev/console", 0o020600, nil, 5, 1)
	// For busybox's login (GuestLoginCmdline): root, no password.
	w.entry("etc/passwd", 0o100644, []byte("root::0:0:root:/root:/bin/sh\n"), 0, 0)
	w.entry("etc/group", 0o100644, []byte("root:x:0:\n"), 0, 0)
	w.entry("bin/busybox", 0o100755, bin, 0, 0)
	w.entry("init", 0o100755, []byte(guestInit), 0, 0)
	if len(modules) > 0 {
		mkdir("lib/modules")
		var order []string
		for _, m := range modules {
			b, err := os.ReadFile(m)
			if err != nil {
				return nil, err
			}
			w.entry("lib/modules/"+filepath.Base(m), 0o100644, b, 0, 0)
			order = append(order, filepath.Base(m))
		}
		w.entry("lib/modules/order", 0o100644, []byte(strings.Join(order, "\n")+"\n"), 0, 0)
	}
	for _, line := range strings.Fields(string(out)) {
		name := path.Clean(strings.TrimPrefix(line, "/"))
		if path.Base(name) == "busybox" || name == "init" || strings.HasPrefix(name, "..") {
			continue // never overwrite the binary or /init
		}
		mkdir(path.Dir(name))
		w.entry(name, 0o120777, []byte("/bin/busybox"), 0, 0)
	}
	w.trailer()
	if w.err != nil {
		return nil, w.err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkStatic refuses a dynamically linked busybox: it would not run in an
// initramfs that holds no libc.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; install the Debian package busybox-static", p)
		}
	}
	return nil
}

// cpioWriter writes the "newc" cpio format (magic 070701) that the Linux
// kernel unpacks as an initramfs.
type cpioWriter struct {
	w   io.Writer
	ino int
	n   int64
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	var n int
	n, c.err = c.w.Write(b)
	c.n += int64(n)
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// entry writes one file, directory, symlink (data is the link target) or
// device node (rmajor, rminor).
func (c *cpioWriter) entry(name string, mode uint32, data []byte, rmajor, rminor uint32) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) trailer() {
	c.ino = -1 // the trailer has inode 0
	c.entry("TRAILER!!!", 0, nil, 0, 0)
}
