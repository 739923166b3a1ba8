package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mocs-dev/upload-operator/internal/checksum"
)

// FileSpec is one file of a new session.
type FileSpec struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	SizeBytes   int64  `json:"sizeBytes"`
	// Checksum is the whole file's, verified at finalize (Specs declares
	// the CRC64NVME).
	Checksum *Checksum `json:"checksum,omitempty"`
}

// Checksum is a whole-file checksum: CRC64NVME (base64 of 8 bytes) and/or
// SHA-256 (hex).
type Checksum struct {
	CRC64NVME string `json:"crc64nvme,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// Part is a part the server holds.
type Part struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
	SizeBytes  int64  `json:"sizeBytes"`
}

// File is a file of a session.
type File struct {
	FileID    string `json:"fileId"`
	Name      string `json:"name"`
	SizeBytes int64  `json:"sizeBytes"`
	PartCount int    `json:"partCount"`
	Parts     []Part `json:"parts,omitempty"`
	// Checksum is the declared checksum (once finalized: the verified one).
	Checksum *Checksum `json:"checksum,omitempty"`
}

// Session is what the API tells of a session.
type Session struct {
	SessionID     string `json:"sessionId"`
	Status        string `json:"status"`
	PartSizeBytes int64  `json:"partSizeBytes"`
	ExpiresAt     string `json:"expiresAt"`
	// Transfer is "proxy" (parts go through the upload API) or "direct"
	// (parts go to S3 with presigned URLs).
	Transfer string `json:"transfer"`
	Files    []File `json:"files"`
}

// MOC is a finalized session.
type MOC struct {
	MocID string `json:"mocId"`
	// SessionID is set by GetMOC.
	SessionID string `json:"sessionId,omitempty"`
	Slug      string `json:"slug"`
	Title     string `json:"title"`
	Files     []struct {
		FileID    string    `json:"fileId"`
		Name      string    `json:"name"`
		S3Key     string    `json:"s3Key"`
		SizeBytes int64     `json:"sizeBytes"`
		ETag      string    `json:"etag"`
		Checksum  *Checksum `json:"checksum,omitempty"`
	} `json:"files"`
	// Created is false when the session had been finalized before (200).
	Created bool `json:"-"`
}

// CreateSession creates a session for files; partSize 0 lets the server choose.
func (c *Client) CreateSession(ctx context.Context, files []FileSpec, partSize int64) (*Session, error) {
	req := map[string]any{"files": files}
	if partSize > 0 {
		req["partSizeBytes"] = partSize
	}
	if c.Transfer != "" {
		req["transfer"] = c.Transfer
	}
	body, n := jsonBody(req)
	var s Session
	if err := c.do(ctx, http.MethodPost, "/api/mocs/uploads/sessions", body, n, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetSession reads a session with the parts received so far.
func (c *Client) GetSession(ctx context.Context, id string) (*Session, error) {
	var s Session
	if err := c.do(ctx, http.MethodGet, "/api/mocs/uploads/sessions/"+id, nil, 0, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetMOC reads a MOC by its id (its owner's, or any for an admin), with the
// checksums finalize verified.
func (c *Client) GetMOC(ctx context.Context, id string) (*MOC, error) {
	var m MOC
	if err := c.do(ctx, http.MethodGet, "/api/mocs/uploads/mocs/"+id, nil, 0, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// SpecsFor describes files on disk (name, size, content type from the extension).
func SpecsFor(paths []string) ([]FileSpec, error) {
	specs := make([]FileSpec, len(paths))
	for i, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", p)
		}
		specs[i] = FileSpec{Name: filepath.Base(p), ContentType: ContentType(p), SizeBytes: st.Size()}
	}
	return specs, nil
}

// Specs is SpecsFor with each file's CRC64NVME declared (read from disk
// once, and remembered, so Upload does not read the file again to check it),
// unless NoChecksums is set. (An upload API whose part URLs are plain http://
// refuses declared checksums on direct sessions.)
func (c *Client) Specs(paths []string) ([]FileSpec, error) {
	specs, err := SpecsFor(paths)
	if err != nil || c.NoChecksums {
		return specs, err
	}
	for i, p := range paths {
		crc, err := c.fileCRC(p)
		if err != nil {
			return nil, err
		}
		specs[i].Checksum = &Checksum{CRC64NVME: crc}
	}
	return specs, nil
}

// FileCRC64NVME is the CRC64NVME of the file at path (base64, as the API
// takes it).
func FileCRC64NVME(path string) (string, error) {
	c, err := LocalChecksum(path, false)
	return c.CRC64NVME, err
}

// LocalChecksum is the CRC64NVME of the file at path and, with sha, its
// SHA-256, in one read.
func LocalChecksum(path string, sha bool) (Checksum, error) {
	f, err := os.Open(path) //nolint:gosec // the caller's own file
	if err != nil {
		return Checksum{}, err
	}
	defer f.Close()
	crc := checksum.NewCRC64NVME()
	var w io.Writer = crc
	sum := sha256.New()
	if sha {
		w = io.MultiWriter(crc, sum)
	}
	if _, err := io.CopyBuffer(w, f, make([]byte, 4<<20)); err != nil {
		return Checksum{}, fmt.Errorf("%s: %w", path, err)
	}
	out := Checksum{CRC64NVME: checksum.EncodeCRC64(crc.Sum64())}
	if sha {
		out.SHA256 = hex.EncodeToString(sum.Sum(nil))
	}
	return out, nil
}

// fileCRC is FileCRC64NVME, remembered per path, size and modification time.
func (c *Client) fileCRC(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", path, st.Size(), st.ModTime().UnixNano())
	if v, ok := c.crcs.Load(key); ok {
		return v.(string), nil
	}
	crc, err := FileCRC64NVME(path)
	if err == nil {
		c.crcs.Store(key, crc)
	}
	return crc, err
}

// checkLocal checks that the file at path is f as the session knows it: its
// size and, when a CRC64NVME was declared and parts remain to be sent, its
// CRC (a resume from a file that changed would end in a finalize that names
// it: say so before sending a byte).
func (c *Client) checkLocal(path string, f File) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() != f.SizeBytes {
		return fmt.Errorf("%s is %d bytes; the session expects %d for %s", path, st.Size(), f.SizeBytes, f.Name)
	}
	if f.Checksum == nil || f.Checksum.CRC64NVME == "" || len(f.Parts) >= f.PartCount {
		return nil
	}
	crc, err := c.fileCRC(path)
	if err != nil {
		return err
	}
	if crc != f.Checksum.CRC64NVME {
		return fmt.Errorf("%s: its CRC64NVME is %s, the session declared %s for %s: %w", path, crc, f.Checksum.CRC64NVME, f.Name, ErrFileChanged)
	}
	return nil
}

// ErrFileChanged: a local file is not the one its session declared.
var ErrFileChanged = errors.New("the file is not the one the session declared (changed since the session was created?)")

// ContentType guesses a file's media type, knowing the building-instruction formats.
func ContentType(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".pdf":
		return "application/pdf"
	case ".io":
		return "application/x-studio"
	case ".ldr", ".mpd", ".dat":
		return "application/x-ldraw"
	case ".zip":
		return "application/zip"
	}
	if t := mime.TypeByExtension(filepath.Ext(path)); t != "" {
		t, _, _ = strings.Cut(t, ";")
		return t
	}
	return "application/octet-stream"
}

// Progress is reported as parts complete.
type Progress struct {
	File       string // file name
	FileBytes  int64  // bytes of this file stored on the server
	FileSize   int64
	TotalBytes int64 // all files
	TotalSize  int64
	PartsSent  int // parts sent by this call
	Skipped    bool
}

// Upload sends every part the server does not have yet, for the files at
// paths (in session order), with bounded concurrency. It reads parts straight
// from disk (a section of the file, rewound for retries).
func (c *Client) Upload(ctx context.Context, sessionID string, paths []string) (sent int, err error) {
	s, err := c.GetSession(ctx, sessionID)
	if err != nil {
		return 0, err
	}
	if len(s.Files) != len(paths) {
		return 0, fmt.Errorf("session %s has %d files, %d given", sessionID, len(s.Files), len(paths))
	}
	var totalSize int64
	var done atomic.Int64
	fileDone := make([]atomic.Int64, len(s.Files))
	for i, f := range s.Files {
		if err := c.checkLocal(paths[i], f); err != nil { //nolint:gosec // as many paths as files: checked above
			return 0, err
		}
		totalSize += f.SizeBytes
		for _, p := range f.Parts {
			done.Add(p.SizeBytes)
			fileDone[i].Add(p.SizeBytes)
		}
	}
	var sentN atomic.Int64
	var mu sync.Mutex
	report := func(i int, skipped bool) {
		if c.OnProgress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		c.OnProgress(Progress{File: s.Files[i].Name, FileBytes: fileDone[i].Load(), FileSize: s.Files[i].SizeBytes,
			TotalBytes: done.Load(), TotalSize: totalSize, PartsSent: int(sentN.Load()), Skipped: skipped})
	}
	g, gctx := errgroup.WithContext(ctx)
	// Concurrency bounds the parts whose bytes are being sent. A part whose
	// last byte is out waits for its answer (the server finishes the part in
	// S3 and records it) without holding its turn: the next part starts
	// sending meanwhile, so even one part at a time keeps the connection busy.
	// At most twice Concurrency requests are open.
	g.SetLimit(2 * c.concurrency())
	sending := make(chan struct{}, c.concurrency())
	for i, f := range s.Files {
		have := map[int]bool{}
		for _, p := range f.Parts {
			have[p.PartNumber] = true
		}
		report(i, len(have) > 0)
		fh, err := os.Open(paths[i])
		if err != nil {
			return 0, err
		}
		defer fh.Close()
		for n := 1; n <= f.PartCount; n++ {
			if have[n] {
				continue
			}
			off := int64(n-1) * s.PartSizeBytes
			size := min(s.PartSizeBytes, f.SizeBytes-off)
			select {
			case sending <- struct{}{}:
			case <-gctx.Done():
				// A part failed (its error wins) or ctx ended.
				if err := g.Wait(); err != nil {
					return int(sentN.Load()), err
				}
				return int(sentN.Load()), ctx.Err()
			}
			g.Go(func() error {
				var once sync.Once
				turnDone := func() { once.Do(func() { <-sending }) }
				defer turnDone()
				sec := io.NewSectionReader(fh, off, size) // rewound for each retry
				path := fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", s.SessionID, f.FileID, n)
				if err := c.sendPart(gctx, s.Transfer, path, sec, size, f.Checksum != nil, turnDone); err != nil {
					return fmt.Errorf("part %d of %s: %w", n, f.Name, err)
				}
				done.Add(size)
				fileDone[i].Add(size)
				sentN.Add(1)
				report(i, false)
				return nil
			})
		}
	}
	err = g.Wait()
	return int(sentN.Load()), err
}

// SlugPolicy says what Finalize does on a slug conflict.
type SlugPolicy int

const (
	// FollowServer does what the server's retryStrategy says: AUTO_APPEND
	// retries with " (N)", PROMPT_USER returns the conflict.
	FollowServer SlugPolicy = iota
	// AutoAppend always retries with " (N)".
	AutoAppend
	// ReturnConflict always returns the *APIError (code SLUG_CONFLICT) to the caller.
	ReturnConflict
)

var trailingN = regexp.MustCompile(`-(\d+)$`)

// Finalize finalizes a session; on a slug conflict it follows policy (the
// auto-append flow retitles "Castle" to "Castle (1)", the server's suggestion).
// While another finalize holds the lock it waits and retries.
func (c *Client) Finalize(ctx context.Context, sessionID, title, description string, policy SlugPolicy) (*MOC, error) {
	// Waiting for another finalize is bounded by FinalizeWait (and ctx); slug
	// retitles by maxSlugRetries.
	waitUntil := time.Now().Add(c.finalizeWait())
	retitles := 0
	for {
		req := map[string]any{"uploadSessionId": sessionID, "title": title}
		if description != "" {
			req["description"] = description
		}
		body, n := jsonBody(req)
		var moc MOC
		status, err := c.doStatus(ctx, http.MethodPost, "/api/mocs/uploads/finalize", body, n, &moc, nil)
		var ae *APIError
		switch {
		case err == nil:
			moc.Created = status == http.StatusCreated
			return &moc, nil
		case errors.As(err, &ae) && ae.Code == "SLUG_CONFLICT":
			strategy, _ := ae.Body["retryStrategy"].(string)
			if policy == ReturnConflict || (policy == FollowServer && strategy != "AUTO_APPEND") {
				return nil, err
			}
			suggested, _ := ae.Body["suggestedSlug"].(string)
			m := trailingN.FindStringSubmatch(suggested)
			if m == nil || retitles >= maxSlugRetries {
				return nil, err
			}
			retitles++
			title = fmt.Sprintf("%s (%s)", stripSuffix(title), m[1])
		case errors.As(err, &ae) && ae.Code == "FINALIZE_IN_PROGRESS":
			// Another finalize (perhaps this client's own, whose answer was
			// lost) holds the lock and renews it: poll at the server's pace.
			wait := lockPollWait(ae.Body["retryAfter"])
			if time.Now().Add(wait).After(waitUntil) {
				return nil, fmt.Errorf("finalize %s: still in progress after %s: %w", sessionID, c.finalizeWait(), err)
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(wait):
			}
		default:
			return nil, err
		}
	}
}

const maxSlugRetries = 5

// lockPollWait is the wait before asking again while a finalize is in
// progress: the server's retryAfter, kept within 1–5 s.
func lockPollWait(retryAfter any) time.Duration {
	secs, _ := retryAfter.(float64)
	return min(max(time.Duration(secs*float64(time.Second)), time.Second), 5*time.Second)
}

var suffixN = regexp.MustCompile(` \(\d+\)$`)

func stripSuffix(title string) string { return suffixN.ReplaceAllString(title, "") }

// UploadFiles creates a session for files on disk, uploads them and finalizes.
// On error the session id (if one was created) is returned so the caller can
// resume.
func (c *Client) UploadFiles(ctx context.Context, title, description string, paths []string, policy SlugPolicy) (string, *MOC, error) {
	specs, err := c.Specs(paths)
	if err != nil {
		return "", nil, err
	}
	s, err := c.CreateSession(ctx, specs, 0)
	if err != nil {
		return "", nil, err
	}
	if _, err := c.Upload(ctx, s.SessionID, paths); err != nil {
		return s.SessionID, nil, err
	}
	moc, err := c.Finalize(ctx, s.SessionID, title, description, policy)
	return s.SessionID, moc, err
}
