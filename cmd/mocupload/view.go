package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/mocs-dev/upload-operator/internal/units"
	"github.com/mocs-dev/upload-operator/pkg/client"
)

// view shows upload progress: live bars per file and in total (bytes, rate,
// ETA) on a terminal, plain lines otherwise, nothing with --output json.
type view struct {
	mu    sync.Mutex
	bars  map[string]*mpb.Bar
	total *mpb.Bar
	p     *mpb.Progress
	plain io.Writer
	last  time.Time
	files []string
}

func (o *options) newView(files []string) *view {
	v := &view{files: files, bars: map[string]*mpb.Bar{}}
	if o.output == "json" {
		return v
	}
	f, ok := o.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		v.plain = o.stderr
		return v
	}
	v.p = mpb.New(mpb.WithOutput(f), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))
	return v
}

func (v *view) bar(name string, size int64) *mpb.Bar {
	return v.p.AddBar(size,
		mpb.PrependDecorators(decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 24}),
			decor.CountersKibiByte("% .1f / % .1f", decor.WC{W: 22})),
		mpb.AppendDecorators(decor.Percentage(decor.WC{W: 5}), decor.Name("  "),
			decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30, decor.WC{W: 12}), decor.Name("  ETA "),
			decor.EwmaETA(decor.ET_STYLE_GO, 30)))
}

func (v *view) update(p client.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.p != nil {
		b, ok := v.bars[p.File]
		if !ok {
			b = v.bar(p.File, p.FileSize)
			v.bars[p.File] = b
		}
		if v.total == nil && len(v.bars) == len(v.files) {
			v.total = v.bar("total", p.TotalSize)
		}
		now := time.Now()
		dur := now.Sub(v.last)
		if v.last.IsZero() {
			dur = time.Millisecond
		}
		v.last = now
		b.EwmaSetCurrent(p.FileBytes, dur)
		if v.total != nil {
			v.total.EwmaSetCurrent(p.TotalBytes, dur)
		}
		return
	}
	if v.plain != nil && (!p.Skipped || p.FileBytes > 0) {
		pct := 0
		if p.TotalSize > 0 {
			pct = int(p.TotalBytes * 100 / p.TotalSize)
		}
		fmt.Fprintf(v.plain, "%s %s/%s, total %s/%s (%d%%)\n", filepath.Base(p.File), units.Bytes(p.FileBytes, " "), units.Bytes(p.FileSize, " "),
			units.Bytes(p.TotalBytes, " "), units.Bytes(p.TotalSize, " "), pct)
	}
}

func (v *view) done(ok bool) {
	if v.p == nil {
		return
	}
	v.mu.Lock()
	for _, b := range v.bars {
		if !ok {
			b.Abort(false)
		}
	}
	if v.total != nil && !ok {
		v.total.Abort(false)
	}
	v.mu.Unlock()
	if ok {
		v.p.Wait()
	} else {
		v.p.Shutdown()
	}
}
