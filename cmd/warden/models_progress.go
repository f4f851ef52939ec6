package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/warden-llm/warden/models"
)

// progressPrinter shows a models command's progress: a bar per layer
// (bytes, speed, ETA) on a terminal, else one JSON object per line.
type progressPrinter struct {
	w      io.Writer
	json   bool
	enc    *json.Encoder
	bars   map[string]*progressbar.ProgressBar
	status string
}

func newProgressPrinter(w io.Writer, asJSON bool) *progressPrinter {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return newProgressPrinterTTY(w, asJSON || !tty)
}

// newProgressPrinterTTY prints JSON lines, or bars when asJSON is false.
func newProgressPrinterTTY(w io.Writer, asJSON bool) *progressPrinter {
	return &progressPrinter{w: w, json: asJSON, enc: json.NewEncoder(w), bars: map[string]*progressbar.ProgressBar{}}
}

func (p *progressPrinter) progress(pr models.Progress) error {
	if p.json {
		return p.enc.Encode(pr)
	}
	if pr.Total <= 0 {
		if pr.Status != p.status {
			p.close()
			p.status = pr.Status
			_, err := fmt.Fprintln(p.w, pr.Status)
			return err
		}
		return nil
	}
	key := pr.Digest
	if key == "" {
		key = pr.Status
	}
	bar := p.bars[key]
	if bar == nil {
		p.close()
		bar = progressbar.NewOptions64(pr.Total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(pr.Status),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
		p.bars[key] = bar
	}
	return bar.Set64(pr.Completed)
}

// close finishes the bars shown so far.
func (p *progressPrinter) close() {
	for k, b := range p.bars {
		if !b.IsFinished() {
			_ = b.Exit()
			fmt.Fprintln(p.w)
		}
		delete(p.bars, k)
	}
}

// finish prints the outcome of a pull or import: a last JSON line with
// status "success" (or "error"), or a sentence.
func (p *progressPrinter) finish(ch models.Change, err error) error {
	p.close()
	if p.json {
		if err != nil {
			_ = p.enc.Encode(map[string]string{"status": "error", "error": err.Error()})
			return err
		}
		return p.enc.Encode(struct {
			Status string `json:"status"`
			models.Change
		}{"success", ch})
	}
	if err != nil {
		return err
	}
	switch {
	case !ch.Changed:
		fmt.Fprintf(p.w, "%s is up to date at %s\n", ch.Name, shortDigest(ch.New))
	case ch.Old == "":
		fmt.Fprintf(p.w, "%s is %s\n", ch.Name, shortDigest(ch.New))
	default:
		fmt.Fprintf(p.w, "%s: %s -> %s (the previous version is kept as %s; `warden models rollback` restores it)\n",
			ch.Name, shortDigest(ch.Old), shortDigest(ch.New), ch.Kept)
	}
	for _, n := range ch.Pruned {
		fmt.Fprintf(p.w, "pruned kept version %s (models.keep_versions)\n", n)
	}
	if ch.PinMismatch {
		fmt.Fprintf(p.w, "warning: %s is pinned to another digest: it is not served until you pin %s or roll back\n", ch.Name, shortDigest(ch.New))
	}
	return nil
}
