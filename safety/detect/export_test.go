package detect

// SetVector turns the vector scans on or off (when the machine has them)
// and returns the function that restores the setting.
func SetVector(on bool) (restore func()) {
	old := vector
	vector = on && old
	return func() { vector = old }
}
