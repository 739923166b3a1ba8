// Command image writes the manager's OCI image as an archive (oci-archive, as
// `ctr images import` and `skopeo copy oci-archive:` read it) without pulling
// anything: no registry is needed, so it builds where none can be reached.
//
// The image is what the Dockerfile's final stage ships on distroless/static:
// the static binary at /manager, run as 65532:65532, with the CA bundle
// Debian's ca-certificates installs, /etc/passwd and /etc/group naming the
// nonroot user, and an empty /tmp. Layers are reproducible: fixed times,
// owners and order, so the same binary gives the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the Dockerfile's final stage declares; test/e2e's image test holds
// the two in step.
const (
	user    = "65532:65532"
	workdir = "/"
)

var entrypoint = "/manager"

var (
	ports  = []string{"8080/tcp", "8081/tcp", "8082/tcp"}
	labels = map[string]string{
		"org.opencontainers.image.title":       "upload-operator",
		"org.opencontainers.image.description": "Streams large uploads into S3 and finalizes them into a PostgreSQL catalog",
		"org.opencontainers.image.source":      "https://github.com/mocs-dev/upload-operator",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	epoch = time.Unix(0, 0).UTC()
)

func main() {
	binary := flag.String("binary", "bin/manager-linux-amd64", "the static manager binary (CGO_ENABLED=0)")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for the image (Debian's ca-certificates)")
	ref := flag.String("ref", "ghcr.io/mocs-dev/upload-operator:dev", "the name the image is imported under")
	out := flag.String("out", "bin/upload-operator-image.tar", "the OCI archive to write")
	name := flag.String("name", "manager", "the binary's name in the image's root, its entrypoint (pause: the test cluster's sandbox image)")
	flag.Parse()
	entrypoint = "/" + *name
	if err := build(*binary, *caBundle, *ref, *out); err != nil {
		log.Fatal(err)
	}
}

func build(binary, caBundle, ref, out string) error {
	bin, err := os.ReadFile(binary) //nolint:gosec // the caller's own file
	if err != nil {
		return err
	}
	cas, err := os.ReadFile(caBundle) //nolint:gosec // the caller's own file
	if err != nil {
		return fmt.Errorf("CA bundle (Debian's ca-certificates package): %w", err)
	}
	base, err := layer([]file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: cas},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: 65532},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return err
	}
	app, err := layer([]file{{name: strings.TrimPrefix(entrypoint, "/"), mode: 0o755, body: bin}})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), base, app)
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: epoch}
	cf.Config = v1.Config{
		User:         user,
		Entrypoint:   []string{entrypoint},
		WorkingDir:   workdir,
		ExposedPorts: map[string]struct{}{},
		Labels:       labels,
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}
	for _, p := range ports {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return writeArchive(img, ref, out)
}

type file struct {
	name string
	mode int64
	body []byte
	dir  bool
	uid  int
}

// layer is a reproducible tar layer of files (in the order given, which is
// sorted by the caller).
func layer(files []file) (v1.Layer, error) {
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Uid: f.uid, Gid: f.uid, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// writeArchive writes img as an OCI image layout, tarred, naming it ref the
// way containerd's import and the OCI spec read a name.
func writeArchive(img v1.Image, ref, out string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
		"io.containerd.image.name":          ref,
	})); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp) //nolint:gosec // the caller's own path
	if err != nil {
		return err
	}
	if err := tarDir(f, dir); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s (%.1f MiB)\n", out, ref, d, float64(fi.Size())/(1<<20))
	return nil
}

func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	var paths []string
	if err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err == nil && path != dir {
			paths = append(paths, path)
		}
		return err
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}
		if fi.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		} else {
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.IsDir() {
			b, err := os.ReadFile(path) //nolint:gosec // inside our own temporary directory
			if err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
