// Command mkguest builds the tiny Linux guest "make demo" boots: it writes
// the initramfs (a static busybox with a shell on the serial port, built
// by the same code as the tests' guest) to -o and prints the kernel's
// path. It fails when linux-image-cloud-amd64 or busybox-static is not
// installed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
)

func main() {
	out := flag.String("o", "initrd.gz", "write the initramfs to `FILE`")
	flag.Parse()
	kernels, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(kernels) == 0 {
		fail("no /boot/vmlinuz-*-cloud-amd64; install linux-image-cloud-amd64")
	}
	sort.Strings(kernels)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		fail("no busybox; install busybox-static")
	}
	if p, err := filepath.EvalSymlinks(busybox); err == nil {
		busybox = p
	}
	img, err := qemutest.BuildInitramfs(busybox)
	if err != nil {
		fail(err.Error())
	}
	if err := os.WriteFile(*out, img, 0o644); err != nil {
		fail(err.Error())
	}
	fmt.Println(kernels[len(kernels)-1])
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "mkguest: "+msg)
	os.Exit(1)
}
