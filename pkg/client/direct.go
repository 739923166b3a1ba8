package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/mocs-dev/upload-operator/internal/checksum"
)

// sendPart sends one part the session's way, with a checksum of its bytes
// that S3 verifies: through the upload API (proxy) with a CRC32 (the upload
// API signs what it sends on), or straight to S3 with a presigned URL
// (direct) with a SHA-256, signed into the URL: over plain http a CRC would
// not keep the bytes from being changed on the way, and the upload API
// refuses a URL without one there.
//
// sent is called once the request has read the part's last byte (the
// transport wrote it out; the answer may still be on its way).
//
// A direct session's file that declared a whole-file checksum has an upload S3
// checks as a whole, which takes no part checksum but a CRC64NVME: its parts'
// URLs are signed for that (checked).
func (c *Client) sendPart(ctx context.Context, transfer, path string, part io.ReadSeeker, size int64, checked bool, sent func()) error {
	body := &sentSignal{ReadSeeker: part, size: size, sent: sent}
	switch {
	case transfer != "direct":
		sum, err := digestOf(part, crc32.NewIEEE())
		if err != nil {
			return err
		}
		return c.partPUT(ctx, path, body, size, sum)
	case checked:
		sum, err := digestOf(part, checksum.NewCRC64NVME())
		if err != nil {
			return err
		}
		return c.directPart(ctx, path, body, size, "checksumCRC64NVME", sum)
	}
	sum, err := digestOf(part, sha256.New())
	if err != nil {
		return err
	}
	return c.directPart(ctx, path, body, size, "checksumSHA256", sum)
}

// sentSignal calls sent when its reader reaches size: the transport stops
// reading a body at its Content-Length, so no EOF is ever seen.
type sentSignal struct {
	io.ReadSeeker
	size, pos int64
	sent      func()
}

func (s *sentSignal) Read(p []byte) (int, error) {
	n, err := s.ReadSeeker.Read(p)
	s.pos += int64(n)
	if s.pos >= s.size && s.sent != nil {
		s.sent()
	}
	return n, err
}

func (s *sentSignal) Seek(offset int64, whence int) (int64, error) {
	pos, err := s.ReadSeeker.Seek(offset, whence)
	if err == nil {
		s.pos = pos
	}
	return pos, err
}

func (c *Client) partPUT(ctx context.Context, path string, part io.ReadSeeker, size int64, sum string) error {
	_, err := c.doStatus(ctx, http.MethodPut, path, part, size, nil, http.Header{"X-Amz-Checksum-Crc32": {sum}})
	return err
}

// digestOf is the base64 digest h of r's bytes, as S3 takes it.
func digestOf(r io.ReadSeeker, h hash.Hash) (string, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("checksum of the part: %w", err)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// PartURL is a presigned S3 upload of one part of a direct session.
type PartURL struct {
	URL       string            `json:"url"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	ExpiresAt time.Time         `json:"expiresAt"`
}

// GetPartURL asks the upload API for a presigned upload of part n of a file
// of a direct session; checksumCRC32 (base64, may be empty) is signed in.
func (c *Client) GetPartURL(ctx context.Context, sessionID, fileID string, n int, checksumCRC32 string) (*PartURL, error) {
	return c.partURL(ctx, fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", sessionID, fileID, n), "checksumCRC32", checksumCRC32)
}

// GetPartURLSHA256 is GetPartURL with a SHA-256 (base64) signed in, which an
// upload API whose part URLs are plain http requires.
func (c *Client) GetPartURLSHA256(ctx context.Context, sessionID, fileID string, n int, checksumSHA256 string) (*PartURL, error) {
	return c.partURL(ctx, fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", sessionID, fileID, n), "checksumSHA256", checksumSHA256)
}

func (c *Client) partURL(ctx context.Context, path, field, sum string) (*PartURL, error) {
	req := map[string]string{}
	if sum != "" {
		req[field] = sum
	}
	body, n := jsonBody(req)
	var u PartURL
	if err := c.do(ctx, http.MethodPost, path+"/url", body, n, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// S3Error is S3's refusal of a part sent with a presigned URL.
type S3Error struct {
	Status int
	Body   string
}

func (e *S3Error) Error() string { return fmt.Sprintf("S3 answered %d: %s", e.Status, e.Body) }

// directPart sends a part to S3 with a presigned URL. A URL S3 no longer
// takes (403: expired, or the clocks disagree) is asked for again; S3's 5xx
// and dropped connections are retried with the API's backoff; any other
// refusal (the bytes do not match their checksum or length) is returned.
func (c *Client) directPart(ctx context.Context, path string, part io.ReadSeeker, size int64, field, sum string) error {
	var last error
	for attempt := 0; attempt <= c.maxRetries(); attempt++ {
		if attempt > 0 {
			wait := c.backoff() << (attempt - 1)
			wait += time.Duration(rand.Int64N(int64(wait)/5 + 1)) //nolint:gosec // jitter: no secret in it
			select {
			case <-ctx.Done():
				return errors.Join(last, ctx.Err())
			case <-time.After(wait):
			}
		}
		u, err := c.partURL(ctx, path, field, sum)
		if err != nil {
			return err // the API's own answers were retried already
		}
		last = c.putToS3(ctx, u, part, size)
		var se *S3Error
		if last == nil || (errors.As(last, &se) && se.Status != http.StatusForbidden && se.Status < 500) {
			return last
		}
	}
	return last
}

func (c *Client) putToS3(ctx context.Context, u *PartURL, part io.ReadSeeker, size int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if _, err := part.Seek(0, io.SeekStart); err != nil {
		return err
	}
	body := &attemptBody{r: part}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, u.Method, u.URL, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	for k, v := range u.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return &S3Error{Status: resp.StatusCode, Body: string(raw)}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
