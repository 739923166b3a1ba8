package client

import (
	"io"
	"os"
)

// section is a rewindable view of part of a file: parts stream from disk and
// the same bytes can be sent again on a retry.
type section struct{ *io.SectionReader }

func newSection(f *os.File, off, n int64) section { return section{io.NewSectionReader(f, off, n)} }
