// Command virtconsole is a console client, local tunnel and websocket proxy
// for the consoles (VNC, SPICE, serial) of libvirt/QEMU virtual machines.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

//go:generate go run ../gendocs -out ../..

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cmdutil.System(), os.Args[1:])
	stop()
	os.Exit(code)
}
