package detect

// IsUUID reports whether b is a UUID in its canonical 8-4-4-4-12 hex form:
// an identifier, never a secret or a payload, whatever its entropy.
func IsUUID(b []byte) bool {
	if len(b) != 36 {
		return false
	}
	for i, c := range b {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f') {
			return false
		}
	}
	return true
}
