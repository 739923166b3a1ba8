// Command mocupload uploads a MOC's files (building instructions, images,
// models) to the upload-operator from a terminal, with live progress, resume
// and finalize.
//
//	mocupload upload --title "Castle" castle.pdf castle.io
//	mocupload resume SESSION_ID castle.pdf castle.io [--title "Castle"]
//	mocupload status SESSION_ID
//	mocupload finalize SESSION_ID --title "Castle"
//
// Exit codes: 0 done; 1 usage or local error; 2 the API refused (see the
// message); 3 slug conflict (choose another title); 4 parts missing (resume);
// 5 session expired (start over); 130 interrupted (the printed resume command
// continues).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mocs-dev/upload-operator/internal/units"
	"github.com/mocs-dev/upload-operator/pkg/client"
)

// Exit codes.
const (
	exitOK          = 0
	exitUsage       = 1
	exitAPI         = 2
	exitSlug        = 3
	exitIncomplete  = 4
	exitExpired     = 5
	exitDiffers     = 6
	exitInterrupted = 130
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	api, token, serviceAccount, audience, caFile, output, correlationID string
	concurrency                                                         int
	insecureHTTP                                                        bool
	stdout, stderr                                                      io.Writer
	interrupted                                                         context.Context
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: mocupload [--api URL] [--token T | --service-account NS/NAME] [--output text|json] COMMAND

commands:
  upload --title TITLE [--description D] [--part-size BYTES] [--slug auto|prompt] [--direct] [--no-checksum] FILE...
  resume SESSION_ID FILE... [--title TITLE]   send the missing parts (and finalize with --title)
  status SESSION_ID                           what the server has received
  finalize SESSION_ID --title TITLE [--description D] [--slug auto|prompt]
  verify SESSION_ID|MOC_ID FILE...            compare local files with the session's checksums
                                              (once finalized: those verified and kept in the catalog)

The API URL comes from --api or UPLOAD_API (https://… is verified against the system's
CAs, or --ca-file / UPLOAD_API_CA_FILE; plain http:// only to loopback unless
--insecure-http); the token from --token, MOCUPLOAD_TOKEN,
DEV_USER_TOKEN (make dev), or --service-account NS/NAME (a token requested through
the current kubeconfig for --audience, UPLOAD_TOKEN_AUDIENCE or uploads.mocs.dev).
exit codes: 0 done, 1 usage, 2 API error, 3 slug conflict, 4 parts missing, 5 expired,
6 a file is not the one declared (verify, resume, finalize), 130 interrupted
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	o := options{stdout: stdout, stderr: stderr}
	global := flag.NewFlagSet("mocupload", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { usage(stderr) }
	global.StringVar(&o.api, "api", os.Getenv("UPLOAD_API"), "upload API base URL")
	global.StringVar(&o.token, "token", firstEnv("MOCUPLOAD_TOKEN", "DEV_USER_TOKEN"), "bearer token")
	global.StringVar(&o.serviceAccount, "service-account", os.Getenv("MOCUPLOAD_SERVICE_ACCOUNT"), "NS/NAME: request a token through the kubeconfig")
	global.StringVar(&o.audience, "audience", envOr("UPLOAD_TOKEN_AUDIENCE", client.DefaultAudience), "the audience of --service-account tokens")
	global.StringVar(&o.caFile, "ca-file", os.Getenv("UPLOAD_API_CA_FILE"), "PEM CA bundle that signs the upload API's certificate")
	global.StringVar(&o.output, "output", "text", "text or json")
	global.StringVar(&o.correlationID, "correlation-id", "", "X-Correlation-ID for every request")
	global.IntVar(&o.concurrency, "concurrency", 4, "parts in flight")
	global.BoolVar(&o.insecureHTTP, "insecure-http", false, "send the token over plain http:// to a host that is not loopback")
	if err := global.Parse(args); err != nil {
		return exitUsage
	}
	rest := global.Args()
	if len(rest) == 0 {
		usage(stderr)
		return exitUsage
	}
	if o.output != "text" && o.output != "json" {
		fmt.Fprintln(stderr, "mocupload: --output must be text or json")
		return exitUsage
	}
	if o.api == "" {
		fmt.Fprintln(stderr, "mocupload: no API URL: set UPLOAD_API or --api")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.interrupted = ctx
	c, err := o.client(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "mocupload:", err)
		return exitUsage
	}
	cmd, cmdArgs := rest[0], rest[1:]
	switch cmd {
	case "upload":
		return o.upload(ctx, c, cmdArgs)
	case "resume":
		return o.resume(ctx, c, cmdArgs)
	case "status":
		return o.status(ctx, c, cmdArgs)
	case "finalize":
		return o.finalize(ctx, c, cmdArgs)
	case "verify":
		return o.verify(ctx, c, cmdArgs)
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "mocupload: unknown command %q\n", cmd)
	usage(stderr)
	return exitUsage
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (o *options) client(ctx context.Context) (*client.Client, error) {
	var ts client.TokenSource
	switch {
	case o.token != "":
		ts = client.StaticToken(o.token)
	case o.serviceAccount != "":
		ns, name, ok := strings.Cut(o.serviceAccount, "/")
		if !ok {
			return nil, errors.New("--service-account wants NAMESPACE/NAME")
		}
		if o.audience == "" {
			return nil, client.ErrNoAudience
		}
		var err error
		if ts, err = serviceAccountToken(ctx, ns, name, o.audience); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("no token: set --token, MOCUPLOAD_TOKEN or --service-account")
	}
	c := client.New(o.api, ts)
	if o.caFile != "" {
		if err := c.UseCAFile(o.caFile); err != nil {
			return nil, err
		}
	}
	c.Concurrency = o.concurrency
	c.CorrelationID = o.correlationID
	c.AllowInsecureHTTP = o.insecureHTTP
	return c, nil
}

// parseCmd parses a command's flags wherever they are among its arguments.
func parseCmd(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (o *options) slugPolicy(s string) (client.SlugPolicy, error) {
	switch s {
	case "", "server":
		return client.FollowServer, nil
	case "auto":
		return client.AutoAppend, nil
	case "prompt":
		return client.ReturnConflict, nil
	}
	return 0, fmt.Errorf("--slug must be auto, prompt or server")
}

func (o *options) upload(ctx context.Context, c *client.Client, args []string) int {
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	title := fs.String("title", "", "MOC title (required)")
	desc := fs.String("description", "", "MOC description")
	partSize := fs.Int64("part-size", 0, "part size in bytes (default: the server's)")
	slug := fs.String("slug", "", "on a slug conflict: auto (append \" (N)\"), prompt (stop), or the server's strategy")
	direct := fs.Bool("direct", false, "send parts straight to S3 with presigned URLs (a direct session)")
	noChecksum := fs.Bool("no-checksum", false, "declare no whole-file CRC64NVME (it costs a read of each file first)")
	files, err := parseCmd(fs, args)
	if err != nil {
		return exitUsage
	}
	policy, err := o.slugPolicy(*slug)
	if err != nil || *title == "" || len(files) == 0 {
		fmt.Fprintln(o.stderr, "mocupload upload: --title and at least one FILE are required")
		return exitUsage
	}
	if *direct {
		c.Transfer = "direct"
	}
	c.NoChecksums = *noChecksum
	specs, err := c.Specs(files) // with each file's CRC64NVME, verified at finalize
	if err != nil {
		fmt.Fprintln(o.stderr, "mocupload:", err)
		return exitUsage
	}
	s, err := c.CreateSession(ctx, specs, *partSize)
	if err != nil {
		return o.fail(err, "", files)
	}
	o.info("session %s: %d file(s), parts of %s, %s transfer\n", s.SessionID, len(s.Files), units.Bytes(s.PartSizeBytes, " "), s.Transfer)
	return o.sendAndFinalize(ctx, c, s.SessionID, files, *title, *desc, policy)
}

func (o *options) resume(ctx context.Context, c *client.Client, args []string) int {
	fs := flag.NewFlagSet("resume", flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	title := fs.String("title", "", "finalize with this title once complete")
	desc := fs.String("description", "", "MOC description")
	slug := fs.String("slug", "", "auto, prompt or server")
	pos, err := parseCmd(fs, args)
	policy, perr := o.slugPolicy(*slug)
	if err != nil || perr != nil || len(pos) < 2 {
		fmt.Fprintln(o.stderr, "mocupload resume: SESSION_ID and the session's FILEs, in order, are required")
		return exitUsage
	}
	return o.sendAndFinalize(ctx, c, pos[0], pos[1:], *title, *desc, policy)
}

func (o *options) sendAndFinalize(ctx context.Context, c *client.Client, id string, files []string, title, desc string, policy client.SlugPolicy) int {
	view := o.newView(files)
	c.OnProgress = view.update
	sent, err := c.Upload(ctx, id, files)
	view.done(err == nil)
	if err != nil {
		return o.fail(err, id, files)
	}
	o.info("%d part(s) sent\n", sent)
	if title == "" {
		return o.result(map[string]any{"sessionId": id, "partsSent": sent, "finalized": false})
	}
	moc, err := c.Finalize(ctx, id, title, desc, policy)
	if err != nil {
		return o.fail(err, id, files)
	}
	return o.mocResult(id, moc)
}

func (o *options) status(ctx context.Context, c *client.Client, args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(o.stderr, "mocupload status: SESSION_ID is required")
		return exitUsage
	}
	s, err := c.GetSession(ctx, args[0])
	if err != nil {
		return o.fail(err, args[0], nil)
	}
	if o.output == "json" {
		return o.result(s)
	}
	fmt.Fprintf(o.stdout, "session %s: %s, parts of %s, expires %s\n", s.SessionID, s.Status, units.Bytes(s.PartSizeBytes, " "), s.ExpiresAt)
	for _, f := range s.Files {
		var got int64
		for _, p := range f.Parts {
			got += p.SizeBytes
		}
		fmt.Fprintf(o.stdout, "  %s  %s/%s  %d/%d parts  (file id %s)\n", f.Name, units.Bytes(got, " "), units.Bytes(f.SizeBytes, " "), len(f.Parts), f.PartCount, f.FileID)
	}
	return exitOK
}

// verify compares local files with what a session declared or, once
// finalized, what finalize verified and the catalog keeps (by session id or
// MOC id): CRC64NVME, and SHA-256 where declared.
func (o *options) verify(ctx context.Context, c *client.Client, args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(o.stderr, "mocupload verify: a SESSION_ID or MOC_ID and its FILEs, in order, are required")
		return exitUsage
	}
	type known struct {
		name string
		sum  *client.Checksum
	}
	var kept []known
	id, status := args[0], ""
	s, err := c.GetSession(ctx, id)
	var ae *client.APIError
	switch {
	case err == nil:
		status = s.Status
		for _, f := range s.Files {
			kept = append(kept, known{f.Name, f.Checksum})
		}
	case errors.As(err, &ae) && ae.Code == "SESSION_NOT_FOUND":
		m, merr := c.GetMOC(ctx, id)
		if merr != nil {
			return o.fail(merr, "", nil)
		}
		status = "finalized (MOC " + m.Slug + ")"
		for _, f := range m.Files {
			kept = append(kept, known{f.Name, f.Checksum})
		}
	default:
		return o.fail(err, id, nil)
	}
	files := args[1:]
	if len(files) != len(kept) {
		fmt.Fprintf(o.stderr, "mocupload verify: %s has %d file(s), %d given\n", id, len(kept), len(files))
		return exitUsage
	}
	type verdict struct {
		File, Name, Result string
		Expected, Actual   client.Checksum
	}
	var out []verdict
	code := exitOK
	for i, k := range kept {
		v := verdict{File: files[i], Name: k.name, Result: "same"}
		if k.sum == nil {
			v.Result = "unknown (no checksum of it is kept)"
			out = append(out, v)
			continue
		}
		v.Expected = *k.sum
		got, err := client.LocalChecksum(files[i], k.sum.SHA256 != "")
		if err != nil {
			fmt.Fprintln(o.stderr, "mocupload:", err)
			return exitUsage
		}
		v.Actual = got
		if (k.sum.CRC64NVME != "" && got.CRC64NVME != k.sum.CRC64NVME) || (k.sum.SHA256 != "" && got.SHA256 != k.sum.SHA256) {
			v.Result, code = "DIFFERENT", exitDiffers
		}
		out = append(out, v)
	}
	if o.output == "json" {
		_ = json.NewEncoder(o.stdout).Encode(map[string]any{"id": id, "status": status, "files": out})
		return code
	}
	for _, v := range out {
		fmt.Fprintf(o.stdout, "%s  %s (%s)", v.Result, v.File, v.Name)
		if v.Result == "DIFFERENT" {
			fmt.Fprintf(o.stdout, ": crc64nvme %s, expected %s", v.Actual.CRC64NVME, v.Expected.CRC64NVME)
			if v.Expected.SHA256 != "" {
				fmt.Fprintf(o.stdout, "; sha256 %s, expected %s", v.Actual.SHA256, v.Expected.SHA256)
			}
		}
		fmt.Fprintln(o.stdout)
	}
	return code
}

func (o *options) finalize(ctx context.Context, c *client.Client, args []string) int {
	fs := flag.NewFlagSet("finalize", flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	title := fs.String("title", "", "MOC title (required)")
	desc := fs.String("description", "", "MOC description")
	slug := fs.String("slug", "", "auto, prompt or server")
	pos, err := parseCmd(fs, args)
	policy, perr := o.slugPolicy(*slug)
	if err != nil || perr != nil || len(pos) != 1 || *title == "" {
		fmt.Fprintln(o.stderr, "mocupload finalize: SESSION_ID and --title are required")
		return exitUsage
	}
	moc, err := c.Finalize(ctx, pos[0], *title, *desc, policy)
	if err != nil {
		return o.fail(err, pos[0], nil)
	}
	return o.mocResult(pos[0], moc)
}

func (o *options) mocResult(id string, moc *client.MOC) int {
	if o.output == "json" {
		return o.result(map[string]any{"sessionId": id, "mocId": moc.MocID, "slug": moc.Slug, "title": moc.Title,
			"created": moc.Created, "files": moc.Files})
	}
	verb := "created"
	if !moc.Created {
		verb = "already finalized as"
	}
	fmt.Fprintf(o.stdout, "MOC %s %q (slug %s, id %s) with %d file(s)\n", verb, moc.Title, moc.Slug, moc.MocID, len(moc.Files))
	return exitOK
}

func (o *options) result(v any) int {
	if o.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	return exitOK
}

// info prints progress chatter in text mode (to stderr, so stdout stays the result).
func (o *options) info(format string, args ...any) {
	if o.output == "text" {
		fmt.Fprintf(o.stderr, format, args...)
	}
}

// fail reports err with the exit code for it; an interrupted or failed upload
// prints the command that resumes it.
func (o *options) fail(err error, sessionID string, files []string) int {
	if o.interrupted != nil && o.interrupted.Err() != nil {
		err = context.Canceled // whatever the last attempt said, the user stopped it
	}
	code := exitAPI
	var ae *client.APIError
	switch {
	case errors.Is(err, context.Canceled):
		code = exitInterrupted
	case errors.As(err, &ae) && ae.Code == "SLUG_CONFLICT":
		code = exitSlug
	case errors.As(err, &ae) && ae.Code == "INCOMPLETE_UPLOAD":
		code = exitIncomplete
	case errors.As(err, &ae) && ae.Code == "SESSION_EXPIRED":
		code = exitExpired
	case errors.As(err, &ae) && ae.Code == "CHECKSUM_MISMATCH", errors.Is(err, client.ErrFileChanged):
		code = exitDiffers
	case !errors.As(err, &ae):
		code = exitUsage
		if sessionID != "" {
			code = exitAPI
		}
	}
	resume := ""
	if sessionID != "" && len(files) > 0 && code != exitExpired {
		resume = "mocupload resume " + sessionID + " " + strings.Join(quoteAll(files), " ")
	}
	if o.output == "json" {
		out := map[string]any{"error": err.Error(), "exitCode": code}
		if ae != nil {
			out["api"] = ae.Body
		}
		if sessionID != "" {
			out["sessionId"] = sessionID
		}
		if resume != "" {
			out["resume"] = resume
		}
		_ = json.NewEncoder(o.stdout).Encode(out)
		return code
	}
	switch code {
	case exitInterrupted:
		fmt.Fprintln(o.stderr, "mocupload: interrupted; the session keeps what was sent")
	case exitSlug:
		fmt.Fprintf(o.stderr, "mocupload: the title's slug is taken; %v is free (retry with --title %q or --slug auto)\n",
			ae.Body["suggestedSlug"], ae.Body["suggestedSlug"])
	default:
		fmt.Fprintln(o.stderr, "mocupload:", describe(err))
	}
	if resume != "" {
		fmt.Fprintln(o.stderr, "resume with:", resume)
	}
	return code
}

func describe(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Body != nil {
		b, _ := json.Marshal(ae.Body)
		return fmt.Sprintf("%v: %s", err, b)
	}
	return err.Error()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if strings.ContainsAny(s, " '\"$\\") {
			s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		out[i] = s
	}
	return out
}
