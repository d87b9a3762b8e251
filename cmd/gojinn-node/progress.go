package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws an upload progress bar on a terminal; elsewhere (pipes,
// CI logs) it prints one line when the upload ends, so logs stay readable.
type progress struct {
	w       io.Writer
	label   string
	tty     bool
	last    time.Time
	drawn   bool
	total   int64
	sent    int64
	started time.Time
}

func newProgress(w io.Writer, label string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, label: label, tty: tty, started: time.Now()}
}

// stored is the client's callback for a module the node already has:
// nothing is uploaded, and the line says so.
func (p *progress) stored(total int64) {
	fmt.Fprintf(p.w, "%s (%s): the node already has it, not uploaded\n", p.label, mib(total))
}

// update is the client's progress callback.
func (p *progress) update(sent, total int64) {
	p.sent, p.total = sent, total
	if !p.tty {
		if sent == total && sent > 0 && !p.drawn {
			p.drawn = true
			// "sent": the node has not answered yet, and may refuse it.
			fmt.Fprintf(p.w, "sent %s (%s) in %s\n", p.label, mib(sent), time.Since(p.started).Round(time.Millisecond))
		}
		return
	}
	if time.Since(p.last) < 100*time.Millisecond && sent < total {
		return
	}
	p.last = time.Now()
	p.drawn = true
	fmt.Fprintf(p.w, "\r%s", p.line())
}

func (p *progress) line() string {
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = float64(p.sent) / float64(p.total)
	}
	n := int(frac * width)
	return fmt.Sprintf("uploading %s [%s%s] %s / %s %3.0f%%", p.label,
		strings.Repeat("=", n), strings.Repeat(" ", width-n), mib(p.sent), mib(p.total), frac*100)
}

// done ends the bar.
func (p *progress) done() {
	if p.drawn && p.tty {
		fmt.Fprintln(p.w)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
