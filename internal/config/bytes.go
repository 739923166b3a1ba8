package config

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

var sizeRE = regexp.MustCompile(`^(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$`)

// quantityRE splits a Kubernetes quantity into its fraction digits and its
// suffix. It asks for a digit, where ParseQuantity would read "Ki" or "." as 0.
var quantityRE = regexp.MustCompile(`^\+?(?:[0-9]+(?:\.([0-9]*))?|\.([0-9]+))(.*)$`)

// decimalSuffix is the power of ten of each decimal suffix.
var decimalSuffix = map[string]int{"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

// maxExponent bounds a decimal exponent ("1e9"): sizes need no more (1e19
// bytes overflows an int64), and ParseQuantity narrows a larger one to 32
// bits unchecked or expands it into a number of as many digits.
const maxExponent = 30

// maxPlaces is where ParseQuantity starts rounding (up, to nano units), which
// could turn a fraction of a byte into a whole number.
const maxPlaces = 9

// ParseBytes parses a byte count: "1048576", "256MiB", "5GiB", "10MB", or a
// Kubernetes quantity ("256Mi", "1Gi", "500M", "1.5Gi", "1e9"). The count
// must be a whole, non-negative number of bytes below 2^63.
func ParseBytes(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if m := sizeRE.FindStringSubmatch(v); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q is too large", v)
		}
		mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
			"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[m[2]]
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large", v)
		}
		return n * mult, nil
	}
	return parseQuantity(v)
}

func parseQuantity(v string) (int64, error) {
	if strings.HasPrefix(v, "-") {
		return 0, fmt.Errorf("size %q is negative", v)
	}
	m := quantityRE.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	places := len(strings.TrimRight(m[1]+m[2], "0"))
	// Binary suffixes add no decimal places; of them only "Ei" looks like an exponent.
	if suffix := m[3]; suffix != "Ei" && len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') {
		e, err := strconv.ParseInt(suffix[1:], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid size %q", v)
		}
		if e > maxExponent || e < -maxExponent {
			return 0, fmt.Errorf("size %q: exponent beyond ±%d", v, maxExponent)
		}
		places -= int(e)
	} else {
		places -= decimalSuffix[suffix]
	}
	if places > maxPlaces {
		return 0, fmt.Errorf("size %q has more than %d decimal places", v, maxPlaces)
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	d := q.AsDec()
	if d.Sign() < 0 {
		return 0, fmt.Errorf("size %q is negative", v)
	}
	n := new(big.Int).Set(d.UnscaledBig())
	if scale := int64(d.Scale()); scale > 0 {
		var rem big.Int
		n.QuoRem(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(scale), nil), &rem)
		if rem.Sign() != 0 {
			return 0, fmt.Errorf("size %q is not a whole number of bytes", v)
		}
	} else if scale < 0 {
		n.Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(-scale), nil))
	}
	// ParseQuantity caps binary quantities at 2^63-1, so that value may be an
	// overflow in disguise.
	if !n.IsInt64() || n.Int64() == math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n.Int64(), nil
}

// FormatBytes renders a default the way the documentation writes it: in the
// largest binary unit that divides it ("256MiB", "64KiB").
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
