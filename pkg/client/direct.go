package client

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// sendPart sends one part the session's way, with a CRC32 of its bytes that
// S3 verifies: through the upload API (proxy), or straight to S3 with a
// presigned URL (direct).
func (c *Client) sendPart(ctx context.Context, transfer, path string, part io.ReadSeeker, size int64) error {
	sum, err := crc32Of(part)
	if err != nil {
		return err
	}
	if transfer != "direct" {
		return c.partPUT(ctx, path, part, size, sum)
	}
	return c.directPart(ctx, path, part, size, sum)
}

func (c *Client) partPUT(ctx context.Context, path string, part io.ReadSeeker, size int64, sum string) error {
	_, err := c.doStatus(ctx, http.MethodPut, path, part, size, nil, http.Header{"X-Amz-Checksum-Crc32": {sum}})
	return err
}

// crc32Of is the base64 CRC32 (IEEE) of r's bytes, as S3 takes it.
func crc32Of(r io.ReadSeeker) (string, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("checksum of the part: %w", err)
	}
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, h.Sum32())), nil
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
	return c.partURL(ctx, fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", sessionID, fileID, n), checksumCRC32)
}

func (c *Client) partURL(ctx context.Context, path, sum string) (*PartURL, error) {
	req := map[string]string{}
	if sum != "" {
		req["checksumCRC32"] = sum
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
func (c *Client) directPart(ctx context.Context, path string, part io.ReadSeeker, size int64, sum string) error {
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
		u, err := c.partURL(ctx, path, sum)
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
	req, err := http.NewRequestWithContext(ctx, u.Method, u.URL, io.NopCloser(part))
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
