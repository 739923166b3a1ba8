package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// `make image` builds the image without pulling anything, and its config is
// what the Dockerfile's final stage declares (user, entrypoint, working
// directory, ports, labels): users with a registry build the Dockerfile, the
// cluster test here runs this archive, and neither may drift from the other.
func TestImageIsTheDockerfilesFinalStage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "image.tar")
	cmd := exec.Command("make", "image", "IMAGE_ARCHIVE="+out, "IMG=example.test/upload-operator:v9.9.9")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, b)
	}
	img := readOCIArchive(t, out)
	want := dockerfileFinalStage(t, filepath.Join(repo, "Dockerfile"))

	if img.name != "example.test/upload-operator:v9.9.9" {
		t.Errorf("image named %q, want IMG", img.name)
	}
	c := img.config.Config
	if c.User != want.user {
		t.Errorf("user %q, Dockerfile %q", c.User, want.user)
	}
	if !slices.Equal(c.Entrypoint, want.entrypoint) {
		t.Errorf("entrypoint %q, Dockerfile %q", c.Entrypoint, want.entrypoint)
	}
	if c.WorkingDir != want.workdir {
		t.Errorf("working directory %q, Dockerfile %q", c.WorkingDir, want.workdir)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if !slices.Equal(ports, want.ports) {
		t.Errorf("ports %v, Dockerfile %v", ports, want.ports)
	}
	for k, v := range want.labels {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, Dockerfile %q", k, c.Labels[k], v)
		}
	}
	if len(c.Labels) != len(want.labels) {
		t.Errorf("labels %v, Dockerfile %v", c.Labels, want.labels)
	}
	if img.config.OS != "linux" || img.config.Architecture != "amd64" {
		t.Errorf("platform %s/%s", img.config.OS, img.config.Architecture)
	}

	// The files: the entrypoint a static executable (distroless/static has
	// no loader), the user known to /etc/passwd, CAs for S3 over https.
	manager, ok := img.files[strings.TrimPrefix(want.entrypoint[0], "/")]
	if !ok || manager.mode&0o111 == 0 {
		t.Fatalf("%s missing or not executable: %+v", want.entrypoint[0], manager)
	}
	ef, err := elf.NewFile(bytes.NewReader(manager.body))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the manager is dynamically linked: it cannot run on a static base")
		}
	}
	uid := strings.SplitN(want.user, ":", 2)[0]
	if !regexp.MustCompile(`(?m)^[a-z]+:x:` + uid + `:`).Match(img.files["etc/passwd"].body) {
		t.Errorf("/etc/passwd has no user %s:\n%s", uid, img.files["etc/passwd"].body)
	}
	if !bytes.Contains(img.files["etc/ssl/certs/ca-certificates.crt"].body, []byte("BEGIN CERTIFICATE")) {
		t.Error("no CA bundle at /etc/ssl/certs/ca-certificates.crt")
	}
	if tmp, ok := img.files["tmp"]; !ok || tmp.mode&0o1777 != 0o1777 {
		t.Errorf("/tmp missing or not world-writable with the sticky bit: %+v", tmp)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %d layers, %.1f MiB", img.name, len(img.manifest.Layers), float64(fi.Size())/(1<<20))
}

type stage struct {
	user, workdir string
	entrypoint    []string
	ports         []string
	labels        map[string]string
}

// dockerfileFinalStage reads the instructions after the last FROM (with
// continuation lines joined).
func dockerfileFinalStage(t *testing.T, path string) stage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	st := stage{labels: map[string]string{}, workdir: "/"}
	for _, l := range lines {
		instr, args, _ := strings.Cut(l, " ")
		args = strings.TrimSpace(args)
		switch strings.ToUpper(instr) {
		case "FROM":
			st = stage{labels: map[string]string{}, workdir: "/"}
		case "USER":
			st.user = args
		case "WORKDIR":
			st.workdir = args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(args), &st.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: not the exec form: %v", args, err)
			}
		case "EXPOSE":
			for _, p := range strings.Fields(args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				st.ports = append(st.ports, p)
			}
		case "LABEL":
			for _, m := range regexp.MustCompile(`([\w.-]+)="([^"]*)"`).FindAllStringSubmatch(args, -1) {
				st.labels[m[1]] = m[2]
			}
		}
	}
	slices.Sort(st.ports)
	if st.user == "" || len(st.entrypoint) == 0 {
		t.Fatalf("the Dockerfile's final stage names no USER or ENTRYPOINT: %+v", st)
	}
	return st
}

type ociImage struct {
	name     string
	manifest struct {
		Config struct{ Digest string }
		Layers []struct {
			Digest, MediaType string
		}
	}
	config struct {
		OS, Architecture string
		Config           struct {
			User         string
			Entrypoint   []string
			WorkingDir   string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		}
	}
	files map[string]imageFile
}

type imageFile struct {
	mode int64
	body []byte
}

// readOCIArchive reads an OCI image layout archive with one image: its
// name, manifest, config and the files of its layers (later layers win).
func readOCIArchive(t *testing.T, path string) ociImage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string][]byte{}
	eachTarEntry(t, f, func(h *tar.Header, b []byte) { entries[strings.TrimPrefix(h.Name, "./")] = b })
	blob := func(digest string) []byte {
		b, ok := entries["blobs/"+strings.Replace(digest, ":", "/", 1)]
		if !ok {
			t.Fatalf("blob %s missing", digest)
		}
		return b
	}
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(entries["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests", err, len(index.Manifests))
	}
	var img ociImage
	img.name = index.Manifests[0].Annotations["io.containerd.image.name"]
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &img.manifest); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(blob(img.manifest.Config.Digest), &img.config); err != nil {
		t.Fatal(err)
	}
	img.files = map[string]imageFile{}
	for _, l := range img.manifest.Layers {
		var r io.Reader = bytes.NewReader(blob(l.Digest))
		if strings.HasSuffix(l.MediaType, "gzip") {
			gz, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = gz
		}
		eachTarEntry(t, r, func(h *tar.Header, b []byte) {
			img.files[strings.TrimSuffix(h.Name, "/")] = imageFile{mode: h.Mode, body: b}
		})
	}
	return img
}

// eachTarEntry calls f with each entry of the tar stream r and its contents.
func eachTarEntry(t *testing.T, r io.Reader, f func(*tar.Header, []byte)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f(h, b)
	}
}
