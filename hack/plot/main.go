// Command plot draws the documentation's charts (make bench's throughput and
// CPU plots, the soak's runs) from a description in JSON on standard input,
// as a PNG at -o. It is a module of its own so that gonum's plotting, its
// fonts and image codecs stay out of the operator's go.mod; the description
// is internal/testenv/chart's Chart.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart mirrors internal/testenv/chart.Chart (JSON is the contract).
type chart struct {
	Title, XLabel, YLabel     string
	LogX                      bool
	WidthInches, HeightInches float64
	XMin, XMax, YMin, YMax    *float64
	// Series are lines with points, in the default palette, named in the
	// legend.
	Series []struct {
		Name   string
		Points [][2]float64
	}
	// Bands are filled polygons; Labels are text at points; Lines are
	// black lines of a width in points, not in the legend.
	Bands []struct {
		Points [][2]float64
		Color  [4]uint8
	}
	Labels []struct {
		X, Y  float64
		Text  string
		Color [4]uint8
	}
	Lines []struct {
		Points [][2]float64
		Width  float64
	}
}

func main() {
	out := flag.String("o", "", "the PNG to write")
	flag.Parse()
	var c chart
	if err := json.NewDecoder(os.Stdin).Decode(&c); err != nil {
		fail(err)
	}
	if err := draw(c).Save(vg.Length(c.WidthInches)*vg.Inch, vg.Length(c.HeightInches)*vg.Inch, *out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "plot:", err)
	os.Exit(1)
}

func xys(pts [][2]float64) plotter.XYs {
	out := make(plotter.XYs, len(pts))
	for i, p := range pts {
		out[i] = plotter.XY{X: p[0], Y: p[1]}
	}
	return out
}

func rgba(c [4]uint8) color.NRGBA { return color.NRGBA{R: c[0], G: c[1], B: c[2], A: c[3]} }

func draw(c chart) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = c.Title, c.XLabel, c.YLabel
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	for _, b := range c.Bands {
		poly, err := plotter.NewPolygon(xys(b.Points))
		if err != nil {
			fail(err)
		}
		poly.Color, poly.Width = rgba(b.Color), 0
		p.Add(poly)
	}
	if len(c.Labels) > 0 {
		var names plotter.XYLabels
		for _, l := range c.Labels {
			names.XYs = append(names.XYs, plotter.XY{X: l.X, Y: l.Y})
			names.Labels = append(names.Labels, l.Text)
		}
		labels, err := plotter.NewLabels(names)
		if err != nil {
			fail(err)
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].Color = rgba(c.Labels[i].Color)
		}
		p.Add(labels)
	}
	for _, l := range c.Lines {
		line, err := plotter.NewLine(xys(l.Points))
		if err != nil {
			fail(err)
		}
		line.Width = vg.Points(l.Width)
		p.Add(line)
	}
	var series []any
	for _, s := range c.Series {
		series = append(series, s.Name, xys(s.Points))
	}
	if len(series) > 0 {
		if err := plotutil.AddLinePoints(p, series...); err != nil {
			fail(err)
		}
	}
	for _, lim := range []struct {
		v   *float64
		set *float64
	}{{c.XMin, &p.X.Min}, {c.XMax, &p.X.Max}, {c.YMin, &p.Y.Min}, {c.YMax, &p.Y.Max}} {
		if lim.v != nil {
			*lim.set = *lim.v
		}
	}
	return p
}
