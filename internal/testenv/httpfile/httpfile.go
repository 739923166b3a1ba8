// Package httpfile reads the common .http request format (VS Code REST
// Client, JetBrains HTTP Client): `@var = value` lines, requests separated by
// `###`, `# @name` comments, a request line, headers, a blank line, a body;
// `{{var}}` and `{{$processEnv NAME}}` placeholders.
package httpfile

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Request is one request of a file, before or after expansion.
type Request struct {
	Name   string
	Title  string
	Method string
	URL    string
	Header http.Header
	Body   string
}

// File is a parsed .http file.
type File struct {
	Vars     map[string]string
	Requests []Request
}

var (
	varLine  = regexp.MustCompile(`^@([A-Za-z_][\w]*)\s*=\s*(.*)$`)
	nameLine = regexp.MustCompile(`^(?:#|//)\s*@name\s+(\S+)`)
	reqLine  = regexp.MustCompile(`^(GET|POST|PUT|PATCH|DELETE|OPTIONS|HEAD)\s+(\S+)(?:\s+HTTP/\S+)?$`)
)

// Parse reads a file.
func Parse(text string) (File, error) {
	f := File{Vars: map[string]string{}}
	var cur *Request
	inBody := false
	var body []string
	flush := func() {
		if cur != nil && cur.Method != "" {
			cur.Body = strings.TrimSpace(strings.Join(body, "\n"))
			f.Requests = append(f.Requests, *cur)
		}
		cur, inBody, body = nil, false, nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "###"):
			flush()
			cur = &Request{Title: strings.TrimSpace(strings.TrimPrefix(trimmed, "###")), Header: http.Header{}}
			continue
		case cur == nil || cur.Method == "":
			if m := varLine.FindStringSubmatch(trimmed); m != nil {
				f.Vars[m[1]] = strings.TrimSpace(m[2])
				continue
			}
			if cur == nil {
				continue // comments before the first request
			}
			if m := nameLine.FindStringSubmatch(trimmed); m != nil {
				cur.Name = m[1]
				continue
			}
			if trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "//") {
				continue
			}
			m := reqLine.FindStringSubmatch(trimmed)
			if m == nil {
				return f, fmt.Errorf("line %d: want a request line, got %q", n, trimmed)
			}
			cur.Method, cur.URL = m[1], m[2]
		case !inBody:
			if trimmed == "" {
				inBody = true
				continue
			}
			k, v, ok := strings.Cut(trimmed, ":")
			if !ok {
				return f, fmt.Errorf("line %d: want a header, got %q", n, trimmed)
			}
			cur.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		default:
			body = append(body, line)
		}
	}
	flush()
	return f, sc.Err()
}

// Get returns the request with the given @name.
func (f File) Get(name string) (Request, bool) {
	for _, r := range f.Requests {
		if r.Name == name {
			return r, true
		}
	}
	return Request{}, false
}

var placeholder = regexp.MustCompile(`\{\{\s*(\$processEnv\s+)?([\w.]+)\s*\}\}`)

// Expand replaces placeholders: runtime vars first, then the file's vars
// (themselves expanded), and {{$processEnv X}} from env.
func (f File) Expand(r Request, vars map[string]string, env func(string) string) Request {
	var expand func(s string, depth int) string
	expand = func(s string, depth int) string {
		if depth > 5 {
			return s
		}
		return placeholder.ReplaceAllStringFunc(s, func(m string) string {
			sub := placeholder.FindStringSubmatch(m)
			if sub[1] != "" {
				return env(sub[2])
			}
			if v, ok := vars[sub[2]]; ok {
				return v
			}
			if v, ok := f.Vars[sub[2]]; ok {
				return expand(v, depth+1)
			}
			return m
		})
	}
	out := r
	out.URL = expand(r.URL, 0)
	out.Body = expand(r.Body, 0)
	out.Header = http.Header{}
	for k, vs := range r.Header {
		for _, v := range vs {
			out.Header.Add(k, expand(v, 0))
		}
	}
	return out
}
