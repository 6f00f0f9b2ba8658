package recordings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/record"
)

// videoExts are the -o extensions ffmpeg encodes to.
var videoExts = map[string]bool{".mp4": true, ".gif": true, ".webm": true, ".mkv": true}

// parseAt reads --at: a Go duration ("12.5s", "1m3s") or seconds ("12.5").
func parseAt(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--at %q: want a time into the recording such as 12.5s or 1m3s", s)
	}
	return d, nil
}

// exportResult is what export prints (--json: as an object).
type exportResult struct {
	Output  string  `json:"output"`
	Kind    string  `json:"kind"` // "png", "frames" or "video"
	Frames  int     `json:"frames"`
	FPS     float64 `json:"fps,omitempty"`
	Seconds float64 `json:"duration_seconds"`
	Width   int     `json:"width"`
	Height  int     `json:"height"`
}

func runExport(ctx context.Context, opts *Options) error {
	if opts.Out == "" {
		return &cmdutil.FlagError{Err: errors.New("-o is required: out.mp4, out.gif, a directory/ for PNG frames, or shot.png with --at")}
	}
	if opts.FPS <= 0 || opts.FPS > 120 {
		return &cmdutil.FlagError{Err: fmt.Errorf("--fps %g: want more than 0, at most 120", opts.FPS)}
	}
	at := time.Duration(-1)
	if opts.At != "" {
		d, err := parseAt(opts.At)
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		at = d
	}
	ext := strings.ToLower(filepath.Ext(opts.Out))
	fi, statErr := os.Stat(opts.Out)
	dir := strings.HasSuffix(opts.Out, "/") || statErr == nil && fi.IsDir()
	switch {
	case at >= 0 && ext != ".png":
		return &cmdutil.FlagError{Err: fmt.Errorf("--at writes one PNG: give -o FILE.png, not %s", opts.Out)}
	case at < 0 && !dir && !videoExts[ext]:
		return &cmdutil.FlagError{Err: fmt.Errorf("-o %s: want a video (.mp4, .gif, .webm, .mkv), a directory/ for PNG frames, or FILE.png with --at", opts.Out)}
	}
	f, err := os.Open(opts.Arg)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	defer f.Close()
	rd, err := record.NewRFBReader(f)
	if err != nil {
		return &cmdutil.FlagError{Err: fmt.Errorf("%s: %w (serial recordings play with 'recordings play')", opts.Arg, err)}
	}
	// The session's duration, from the manifest when there is one (not
	// verified: it only sets how long the video is).
	var until time.Duration
	if b, err := os.ReadFile(opts.Arg + record.ManifestSuffix); err == nil {
		var m record.Manifest
		if json.Unmarshal(b, &m) == nil && m.End.After(m.Start) {
			until = m.End.Sub(m.Start)
		}
	}
	res := exportResult{Output: opts.Out, FPS: opts.FPS}
	var emit func(time.Duration, *image.RGBA) error
	var v *video
	switch {
	case at >= 0:
		res.Kind, res.FPS = "png", 0
		emit = func(t time.Duration, img *image.RGBA) error {
			res.Frames, res.Seconds, res.Width, res.Height = 1, t.Seconds(), img.Rect.Dx(), img.Rect.Dy()
			return writePNG(opts.Out, img)
		}
	case dir:
		res.Kind = "frames"
		if err := os.MkdirAll(opts.Out, 0o755); err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		emit = func(t time.Duration, img *image.RGBA) error {
			res.Width, res.Height = img.Rect.Dx(), img.Rect.Dy()
			res.Frames++
			return writePNG(filepath.Join(opts.Out, fmt.Sprintf("frame-%06d.png", res.Frames-1)), img)
		}
	default:
		res.Kind = "video"
		v = &video{out: opts.Out, fps: opts.FPS, ext: ext}
		defer v.abort()
		emit = func(t time.Duration, img *image.RGBA) error {
			res.Frames++
			return v.frame(ctx, img)
		}
	}
	var emitErr error // writing the output's, as opposed to the recording's
	if err := record.Frames(rd, opts.FPS, until, at, func(t time.Duration, img *image.RGBA) error {
		emitErr = emit(t, img)
		return emitErr
	}); err != nil {
		if emitErr != nil {
			return fmt.Errorf("%s: cannot export: %w", opts.Arg, err)
		}
		// The recording cannot be decoded there, or --at is past its end:
		// a bad input (exit 1).
		return &cmdutil.FlagError{Err: fmt.Errorf("%s: cannot export: %w", opts.Arg, err)}
	}
	if v != nil {
		if err := v.close(); err != nil {
			return err
		}
		res.Width, res.Height = v.w, v.h
	}
	if res.Kind != "png" {
		res.Seconds = float64(res.Frames) / opts.FPS
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	_, err = fmt.Fprintf(opts.IO.Out, "wrote %s: %d frame(s), %.1fs, %dx%d\n", res.Output, res.Frames, res.Seconds, res.Width, res.Height)
	return err
}

func writePNG(path string, img *image.RGBA) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(f, img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// video pipes raw RGBA frames to ffmpeg. The first frame sets the
// video's size; a later one of another size (the guest changed its
// resolution) is drawn at the top left of a black frame of that size.
type video struct {
	out, ext string
	fps      float64
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stderr   strings.Builder
	w, h     int
	canvas   *image.RGBA
	done     bool
}

func (v *video) frame(ctx context.Context, img *image.RGBA) error {
	if v.cmd == nil {
		if err := v.start(ctx, img.Rect.Dx(), img.Rect.Dy()); err != nil {
			return err
		}
	}
	pix := img.Pix
	if img.Rect.Dx() != v.w || img.Rect.Dy() != v.h || img.Stride != 4*v.w {
		if v.canvas == nil {
			v.canvas = image.NewRGBA(image.Rect(0, 0, v.w, v.h))
		}
		clear(v.canvas.Pix)
		for y := 0; y < min(v.h, img.Rect.Dy()); y++ {
			copy(v.canvas.Pix[y*v.canvas.Stride:][:4*v.w], img.Pix[y*img.Stride:][:4*min(v.w, img.Rect.Dx())])
		}
		pix = v.canvas.Pix
	}
	if _, err := v.stdin.Write(pix); err != nil {
		return v.failed(err)
	}
	return nil
}

func (v *video) start(ctx context.Context, w, h int) error {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return errors.New("ffmpeg not found: install it (Debian: apt install ffmpeg) for video, or export PNG frames with -o DIR/")
	}
	v.w, v.h = w, h
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgba",
		"-s", fmt.Sprintf("%dx%d", w, h), "-r", strconv.FormatFloat(v.fps, 'f', -1, 64), "-i", "pipe:0"}
	switch v.ext {
	case ".gif":
	case ".webm":
		args = append(args, "-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2")
	default: // H.264 in yuv420p, which wants even sizes
		args = append(args, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2")
	}
	v.cmd = exec.CommandContext(ctx, ffmpeg, append(args, v.out)...)
	v.cmd.Stderr = &v.stderr
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		return err
	}
	if err := v.cmd.Start(); err != nil {
		return fmt.Errorf("cannot run ffmpeg: %w", err)
	}
	return nil
}

func (v *video) failed(err error) error {
	v.done = true
	v.stdin.Close()
	if werr := v.cmd.Wait(); werr != nil {
		return fmt.Errorf("ffmpeg failed: %s", oneLine(v.stderr.String(), werr))
	}
	return err
}

// close ends the input and waits for ffmpeg.
func (v *video) close() error {
	if v.cmd == nil {
		return errors.New("the recording has no frames: nothing to encode")
	}
	v.done = true
	v.stdin.Close()
	if err := v.cmd.Wait(); err != nil {
		return fmt.Errorf("ffmpeg failed: %s", oneLine(v.stderr.String(), err))
	}
	return nil
}

// abort stops an ffmpeg that close did not wait for.
func (v *video) abort() {
	if v.cmd != nil && !v.done {
		v.stdin.Close()
		v.cmd.Process.Kill()
		v.cmd.Wait()
	}
}

func oneLine(stderr string, err error) string {
	if s := strings.Join(strings.Fields(stderr), " "); s != "" {
		return s
	}
	return err.Error()
}
