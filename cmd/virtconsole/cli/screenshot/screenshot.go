// Package screenshot implements "virtconsole screenshot": a VM's VNC
// screen saved as PNG, by a shared RFB viewer that disturbs no one.
package screenshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
	"github.com/virtconsole/virtconsole/resolver"
)

// Options are the flags of "virtconsole screenshot".
type Options struct {
	IO    *cmdutil.IOStreams
	Route connect.Options

	Output     string
	WaitChange string
	WaitStable time.Duration
	Timeout    time.Duration
	JSON       bool
}

// NewCmdScreenshot returns "virtconsole screenshot". runF replaces the
// run function in tests; nil runs the command.
func NewCmdScreenshot(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "screenshot [DOMAIN] -o FILE.png",
		Short: "Save a VM's VNC screen as a PNG image",
		Long: `Save the screen of a virtual machine's VNC console as a PNG image (-o -
writes it to standard output).

virtconsole connects as a VNC viewer that asks for a shared session, so a
viewer already on the console stays connected and sees nothing happen. It
asks for the whole screen once (Raw encoding) and writes it as it is.

--wait-change FILE.png waits until the screen differs from that image (a
screenshot taken earlier), e.g. for a boot screen to go away; --wait-stable
DURATION waits until the screen has not changed for that long, e.g. for a
boot to settle. With both, the screen must first change, then settle.
--timeout bounds the whole command, connecting included; when it expires the
command fails with exit code 8 and writes no image.

The console is reached the three ways the other client commands reach it:
DOMAIN on a libvirt host (directly, or through --proxy with the token read
from libvirt), --proxy with --token-file, or --target HOST:PORT straight to
QEMU with --connect-tls-dir (or --connect-insecure).

` + cmdutil.ExitCodesLine,
		Example: `  # on a hypervisor: the screen of myvm
  virtconsole screenshot myvm -o shot.png

  # through a proxy with a token file
  virtconsole screenshot --proxy wss://proxy.example:6443 --ca-file ./ca-cert.pem --token-file ./vnctoken -o shot.png

  # through a proxy, the token read from libvirt
  virtconsole screenshot myvm -c qemu+ssh://hv1.example/system --proxy wss://proxy.example:6443 -o shot.png

  # direct to QEMU's VeNCrypt port with client certificates
  virtconsole screenshot --target 10.0.0.5:5901 --connect-tls-dir /etc/pki/qemu -o shot.png

  # wait (at most 5 minutes) for the screen to change from before.png, then settle for 3 s
  virtconsole screenshot myvm --wait-change before.png --wait-stable 3s --timeout 5m -o after.png

  # to standard output; or the size as JSON
  virtconsole screenshot myvm -o - | display -
  virtconsole screenshot myvm -o shot.png --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Route.Check(f, cmd, args); err != nil {
				return err
			}
			if opts.Output == "" {
				return &cmdutil.FlagError{Err: errors.New("give -o FILE.png (or -o - for standard output)")}
			}
			if opts.JSON && opts.Output == "-" {
				return &cmdutil.FlagError{Err: errors.New("--json prints to standard output: give -o FILE.png, not -o -")}
			}
			if opts.Timeout <= 0 || opts.WaitStable < 0 {
				return &cmdutil.FlagError{Err: errors.New("--timeout must be positive and --wait-stable not negative, e.g. --timeout 30s --wait-stable 2s")}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runScreenshot(cmd.Context(), f, opts)
		},
	}
	connect.AddFlags(cmd, &opts.Route, protocols.KindVNC)
	fl := cmd.Flags()
	fl.StringVarP(&opts.Output, "output", "o", "", "write the PNG image to `FILE` (- for standard output)")
	fl.StringVar(&opts.WaitChange, "wait-change", "", "first wait until the screen differs from the PNG image in `FILE`")
	fl.DurationVar(&opts.WaitStable, "wait-stable", 0, "first wait until the screen has not changed for `DURATION`")
	fl.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "give up after `DURATION` (exit code 8)")
	fl.BoolVar(&opts.JSON, "json", false, `print what was written as JSON ({"path":…,"width":…,"height":…,"updates":…})`)
	return cmd
}

// result is the --json output.
type result struct {
	Path    string `json:"path"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Desktop string `json:"desktop"`
	// Updates counts the framebuffer updates read (waiting reads more).
	Updates int `json:"updates"`
}

func runScreenshot(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	var ref image.Image
	if opts.WaitChange != "" {
		b, err := os.ReadFile(opts.WaitChange)
		if err == nil {
			ref, err = png.Decode(bytes.NewReader(b))
		}
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("--wait-change %s: %v; give a PNG image, e.g. an earlier screenshot", opts.WaitChange, err)}
		}
	}
	deadline := time.Now().Add(opts.Timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	img, res, err := capture(ctx, f, opts, ref, deadline)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded || errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline) {
			return &cmdutil.TimeoutError{Err: fmt.Errorf("screenshot: %s within --timeout %v; raise --timeout", waitedFor(opts), opts.Timeout)}
		}
		return err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	if opts.Output == "-" {
		_, err := opts.IO.Out.Write(buf.Bytes())
		return err
	}
	if err := writeFile(opts.Output, buf.Bytes()); err != nil {
		return &cmdutil.FlagError{Err: fmt.Errorf("-o %s: %v", opts.Output, err)}
	}
	if opts.JSON {
		res.Path = opts.Output
		return json.NewEncoder(opts.IO.Out).Encode(res)
	}
	return nil
}

// waitedFor says what did not happen in time.
func waitedFor(opts *Options) string {
	switch {
	case opts.WaitChange != "" && opts.WaitStable > 0:
		return fmt.Sprintf("the screen did not change from %s and then stay unchanged for %v", opts.WaitChange, opts.WaitStable)
	case opts.WaitChange != "":
		return "the screen did not change from " + opts.WaitChange
	case opts.WaitStable > 0:
		return fmt.Sprintf("the screen did not stay unchanged for %v", opts.WaitStable)
	}
	return "no complete screen came"
}

// capture connects as a shared viewer and returns the screen once the
// waits are over.
func capture(ctx context.Context, f *cmdutil.Factory, opts *Options, ref image.Image, deadline time.Time) (image.Image, result, error) {
	route, err := opts.Route.Resolve(ctx, f, protocols.KindVNC)
	if err != nil {
		return nil, result{}, err
	}
	defer route.Close()
	conn, err := route.DialViewer(ctx)
	if err != nil {
		return nil, result{}, err
	}
	defer conn.Close()
	c, err := vncclient.Handshake(ctx, conn, vncclient.Options{})
	if err != nil {
		return nil, result{}, &cmdutil.DialError{Err: err}
	}
	c.SetDeadline(deadline)
	// Ctrl+C: fail pending I/O at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	lost := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		return &cmdutil.LostError{Err: err}
	}
	if err := c.Capture(); err != nil {
		return nil, result{}, lost(err)
	}
	if ref != nil {
		for same(c.Image(), ref) {
			if err := c.Next(time.Time{}); err != nil {
				return nil, result{}, lost(err)
			}
		}
	}
	for opts.WaitStable > 0 {
		err := c.Next(time.Now().Add(opts.WaitStable))
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(deadline) && ctx.Err() == nil {
			break // nothing changed for WaitStable
		}
		if err != nil {
			return nil, result{}, lost(err)
		}
	}
	return c.Image(), result{Width: c.Width(), Height: c.Height(), Desktop: c.Name, Updates: c.Updates()}, nil
}

// same reports whether a and b are the same image, pixel for pixel.
func same(a *image.RGBA, b image.Image) bool {
	if a.Bounds().Size() != b.Bounds().Size() {
		return false
	}
	o := b.Bounds().Min
	for y := 0; y < a.Rect.Dy(); y++ {
		for x := 0; x < a.Rect.Dx(); x++ {
			r, g, bl, _ := b.At(o.X+x, o.Y+y).RGBA()
			p := a.RGBAAt(x, y)
			if uint8(r>>8) != p.R || uint8(g>>8) != p.G || uint8(bl>>8) != p.B {
				return false
			}
		}
	}
	return true
}

// writeFile writes data to path through a temporary file in its
// directory, so that a reader never sees half an image (a device such as
// /dev/null is written, not replaced).
func writeFile(path string, data []byte) error {
	return resolver.WriteFileAtomicMode(path, data, 0o644)
}
