package tlsca

import "path/filepath"

// Config is the listener's TLS settings ([server.tls] in Warden's TOML).
// `warden tls init` makes a CA and the files.
type Config struct {
	CertFile     string `toml:"cert_file"`
	KeyFile      string `toml:"key_file"`
	MinVersion   string `toml:"min_version"`    // "1.3" (default) or "1.2"
	ClientCAFile string `toml:"client_ca_file"` // set: client certificates are required
}

// On reports whether TLS is configured.
func (t Config) On() bool { return t.CertFile != "" }

// Validate reports each bad setting to bad, named as in the TOML.
func (t Config) Validate(bad func(string, ...any)) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("server.tls: cert_file and key_file go together")
	}
	for name, f := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "client_ca_file": t.ClientCAFile} {
		if f != "" && !filepath.IsAbs(f) {
			bad("server.tls.%s must be an absolute path, got %q", name, f)
		}
	}
	if t.ClientCAFile != "" && !t.On() {
		bad("server.tls.client_ca_file needs cert_file and key_file")
	}
	switch t.MinVersion {
	case "1.3", "1.2":
	default:
		bad("server.tls.min_version must be \"1.3\" or \"1.2\", got %q", t.MinVersion)
	}
}
