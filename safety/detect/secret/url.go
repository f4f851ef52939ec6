package secret

// URL credentials: scheme://user:password@host, as in database URLs
// ("postgres://admin:S3cr3t@db") and basic-auth links. The userinfo
// ("admin:S3cr3t") is the match; the scheme and host stay readable. (The
// match starts three bytes after its anchor, the scheme's ':', so a window
// starting at the match still sees the anchor, as scan's lo requires.)

var (
	schemeChar = class("A-Za-z0-9+.\\-")
	// userChar: the userinfo characters of RFC 3986 but ':' and '@'.
	userChar = class("A-Za-z0-9._~%!$&'()*+,;=\\-")
	// passChar: the same, and ':'.
	passChar = class("A-Za-z0-9._~%!$&'()*+,;=:\\-")
	hostChar = class("A-Za-z0-9[_\\-")
)

// maxUserinfo bounds the user and the password each.
const maxUserinfo = 256

// urlCredential evaluates a URL's userinfo after the scheme's ':' at p.
func urlCredential(text []byte, p int) cand {
	n := len(text)
	s := p
	for s > 0 && p-s < 32 && schemeChar[text[s-1]] {
		s--
	}
	if s == p || !alnum[text[s]] || text[s] >= '0' && text[s] <= '9' || s > 0 && (word[text[s-1]] || schemeChar[text[s-1]]) {
		return cand{}
	}
	// Open candidates are held from the scheme's ':', which Find must
	// see again as an anchor.
	open := cand{start: p, end: n, name: "url-credential", open: true}
	switch {
	case p+1 == n, p+2 == n && text[p+1] == '/':
		return open
	case !hasPrefix(text[p+1:], "//"):
		return cand{}
	}
	u := p + 3
	i := u
	for i < n && i-u <= maxUserinfo && userChar[text[i]] {
		i++
	}
	switch {
	case i == n && i-u <= maxUserinfo:
		return open
	case i == n || i == u || text[i] != ':':
		return cand{}
	}
	pw := i + 1
	j := pw
	for j < n && j-pw <= maxUserinfo && passChar[text[j]] {
		j++
	}
	switch {
	case j == n && j-pw <= maxUserinfo:
		return open
	case j == n || j == pw || text[j] != '@':
		return cand{}
	case j+1 == n:
		return open
	case !hostChar[text[j+1]]:
		return cand{}
	}
	return cand{start: u, end: j, name: "url-credential", ok: !placeholderPassword(text[pw:j])}
}
