package session

import (
	"fmt"
	"mime"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mocs-dev/upload-operator/internal/checksum"
)

// File is one file of a session request.
type File struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	SizeBytes   int64  `json:"sizeBytes"`
	// Checksum is the whole file's, declared by the client and verified at
	// finalize (nil: none declared).
	Checksum *FileChecksum `json:"checksum,omitempty"`
}

// FileChecksum is a file's declared whole-file checksum: CRC64NVME as S3
// writes it (base64 of 8 big-endian bytes) and/or SHA-256 (64 hex digits,
// kept in lower case).
type FileChecksum struct {
	CRC64NVME string `json:"crc64nvme,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// Limits are the configurable validation rules.
type Limits struct {
	AllowedContentTypes []string
	MaxFileSizeBytes    int64
	// MaxFiles per session (MAX_FILES_PER_SESSION, default 100).
	MaxFiles int
	// MaxPartSizeBytes bounds partSizeBytes (MAX_PART_SIZE_BYTES, default
	// 64 MiB): a part is held in memory or spilled to disk while it is sent on.
	MaxPartSizeBytes int64
}

// Defaults of the limits a zero Limits field stands for.
const (
	DefaultMaxFiles     = 100
	DefaultMaxPartSize  = 64 * MiB
	maxContentTypeBytes = 255
)

func (l Limits) maxFiles() int {
	if l.MaxFiles > 0 {
		return l.MaxFiles
	}
	return DefaultMaxFiles
}

// PartSizeLimit is the largest part size allowed.
func (l Limits) PartSizeLimit() int64 {
	if l.MaxPartSizeBytes > 0 {
		return min(l.MaxPartSizeBytes, MaxPartSize)
	}
	return DefaultMaxPartSize
}

// DefaultContentTypes suit building instructions: documents, images, LDraw and
// BrickLink Studio models, and archives of them. SVG is not among them: it is
// a document that runs scripts when a browser opens it, so an object served
// inline would be stored cross-site scripting.
var DefaultContentTypes = []string{
	"application/pdf",
	"image/png", "image/jpeg", "image/webp", "image/gif",
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
	// Checked before any work per file: a request of many thousand empty
	// entries costs one comparison, not an error each.
	if len(files) > lim.maxFiles() {
		return []FieldError{{Field: "files", Message: fmt.Sprintf("at most %d files per session, not %d", lim.maxFiles(), len(files))}}
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
		if len(f.ContentType) > maxContentTypeBytes {
			errs = append(errs, FieldError{Field: p + ".contentType", Message: fmt.Sprintf("must be at most %d bytes", maxContentTypeBytes)})
		} else if !contentTypeAllowed(f.ContentType, lim.AllowedContentTypes) {
			errs = append(errs, FieldError{Field: p + ".contentType",
				Message: fmt.Sprintf("content type %q is not allowed (allowed: %s)", f.ContentType, strings.Join(lim.AllowedContentTypes, ", "))})
		}
		if f.Checksum != nil {
			if f.Checksum.CRC64NVME != "" {
				if _, err := checksum.DecodeCRC64(f.Checksum.CRC64NVME); err != nil {
					errs = append(errs, FieldError{Field: p + ".checksum.crc64nvme", Message: "must be the base64 of 8 bytes (a CRC64NVME, as S3 writes it)"})
				}
			}
			if f.Checksum.SHA256 != "" && !sha256Hex.MatchString(f.Checksum.SHA256) {
				errs = append(errs, FieldError{Field: p + ".checksum.sha256", Message: "must be 64 hexadecimal digits (a SHA-256)"})
			}
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

var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// NormalizeChecksum is c as stored and echoed: the SHA-256 in lower case; nil
// when nothing is declared.
func NormalizeChecksum(c *FileChecksum) *FileChecksum {
	if c == nil || (c.CRC64NVME == "" && c.SHA256 == "") {
		return nil
	}
	out := &FileChecksum{CRC64NVME: c.CRC64NVME, SHA256: strings.ToLower(c.SHA256)}
	if crc, err := checksum.DecodeCRC64(c.CRC64NVME); err == nil {
		out.CRC64NVME = checksum.EncodeCRC64(crc) // one spelling of the 8 bytes
	}
	return out
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

// MediaType is a content type without its parameters, lower case
// ("image/png; charset=x" → "image/png"): what is stored and given to S3, so
// no parameter a client chose reaches a browser that is served the object.
func MediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

// ContentDisposition makes a browser download an object rather than show it,
// under the file's name.
func ContentDisposition(name string) string {
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": name}); v != "" {
		return v
	}
	return "attachment"
}

// LargestFile returns the size of the largest file.
func LargestFile(files []File) int64 {
	var m int64
	for _, f := range files {
		m = max(m, f.SizeBytes)
	}
	return m
}

// Limits of a MOC's title and description.
const (
	MaxTitleRunes       = 200
	MaxDescriptionRunes = 2000
)

// ValidateFinalize checks a finalize's title (1–200 characters) and
// description (up to 2,000), neither with control characters: they become
// text columns (PostgreSQL refuses NUL) and are shown to people.
func ValidateFinalize(title, description string) []FieldError {
	var errs []FieldError
	switch n := utf8.RuneCountInString(title); {
	case title == "":
		errs = append(errs, FieldError{Field: "title", Message: "is required"})
	case n > MaxTitleRunes:
		errs = append(errs, FieldError{Field: "title", Message: fmt.Sprintf("must be at most %d characters", MaxTitleRunes)})
	case !printableText(title):
		errs = append(errs, FieldError{Field: "title", Message: "must be valid UTF-8 without control characters"})
	}
	switch {
	case utf8.RuneCountInString(description) > MaxDescriptionRunes:
		errs = append(errs, FieldError{Field: "description", Message: fmt.Sprintf("must be at most %d characters", MaxDescriptionRunes)})
	case !printableText(description):
		errs = append(errs, FieldError{Field: "description", Message: "must be valid UTF-8 without control characters"})
	}
	return errs
}

func printableText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
