package main

import (
	"bytes"
	"strings"
	"testing"
)

// The CLI refuses to leak a token: not over plain http off loopback unless
// --insecure-http, and no ServiceAccount token without an audience.
func TestTheCLIDoesNotLeakTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--api", "http://uploads.mocs.svc:8082", "--token", "t", "status", "x"}, "refusing to send a bearer token over plain http://"},
		{[]string{"--api", "https://uploads.mocs.svc", "--service-account", "ns/sa", "--audience", "", "status", "x"}, "needs an audience"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code == exitOK || !strings.Contains(errOut.String(), tc.want) {
			t.Fatalf("mocupload %v: exit %d, stderr %q; want a refusal saying %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}
