package session

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func ptr[T any](v T) *T { return &v }

func TestChoosePartSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		requested *int64
		largest   int64
		want      int64
		wantErr   string
	}{
		{"small file gets the 8 MiB default", nil, 1, 8 * MiB, ""},
		{"80 GiB needs more than 8 MiB", nil, 80 * GiB, 9 * MiB, ""}, // ceil(80GiB/10000)=8.19MiB → 9 MiB
		{"exactly 10000 parts of 8 MiB", nil, 10000 * 8 * MiB, 8 * MiB, ""},
		{"one byte more rounds up to 9 MiB", nil, 10000*8*MiB + 1, 9 * MiB, ""},
		{"requested 5 MiB", ptr(5 * MiB), 40 * MiB, 5 * MiB, ""},
		{"requested below 5 MiB", ptr(5*MiB - 1), 10, 0, "at least"},
		{"requested above 5 GiB", ptr(5*GiB + 1), 10, 0, "at most"},
		{"requested too small for 10000 parts", ptr(5 * MiB), 10000*5*MiB + 1, 0, "too small"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ChoosePartSize(tc.requested, tc.largest)
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

func TestSlug(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"Castle":                  "castle",
		"My Castle!! v2":          "my-castle-v2",
		"  --Über Castle--  ":     "ber-castle",
		"Castle (1)":              "castle-1",
		"Millennium Falcon 75192": "millennium-falcon-75192",
		"日本":                      "",
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
	if FileID(s, 0) != FileID(s, 0) || FileID(s, 0) == FileID(s, 1) || FileID(s, 0) == FileID(uuid.New(), 0) {
		t.Fatal("file ids must be a pure function of (session, index)")
	}
}
