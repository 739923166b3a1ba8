package httpfile

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzParse: any text either fails to parse or yields requests with a known
// method and a URL without spaces, whose bodies hold no request separator;
// expanding them with no variables never fails.
func FuzzParse(f *testing.F) {
	f.Add("@base = http://localhost:8082\n### Create\n# @name create\nPOST {{base}}/api\nContent-Type: application/json\n\n{\"a\":1}\n")
	f.Add("### a\nGET /x HTTP/1.1\n\n###\nPUT /y\nX: {{$processEnv HOME}}\n\nbody\n### b\n")
	f.Add("### \n# @name\nFETCH /x\n")
	f.Add("###\nGET /x\nno header\n")
	f.Add("@a=\n@b = {{a}}{{b}}\n")
	methods := map[string]bool{http.MethodGet: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
		http.MethodDelete: true, http.MethodOptions: true, http.MethodHead: true}
	f.Fuzz(func(t *testing.T, text string) {
		file, err := Parse(text)
		if err != nil {
			return
		}
		for _, r := range file.Requests {
			if !methods[r.Method] || r.URL == "" || strings.ContainsAny(r.URL, " \t\r\n") {
				t.Fatalf("request %+v: bad method or URL", r)
			}
			for _, line := range strings.Split(r.Body, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "###") {
					t.Fatalf("body %q holds a separator", r.Body)
				}
			}
			_ = file.Expand(r, file.Vars, func(string) string { return "" })
		}
	})
}
