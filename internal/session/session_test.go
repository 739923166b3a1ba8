package session

import (
	"cmp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"k8s.io/utils/ptr"
)

func TestChoosePartSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		requested *int64
		largest   int64
		want      int64
		wantErr   string
		limit     int64 // 0: DefaultMaxPartSize
	}{
		{"small file gets the 8 MiB default", nil, 1, 8 * MiB, "", 0},
		{"80 GiB needs more than 8 MiB", nil, 80 * GiB, 9 * MiB, "", 0}, // ceil(80GiB/10000)=8.19MiB → 9 MiB
		{"exactly 10000 parts of 8 MiB", nil, 10000 * 8 * MiB, 8 * MiB, "", 0},
		{"one byte more rounds up to 9 MiB", nil, 10000*8*MiB + 1, 9 * MiB, "", 0},
		{"requested 5 MiB", ptr.To(5 * MiB), 40 * MiB, 5 * MiB, "", 0},
		{"requested below 5 MiB", ptr.To(5*MiB - 1), 10, 0, "at least", 0},
		{"requested above 5 GiB", ptr.To(5*GiB + 1), 10, 0, "at most", 0},
		{"requested too small for 10000 parts", ptr.To(5 * MiB), 10000*5*MiB + 1, 0, "too small", 0},
		{"requested above MAX_PART_SIZE_BYTES", ptr.To(64*MiB + 1), 10, 0, "at most 67108864", 0},
		{"a file needing parts above MAX_PART_SIZE_BYTES", nil, 10000*64*MiB + 1, 0, "needs parts", 0},
		{"the largest file 64 MiB parts allow", nil, 10000 * 64 * MiB, 64 * MiB, "", 0},
		// MAX_PART_SIZE_BYTES below the 8 MiB default: the limit, not a refusal
		// of every session without partSizeBytes (found by FuzzPartSizing's oracle).
		{"a limit below the default", nil, 100, 6 * MiB, "", 6 * MiB},
		{"the rounded default past a limit the file fits under", nil, 10000 * 6 * MiB, 6*MiB + 12345, "", 6*MiB + 12345},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ChoosePartSize(tc.requested, tc.largest, cmp.Or(tc.limit, DefaultMaxPartSize))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %d, %v; want %d", got, err, tc.want)
			}
			if PartCount(tc.largest, got) > MaxParts {
				t.Fatalf("%d parts exceed %d", PartCount(tc.largest, got), MaxParts)
			}
		})
	}
}

func TestPartSizes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		size, part int64
		count      int
		last       int64
	}{
		{40 * MiB, 5 * MiB, 8, 5 * MiB},
		{40*MiB + 1, 5 * MiB, 9, 1},
		{1, 5 * MiB, 1, 1},
		{5 * MiB, 5 * MiB, 1, 5 * MiB},
	}
	for _, tc := range cases {
		if got := PartCount(tc.size, tc.part); got != tc.count {
			t.Errorf("PartCount(%d, %d) = %d, want %d", tc.size, tc.part, got, tc.count)
		}
		if got := ExpectedPartSize(tc.size, tc.part, tc.count); got != tc.last {
			t.Errorf("last part of %d = %d, want %d", tc.size, got, tc.last)
		}
		if tc.count > 1 {
			if got := ExpectedPartSize(tc.size, tc.part, 1); got != tc.part {
				t.Errorf("first part of %d = %d, want %d", tc.size, got, tc.part)
			}
		}
	}
}

func TestValidateFiles(t *testing.T) {
	t.Parallel()
	lim := Limits{AllowedContentTypes: DefaultContentTypes, MaxFileSizeBytes: 5 * GiB}
	ok := File{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: 10}
	cases := []struct {
		name  string
		files []File
		field string // "" = valid
	}{
		{"valid", []File{ok}, ""},
		{"content type with parameters", []File{{Name: "a.png", ContentType: "image/png; charset=binary", SizeBytes: 1}}, ""},
		{"studio model", []File{{Name: "castle.io", ContentType: "application/x-studio", SizeBytes: 1}}, ""},
		{"no files", nil, "files"},
		{"zero size", []File{{Name: "a.pdf", ContentType: "application/pdf"}}, "files[0].sizeBytes"},
		{"too large", []File{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 5*GiB + 1}}, "files[0].sizeBytes"},
		{"not allowed type", []File{{Name: "a.exe", ContentType: "application/x-msdownload", SizeBytes: 1}}, "files[0].contentType"},
		{"path separator", []File{{Name: "../etc/passwd", ContentType: "application/pdf", SizeBytes: 1}}, "files[0].name"},
		{"dot dot", []File{{Name: "..", ContentType: "application/pdf", SizeBytes: 1}}, "files[0].name"},
		{"control character", []File{{Name: "a\x00.pdf", ContentType: "application/pdf", SizeBytes: 1}}, "files[0].name"},
		{"empty name", []File{{Name: "", ContentType: "application/pdf", SizeBytes: 1}}, "files[0].name"},
		{"duplicate", []File{ok, ok}, "files[1].name"},
		{"content type longer than a resource allows", []File{{Name: "a.pdf", ContentType: "application/pdf; x=" + strings.Repeat("a", 255), SizeBytes: 1}}, "files[0].contentType"},
		{"more files than allowed, before any other check", make([]File, 101), "files"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := ValidateFiles(tc.files, lim)
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("unexpected errors %v", errs)
				}
				return
			}
			if len(errs) == 0 || errs[0].Field != tc.field {
				t.Fatalf("errors = %v, want first on %s", errs, tc.field)
			}
		})
	}
}

// Too many files are refused with one problem, whatever else is wrong with
// them: the count is checked before any work per file.
func TestTooManyFilesIsOneProblem(t *testing.T) {
	t.Parallel()
	errs := ValidateFiles(make([]File, 350000), Limits{AllowedContentTypes: DefaultContentTypes})
	if len(errs) != 1 || errs[0].Field != "files" {
		t.Fatalf("%d problems, first %v; want one on files", len(errs), errs[0])
	}
}

func TestValidateFinalize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, title, description, field string
	}{
		{"valid", "Castle", "A castle with a drawbridge", ""},
		{"200 characters of any script", strings.Repeat("城", 200), "", ""},
		{"no title", "", "", "title"},
		{"title too long", strings.Repeat("a", 201), "", "title"},
		{"NUL in the title", "Cas\x00tle", "", "title"},
		{"escape in the title", "Castle\x1b[31m", "", "title"},
		{"invalid UTF-8 in the title", "Castle\xff", "", "title"},
		{"description too long", "Castle", strings.Repeat("d", 2001), "description"},
		{"NUL in the description", "Castle", "a\x00b", "description"},
		{"newline in the description", "Castle", "line\nline", "description"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := ValidateFinalize(tc.title, tc.description)
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("unexpected %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Fatalf("= %v, want one problem on %s", errs, tc.field)
			}
		})
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"Castle":                  "castle",
		"My Castle!! v2":          "my-castle-v2",
		"  --Über Castle--  ":     "ber-castle",
		"Castle (1)":              "castle-1",
		"Millennium Falcon 75192": "millennium-falcon-75192",
		"日本":                      "moc",
		"!!!":                     "moc",
		"城堡 (1)":                  "moc-1",
		"!!! (12)":                "moc-12",
		"Castle (2)":              "castle-2",
		"A__B":                    "a-b",
	}
	for in, want := range cases {
		if got := Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSuggestSlug(t *testing.T) {
	t.Parallel()
	taken := map[string]bool{"castle": true, "castle-1": true}
	got := SuggestSlug("Castle", func(s string) bool { return taken[s] })
	if got != "castle-2" {
		t.Fatalf("SuggestSlug = %q, want castle-2", got)
	}
	if got := SuggestSlug("Castle", func(string) bool { return false }); got != "castle-1" {
		t.Fatalf("SuggestSlug with nothing taken = %q, want castle-1", got)
	}
	if got := SuggestSlug("城堡", func(s string) bool { return s == "moc-1" }); got != "moc-2" {
		t.Fatalf("SuggestSlug of a title without ASCII letters = %q, want moc-2", got)
	}
}

func TestLockStaleBoundary(t *testing.T) {
	t.Parallel()
	cases := []struct {
		age   time.Duration
		stale bool
	}{
		{4*time.Minute + 59*time.Second + 999*time.Millisecond, false},
		{5 * time.Minute, false},
		{5*time.Minute + time.Millisecond, true},
		{10 * time.Minute, true},
	}
	for _, tc := range cases {
		if got := LockStale(tc.age, DefaultStaleLockAfter); got != tc.stale {
			t.Errorf("lock %s old: stale = %v, want %v", tc.age, got, tc.stale)
		}
	}
}

func TestFileIDIsDeterministic(t *testing.T) {
	t.Parallel()
	s := uuid.New()
	first, again := FileID(s, 0), FileID(s, 0)
	if first != again || first == FileID(s, 1) || first == FileID(uuid.New(), 0) {
		t.Fatal("file ids must be a pure function of (session, index)")
	}
}
