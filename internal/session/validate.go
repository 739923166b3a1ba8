package session

import (
	"fmt"
	"mime"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// File is one file of a session request.
type File struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	SizeBytes   int64  `json:"sizeBytes"`
}

// Limits are the configurable validation rules.
type Limits struct {
	AllowedContentTypes []string
	MaxFileSizeBytes    int64
	MaxFiles            int
}

// DefaultContentTypes suit building instructions: documents, images, LDraw and
// BrickLink Studio models, and archives of them.
var DefaultContentTypes = []string{
	"application/pdf",
	"image/png", "image/jpeg", "image/webp", "image/gif", "image/svg+xml",
	"application/x-ldraw", "model/x-ldraw", // .ldr, .mpd
	"application/x-studio", "application/vnd.bricklink.studio", // .io (Studio)
	"application/zip", "application/x-zip-compressed",
	"application/octet-stream",
}

// FieldError is one problem with a request, reported in VALIDATION_ERROR details.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// ValidateFiles checks a session's files and returns every problem found.
func ValidateFiles(files []File, lim Limits) []FieldError {
	var errs []FieldError
	if len(files) == 0 {
		return []FieldError{{Field: "files", Message: "at least one file is required"}}
	}
	maxFiles := lim.MaxFiles
	if maxFiles == 0 {
		maxFiles = 100
	}
	if len(files) > maxFiles {
		errs = append(errs, FieldError{Field: "files", Message: fmt.Sprintf("at most %d files per session", maxFiles)})
	}
	seen := map[string]bool{}
	for i, f := range files {
		p := fmt.Sprintf("files[%d]", i)
		if msg := checkName(f.Name); msg != "" {
			errs = append(errs, FieldError{Field: p + ".name", Message: msg})
		} else if seen[f.Name] {
			errs = append(errs, FieldError{Field: p + ".name", Message: "duplicate file name"})
		}
		seen[f.Name] = true
		if !contentTypeAllowed(f.ContentType, lim.AllowedContentTypes) {
			errs = append(errs, FieldError{Field: p + ".contentType",
				Message: fmt.Sprintf("content type %q is not allowed (allowed: %s)", f.ContentType, strings.Join(lim.AllowedContentTypes, ", "))})
		}
		switch {
		case f.SizeBytes <= 0:
			errs = append(errs, FieldError{Field: p + ".sizeBytes", Message: "must be greater than 0"})
		case lim.MaxFileSizeBytes > 0 && f.SizeBytes > lim.MaxFileSizeBytes:
			errs = append(errs, FieldError{Field: p + ".sizeBytes", Message: fmt.Sprintf("must be at most %d", lim.MaxFileSizeBytes)})
		}
	}
	return errs
}

// checkName keeps names safe as the last element of an S3 key and in a
// Content-Disposition header: printable, no separators, not a dot name.
func checkName(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 255:
		return "must be at most 255 bytes"
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case name == "." || name == "..":
		return "must not be . or .."
	case strings.ContainsAny(name, `/\`):
		return "must not contain path separators"
	case strings.TrimSpace(name) != name:
		return "must not start or end with white space"
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "must not contain control or non-printable characters"
		}
	}
	return ""
}

func contentTypeAllowed(ct string, allowed []string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return slices.Contains(allowed, mt)
}

// LargestFile returns the size of the largest file.
func LargestFile(files []File) int64 {
	var m int64
	for _, f := range files {
		m = max(m, f.SizeBytes)
	}
	return m
}
