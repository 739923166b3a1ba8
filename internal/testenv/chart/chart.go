// Package chart describes the documentation's charts (make bench's, the
// soak's) and has hack/plot draw them: gonum's plotting lives in that module
// of its own, out of the operator's go.mod.
package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
)

// Chart is one chart: hack/plot's input, in JSON.
type Chart struct {
	Title, XLabel, YLabel     string
	LogX                      bool
	WidthInches, HeightInches float64
	XMin, XMax, YMin, YMax    *float64
	// Series are lines with points, in the default palette, named in the
	// legend.
	Series []Series
	// Bands are filled polygons; Labels are text at points; Lines are
	// black lines of a width in points, not in the legend.
	Bands  []Band
	Labels []Label
	Lines  []Line
}

// Series is a named line of points (x, y).
type Series struct {
	Name   string
	Points [][2]float64
}

// Band is a filled polygon.
type Band struct {
	Points [][2]float64
	Color  [4]uint8 // RGBA
}

// Label is text at a point.
type Label struct {
	X, Y  float64
	Text  string
	Color [4]uint8 // RGBA
}

// Line is a plain line.
type Line struct {
	Points [][2]float64
	Width  float64 // points
}

// Save draws the chart as a PNG at path with hack/plot, from the repository
// at root.
func (c Chart) Save(ctx context.Context, root, path string) error {
	spec, err := json.Marshal(c)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "run", ".", "-o", abs)
	cmd.Dir = filepath.Join(root, "hack", "plot")
	cmd.Stdin = bytes.NewReader(spec)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/plot %s: %w\n%s", path, err, out)
	}
	return nil
}

// Float is a pointer to v, for the limits.
func Float(v float64) *float64 { return &v }
