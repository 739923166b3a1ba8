package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// httpClient keeps a connection per request in flight to each server (the
// operator, S3, tusd): net/http's default keeps two idle ones per host, so at
// higher concurrency most requests would open a new connection.
var httpClient = &http.Client{Transport: func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 512, 256
	return t
}()}

// trustBenchCA makes httpClient verify the servers' certificates against the
// benchmark's own CA.
func trustBenchCA(caFile string) error {
	c, err := localenv.ClientTrusting(caFile)
	if err != nil {
		return err
	}
	t := httpClient.Transport.(*http.Transport)
	t.TLSClientConfig = c.Transport.(*http.Transport).TLSClientConfig
	if os.Getenv("BENCH_HTTP2") != "true" {
		// HTTP/1.1, as pkg/client speaks to the upload API: a connection per
		// part in flight (see docs/benchmarks.md for what HTTP/2 costs).
		t.ForceAttemptHTTP2 = false
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return nil
}

// crc32Header is the base64 CRC32 a client sends with a part
// (x-amz-checksum-crc32): S3 verifies it, and it lets the operator sign its
// part uploads with UNSIGNED-PAYLOAD over plain http instead of hashing them.
func crc32Header(data []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(data)))
}

// putPart PUTs one part to the operator with its CRC32, as pkg/client does.
func (b *bench) putPart(url string, data []byte, sum string) error {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodPut, url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("x-amz-checksum-crc32", sum)
	return doDiscard(req)
}

func doDiscard(req *http.Request) error {
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, raw)
	}
	return nil
}

// tusdVersion is the tusd the Makefile builds into bin/.
const tusdVersion = "v2.9.1"

// tusd is the tus reference server (v2) with its S3 store on the same
// versitygw: what a team would otherwise deploy for resumable uploads.
type tusd struct {
	proc *localenv.Process
	url  string
}

// startTusd starts tusd with S3 parts of partSize. Its content hashes are
// off (the fastest setting it offers, as the operator skips the payload hash).
func (b *bench) startTusd(partSize int64) (*tusd, error) {
	root, err := localenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "bin", "tusd-"+tusdVersion)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("tusd is not built (make bench builds it): %w", err)
	}
	addr, err := localenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	tmp := filepath.Join(b.dir, "tusd-tmp")
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return nil, err
	}
	env := map[string]string{
		"AWS_ACCESS_KEY_ID": b.st.S3.AccessKey, "AWS_SECRET_ACCESS_KEY": b.st.S3.SecretKey, "AWS_REGION": "us-east-1",
		"TMPDIR": tmp,
	}
	log, err := os.Create(filepath.Join(b.dir, fmt.Sprintf("tusd-%d.log", time.Now().UnixNano())))
	if err != nil {
		return nil, err
	}
	p, err := localenv.StartProcess(bin, env, log, "-host", host, "-port", port, "-s3-bucket", b.st.S3.Bucket,
		"-s3-endpoint", b.st.S3.Endpoint, "-s3-object-prefix", "bench-tusd/", "-s3-part-size", strconv.FormatInt(partSize, 10),
		"-s3-disable-content-hashes", "-s3-disable-ssl", "-verbose=false", "-show-greeting=false",
		// Served over TLS like the operator: both pay for it.
		"-tls-certificate", b.tls.CertFile, "-tls-key", b.tls.KeyFile)
	if err != nil {
		return nil, err
	}
	t := &tusd{proc: p, url: "https://" + addr + "/files/"}
	if err := p.WaitHTTPWith(b.ctx, httpClient, "https://"+addr+"/metrics", time.Minute); err != nil {
		p.Kill()
		return nil, fmt.Errorf("tusd did not start: %w", err)
	}
	return t, nil
}

// upload sends data as one tus upload: creation, then one PATCH of the whole
// body (tusd cuts it into S3 parts and completes the object when it ends).
func (t *tusd) upload(b *bench, data []byte) error {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodPost, t.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || loc == "" {
		return fmt.Errorf("tus creation: %d", resp.StatusCode)
	}
	req, err = http.NewRequestWithContext(b.ctx, http.MethodPatch, loc, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	return doDiscard(req)
}

// tusdRun uploads total bytes as conc parallel tus uploads of total/conc
// bytes each, and returns MB/s and the CPU seconds each process spent.
func (b *bench) tusdRun(t *tusd, conc int, total int64, data []byte) (float64, cpuTimes, error) {
	per := total / int64(conc)
	body := bytes.Repeat(data, int((per+int64(len(data))-1)/int64(len(data))))[:per]
	cpu0 := b.cpuOf(t.proc.Cmd.Process.Pid)
	start := time.Now()
	err := parallel(conc, conc, func(int) error { return t.upload(b, body) })
	if err != nil {
		return 0, cpuTimes{}, err
	}
	return float64(per*int64(conc)) / 1e6 / time.Since(start).Seconds(), b.cpuOf(t.proc.Cmd.Process.Pid).sub(cpu0), nil
}

// cpuOf reads the CPU time so far of this process (the client), the server
// process pid (the operator or its peer) and versitygw.
func (b *bench) cpuOf(pid int) cpuTimes {
	return cpuTimes{Client: procCPU(os.Getpid()), Operator: procCPU(pid), S3: procCPU(b.st.S3.Pid())}
}

// directModeRun uploads n parts of data in a direct session: one part URL
// call to the operator per part, the bytes straight to S3. Like any client
// that keeps its connections busy, it asks for the URLs of the next parts
// while parts are being sent (at most conc ahead), so each URL call overlaps
// a transfer instead of preceding it.
func (b *bench) directModeRun(m *manager, conc, n int, part int64, data []byte) (float64, cpuTimes, error) {
	total := part * int64(n)
	c, err := b.createSession(m.url, []int64{total}, part, "direct")
	if err != nil {
		return 0, cpuTimes{}, err
	}
	type partURL struct {
		URL     string            `json:"url"`
		Method  string            `json:"method"`
		Headers map[string]string `json:"headers"`
	}
	urls := make([]chan partURL, n)
	for i := range urls {
		urls[i] = make(chan partURL, 1)
	}
	ahead := make(chan struct{}, conc) // URLs fetched and not yet taken by a sender
	cpu0 := b.cpuNow(m)
	start := time.Now()
	fetchErr := make(chan error, 1)
	go func() {
		fetchErr <- parallel(conc, n, func(i int) error {
			ahead <- struct{}{}
			var u partURL
			path := fmt.Sprintf("%s/api/mocs/uploads/sessions/%s/files/%s/parts/%d/url", m.url, c.SessionID, c.Files[0].FileID, i+1)
			if _, err := b.call(http.MethodPost, path, nil, 0, &u); err != nil {
				close(urls[i])
				return err
			}
			urls[i] <- u
			return nil
		})
	}()
	err = parallel(conc, n, func(i int) error {
		u, ok := <-urls[i]
		<-ahead
		if !ok {
			return fmt.Errorf("no URL for part %d", i+1)
		}
		req, err := http.NewRequestWithContext(b.ctx, u.Method, u.URL, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.ContentLength = int64(len(data))
		for k, v := range u.Headers {
			req.Header.Set(k, v)
		}
		return doDiscard(req)
	})
	if ferr := <-fetchErr; err == nil {
		err = ferr
	}
	if err != nil {
		return 0, cpuTimes{}, err
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), b.cpuNow(m).sub(cpu0), nil
}

// presignedRun uploads n parts of data with presigned UploadPart URLs signed
// here (the SDK's presigner, no operator): the same requests a direct
// session's client sends, without the part URL call.
func (b *bench) presignedRun(s3c *objectstore.Store, conc, n int, data []byte) (float64, cpuTimes, error) {
	key := "bench/presigned-" + uuid.NewString()
	up, err := s3c.CreateMultipartUpload(b.ctx, key, "application/pdf", "")
	if err != nil {
		return 0, cpuTimes{}, err
	}
	defer func() { _ = s3c.AbortMultipartUpload(b.ctx, key, up) }()
	size := int64(len(data))
	cpu0 := b.cpuOf(0)
	start := time.Now()
	err = parallel(conc, n, func(i int) error {
		p, err := s3c.PresignUploadPart(b.ctx, key, up, int32(i+1), size, objectstore.Checksums{}, 15*time.Minute) //nolint:gosec // at most 10,000 parts
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(b.ctx, p.Method, p.URL, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.ContentLength = size
		for k, v := range p.Headers {
			req.Header.Set(k, v)
		}
		return doDiscard(req)
	})
	if err != nil {
		return 0, cpuTimes{}, err
	}
	return float64(size) * float64(n) / 1e6 / time.Since(start).Seconds(), b.cpuOf(0).sub(cpu0), nil
}
