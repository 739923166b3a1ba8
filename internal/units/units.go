// Package units formats byte counts for people (the Progress column, the CLI).
package units

import "fmt"

// Bytes renders n in binary units with one decimal, sep between number and
// unit: Bytes(41943040, "") = "40.0MiB", Bytes(2048, " ") = "2.0 KiB".
func Bytes(n int64, sep string) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d%sB", n, sep)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%s%ciB", float64(n)/float64(div), sep, "KMGTPE"[exp])
}
