package units

import "testing"

func TestBytes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		n    int64
		sep  string
		want string
	}{{0, "", "0B"}, {1023, " ", "1023 B"}, {2048, " ", "2.0 KiB"}, {41943040, "", "40.0MiB"}, {5 << 30, "", "5.0GiB"}}
	for _, c := range cases {
		if got := Bytes(c.n, c.sep); got != c.want {
			t.Errorf("Bytes(%d, %q) = %q, want %q", c.n, c.sep, got, c.want)
		}
	}
}
