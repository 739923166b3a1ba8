package httpfile

import (
	"os"
	"strings"
	"testing"
)

// The story's plan parses, names every request the story lists, and expands.
func TestStoryPlanParses(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../../__http__/story-01726-reliability-resilience.http")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"uploadPartS3Retry", "uploadPartTimeout", "uploadPartInvalidRange",
		"finalizeSlugConflict", "finalizeStaleLock", "finalizeRateLimit", "uploadPartCORS"} {
		if _, ok := f.Get(name); !ok {
			t.Errorf("request %s missing", name)
		}
	}
	r, _ := f.Get("finalizeSlugConflict")
	env := map[string]string{"UPLOAD_API": "http://127.0.0.1:8082", "DEV_USER_TOKEN": "tok"}
	x := f.Expand(r, map[string]string{"sessionId": "s-1", "title": "Castle"}, func(k string) string { return env[k] })
	if x.Method != "POST" || x.URL != "http://127.0.0.1:8082/api/mocs/uploads/finalize" ||
		x.Header.Get("Authorization") != "Bearer tok" || !strings.Contains(x.Body, `"uploadSessionId":"s-1","title":"Castle"`) {
		t.Fatalf("expanded = %+v", x)
	}
	cors, _ := f.Get("uploadPartCORS")
	if cors.Method != "OPTIONS" || cors.Header.Get("Origin") == "" || cors.Body != "" {
		t.Fatalf("cors = %+v", cors)
	}
}
