package keys

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseAge parses a key lifetime or grace: days ("90d") or Go's units
// ("36h", "15m"). The empty string is zero. Negative values are refused.
func ParseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 90d or 36h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 90d or 36h", s)
	}
	return v, nil
}
