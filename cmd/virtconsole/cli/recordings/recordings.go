// Package recordings implements "virtconsole recordings": the session
// recordings the proxy writes with --record-dir (package tunnel/record):
// keygen, list, verify and play.
package recordings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/record"
)

// Options are the flags of the "recordings" subcommands.
type Options struct {
	IO *cmdutil.IOStreams

	Out   string        // keygen, export -o
	Key   string        // list, verify --key
	JSON  bool          // list, export --json
	Speed float64       // play --speed
	Idle  time.Duration // play --idle-time-limit
	At    string        // export --at
	FPS   float64       // export --fps
	Arg   string        // the DIR or FILE argument
}

// NewCmdRecordings returns "virtconsole recordings" with its
// subcommands. runF replaces their run functions in tests when not nil.
func NewCmdRecordings(f *cmdutil.Factory, runF func(ctx context.Context, cmd string, opts *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "recordings <command>",
		Short: "Make the recording key; list, verify, play and export session recordings",
		Long: `Work with the session recordings that "virtconsole server" and "server proxy"
write with --record-dir DIR: serial and console sessions as asciicast v2
files (they play in asciinema), VNC sessions as RFB recordings (export makes
a video or PNGs of them), SPICE sessions as metadata only (JSON lines: who,
when, which channel, bytes each way), each closed with a manifest signed with the
Ed25519 key of --record-key (its SHA-256, size, session and times).

A recording is DIR/START-KIND-SESSIONID.cast (serial, console), .rfb (VNC)
or .jsonl (SPICE); its manifest is the same name with .manifest.json appended. A recording without a manifest was cut short
(the proxy was killed or crashed): "verify" says it is incomplete (exit 9),
and it still plays up to its last complete event.

` + cmdutil.ExitCodesLine,
		Example: `  virtconsole recordings keygen -o /etc/virtconsole/record-key.pem
  virtconsole recordings list /var/lib/virtconsole/recordings
  virtconsole recordings verify /var/lib/virtconsole/recordings/20261201T120000Z-serial-3f46e0a823f092c8.cast --key /etc/virtconsole/record-key.pub.pem
  virtconsole recordings play /var/lib/virtconsole/recordings/20261201T120000Z-serial-3f46e0a823f092c8.cast --speed 2
  virtconsole recordings export /var/lib/virtconsole/recordings/20261201T120000Z-vnc-9c0e1d2b3a4f5e6d.rfb -o session.mp4`,
		Args: cobra.NoArgs,
	}
	run := func(name string) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				opts.Arg = args[0]
			}
			if runF != nil {
				return runF(c.Context(), name, opts)
			}
			switch name {
			case "keygen":
				return runKeygen(opts)
			case "list":
				return runList(opts)
			case "verify":
				return runVerify(opts)
			case "export":
				return runExport(c.Context(), opts)
			}
			return runPlay(c.Context(), opts)
		}
	}

	keygen := &cobra.Command{
		Use:   "keygen -o FILE",
		Short: "Make a recording signing key",
		Long: `Make an Ed25519 key for signing recordings' manifests: the private key in FILE
(PEM PKCS#8, mode 0600; give it to the proxy's --record-key) and its public
key beside it, FILE without ".pem" and with ".pub.pem" (give it to whoever
verifies recordings: "recordings verify --key"). Neither file is overwritten.

Keep the public key away from the recordings' directory: verify trusts the
key it is given, never one found beside a recording, so that whoever can
rewrite the recordings cannot sign forged ones.`,
		Example: `  virtconsole recordings keygen -o /etc/virtconsole/record-key.pem`,
		Args:    cobra.NoArgs,
		RunE:    run("keygen"),
	}
	keygen.Flags().StringVarP(&opts.Out, "output", "o", "", "write the private key to `FILE` (and the public key to FILE.pub.pem)")
	_ = keygen.MarkFlagRequired("output")

	list := &cobra.Command{
		Use:   "list DIR",
		Short: "List the recordings in a directory",
		Long: `List the recordings (*.cast, *.rfb, *.jsonl) in DIR, oldest first: file, console kind,
console (domain or address), client, start (UTC), duration (to the last
event), size and status.

The status, with --key (the public key, or the private key): verified,
invalid (with why) or incomplete. Without --key it only says what is there:
signed, unsigned (the proxy had no --record-key) or incomplete (no
manifest), which anyone able to write DIR could fake: verify with --key.

With --json: an array of objects with the keys file, kind, console, domain,
client, session_id, start (RFC 3339), duration_seconds, size, status and
reason (the empty ones left out).`,
		Example: `  virtconsole recordings list /var/lib/virtconsole/recordings
  virtconsole recordings list /var/lib/virtconsole/recordings --key /etc/virtconsole/record-key.pub.pem --json`,
		Args: cobra.ExactArgs(1),
		RunE: run("list"),
	}
	list.Flags().BoolVar(&opts.JSON, "json", false, "print the recordings as a JSON array")
	list.Flags().StringVar(&opts.Key, "key", "", "verify each recording with the public (or private) key in `FILE`")

	verify := &cobra.Command{
		Use:   "verify FILE --key PUBFILE",
		Short: "Verify a recording against its signed manifest",
		Long: `Verify the recording FILE: its manifest (FILE.manifest.json) must be signed by
the key in PUBFILE (the public key "recordings keygen" wrote, or the private
key, from which the public one is derived), and the recording's SHA-256 and
size must be the ones the manifest says.

Exits 0 and prints "verified" when they are; 8 when the recording is
incomplete (no manifest: the proxy was stopped before the session ended; it
still plays up to its last complete event); 9 with one line saying what
does not match otherwise (a changed byte, a changed manifest, another key,
an unsigned manifest).`,
		Example: `  virtconsole recordings verify rec/20261201T120000Z-serial-3f46e0a823f092c8.cast --key record-key.pub.pem`,
		Args:    cobra.ExactArgs(1),
		RunE:    run("verify"),
	}
	verify.Flags().StringVar(&opts.Key, "key", "", "the public (or private) key in `FILE` that signed the manifest")
	_ = verify.MarkFlagRequired("key")

	play := &cobra.Command{
		Use:   "play FILE",
		Short: "Play a serial recording in the terminal",
		Long: `Play the serial recording FILE in the terminal at its real pace (--speed N:
N times faster), with pauses longer than --idle-time-limit cut to it, like
asciinema play. Only what the console printed is played (not the recorded
input, which the console echoed anyway). A recording cut short plays up to
its last complete event. Ctrl-C stops.

Any asciicast v2 player plays it too: asciinema play FILE, asciinema cat FILE.`,
		Example: `  virtconsole recordings play rec/20261201T120000Z-serial-3f46e0a823f092c8.cast
  virtconsole recordings play rec/20261201T120000Z-serial-3f46e0a823f092c8.cast --speed 10 --idle-time-limit 0.5s`,
		Args: cobra.ExactArgs(1),
		RunE: run("play"),
	}
	play.Flags().Float64Var(&opts.Speed, "speed", 1, "play `N` times faster than real time")
	play.Flags().DurationVar(&opts.Idle, "idle-time-limit", 2*time.Second, "cut pauses longer than `DURATION` to it (0: keep them)")

	export := &cobra.Command{
		Use:   "export FILE -o OUT",
		Short: "Export a VNC recording to a video, PNG frames or one screenshot",
		Long: `Decode the VNC recording FILE (Raw, CopyRect, Hextile, ZRLE, in any true-colour
pixel format: the encodings the proxy lets a recorded viewer use) and write
what the viewer saw:

  -o OUT.mp4, .webm, .mkv or .gif   a video at --fps frames a second, encoded
                                     by ffmpeg (it must be installed), as long
                                     as the session (its manifest's start to
                                     end; without one, to the last record)
  -o DIR/                           the same frames as DIR/frame-000000.png, …
                                     (no ffmpeg needed)
  --at T -o OUT.png                 the screen at T into the session (12.5s,
                                     1m3s, or seconds)

A frame shows the screen once everything recorded before its time had
arrived. A recording cut short (no manifest) exports up to its last
complete record. The video keeps the first frame's size: after a resolution
change, frames are cropped or padded with black.

With --json, prints an object with the keys output, kind (png, frames or
video), frames, fps, duration_seconds, width and height.`,
		Example: `  virtconsole recordings export rec/20261201T120000Z-vnc-9c0e1d2b3a4f5e6d.rfb -o session.mp4
  virtconsole recordings export rec/20261201T120000Z-vnc-9c0e1d2b3a4f5e6d.rfb --fps 2 -o frames/
  virtconsole recordings export rec/20261201T120000Z-vnc-9c0e1d2b3a4f5e6d.rfb --at 12.5s -o shot.png`,
		Args: cobra.ExactArgs(1),
		RunE: run("export"),
	}
	export.Flags().StringVarP(&opts.Out, "output", "o", "", "write to `OUT`: a video (.mp4, .webm, .mkv, .gif), a directory/ of PNG frames, or a PNG with --at")
	export.Flags().StringVar(&opts.At, "at", "", "export the screen at `TIME` into the session (12.5s) as one PNG")
	export.Flags().Float64Var(&opts.FPS, "fps", 10, "`N` frames a second of a video or of PNG frames")
	export.Flags().BoolVar(&opts.JSON, "json", false, "print what was written as a JSON object")

	cmd.AddCommand(keygen, list, verify, play, export)
	return cmd
}

func runKeygen(opts *Options) error {
	k, err := record.GenerateKey(opts.Out)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	_, err = fmt.Fprintf(opts.IO.Out, "wrote %s (private key, 0600: --record-key) and %s (public key: recordings verify --key); key ID %s\n",
		opts.Out, record.PublicKeyPath(opts.Out), k.ID())
	return err
}

func loadKey(path string) (*record.Key, error) {
	if path == "" {
		return nil, nil
	}
	k, err := record.LoadKey(path)
	if err != nil {
		return nil, &cmdutil.FlagError{Err: err}
	}
	return k, nil
}

func runList(opts *Options) error {
	key, err := loadKey(opts.Key)
	if err != nil {
		return err
	}
	infos, err := record.List(opts.Arg, key)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	if opts.JSON {
		if infos == nil {
			infos = []record.Info{}
		}
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	if len(infos) == 0 {
		_, err := fmt.Fprintf(opts.IO.Out, "no recordings in %s\n", opts.Arg)
		return err
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tKIND\tCONSOLE\tCLIENT\tSTART\tDURATION\tSIZE\tSTATUS")
	for _, in := range infos {
		console := in.Console
		if in.Domain != "" {
			console = in.Domain
		}
		status := in.Status
		if in.Reason != "" && in.Status == record.StatusInvalid {
			status += ": " + in.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", in.File, orDash(in.Kind), orDash(console), orDash(in.Client),
			in.Start.Format(time.RFC3339), in.Duration.Round(time.Second), in.Size, status)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runVerify(opts *Options) error {
	key, err := loadKey(opts.Key)
	if err != nil {
		return err
	}
	v, err := record.VerifyFile(opts.Arg, key)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	switch v.Status {
	case record.StatusIncomplete:
		return cmdutil.WithCode(cmdutil.ExitIncomplete, fmt.Errorf("%s: incomplete: %s", opts.Arg, v.Reason))
	case record.StatusInvalid:
		return cmdutil.WithCode(cmdutil.ExitInvalid, fmt.Errorf("%s: verification failed: %s", opts.Arg, v.Reason))
	}
	m := v.Manifest
	_, err = fmt.Fprintf(opts.IO.Out, "%s: verified: signed by key %s; session %s, %s %s, from %s to %s, %d bytes, sha256 %s\n",
		opts.Arg, m.KeyID, m.Session.SessionID, m.Session.Kind, m.Session.Console, m.Start.Format(time.RFC3339),
		m.End.Format(time.RFC3339), m.Size, m.SHA256)
	return err
}

func runPlay(ctx context.Context, opts *Options) error {
	if opts.Speed <= 0 {
		return &cmdutil.FlagError{Err: errors.New("--speed must be more than 0")}
	}
	f, err := os.Open(opts.Arg)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	defer f.Close()
	rd, err := record.NewReader(f)
	if err != nil {
		if strings.HasSuffix(opts.Arg, ".rfb") {
			err = errors.New("a VNC recording: 'recordings export FILE -o out.mp4' makes a video of it")
		}
		return &cmdutil.FlagError{Err: fmt.Errorf("%s: %w", opts.Arg, err)}
	}
	return play(ctx, opts.IO.Out, rd, opts.Speed, opts.Idle)
}

// play writes rd's output events to w at their pace divided by speed,
// each pause at most idle (0: any).
func play(ctx context.Context, w io.Writer, rd *record.Reader, speed float64, idle time.Duration) error {
	var prev float64
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Code != "o" {
			continue
		}
		wait := time.Duration((e.Time - prev) * float64(time.Second))
		prev = e.Time
		if idle > 0 {
			wait = min(wait, idle)
		}
		if wait = time.Duration(float64(wait) / speed); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err := io.WriteString(w, e.Data); err != nil {
			return err
		}
	}
}
