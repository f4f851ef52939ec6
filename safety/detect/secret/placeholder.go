package secret

import (
	"bytes"
	"encoding/base64"
)

// Placeholders and documentation keys. Providers print sample keys in
// their docs, READMEs fill a token's shape with x's or zeros, and config
// templates name keys that are not secrets at all (public_key, foreignKey,
// token_type). None of these is a leak, and flagging them teaches users to
// ignore the filter.

// sampleKeys are published documentation keys, found anywhere in a
// candidate: AWS's IAM and STS examples, the GitHub docs' personal access
// token, Stripe's and Slack's API reference keys, the signature of
// jwt.io's example token.
var sampleKeys = [][]byte{
	[]byte("AKIAIOSFODNN7EXAMPLE"), []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
	[]byte("AKIAI44QH8DHBEXAMPLE"), []byte("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
	[]byte("ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
	[]byte("4eC39HqLyjWDarjtT1zdp7dc"),
	[]byte("xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"),
	[]byte("SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
}

// docMarks, found in a token's body ignoring case, make it a placeholder.
var docMarks = [][]byte{[]byte("example"), []byte("xxxx"), []byte("your_"), []byte("your-"), []byte("redacted"), []byte("placeholder")}

// placeholderBody reports whether the body of a prefixed token is a
// placeholder rather than a generated key: a documentation marker
// (EXAMPLE, xxxx, your-…), a run of six or more of one character, an
// ascending run of eight or more ("abcdefgh", "12345678"), or too few
// distinct characters for a random string of its length.
func placeholderBody(b []byte) bool {
	var low [512]byte
	l := low[:min(len(b), len(low))]
	for i := range l {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		l[i] = c
	}
	for _, m := range docMarks {
		if bytes.Contains(l, m) {
			return true
		}
	}
	same, up := 1, 1
	var seen [256]bool
	distinct := 0
	for i, c := range l {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
		if i == 0 {
			continue
		}
		if c == l[i-1] {
			same++
		} else {
			same = 1
		}
		if c == l[i-1]+1 {
			up++
		} else {
			up = 1
		}
		if same >= 6 || up >= 8 {
			return true
		}
	}
	// A random string over 32 or more symbols of length n has about
	// min(n, 32)·(1-1/e) distinct ones at the very least; placeholders
	// such as "abcabcabc…" or "0a0a0a0a…" have a handful.
	return len(l) >= 16 && distinct < min(len(l), 32)/3
}

// isSample reports whether a candidate holds a published sample key.
func isSample(b []byte) bool {
	for _, s := range sampleKeys {
		if bytes.Contains(b, s) {
			return true
		}
	}
	return false
}

// notSecretNames are key names (lower case, without '_', '-' and '.')
// that end in a secret keyword but name something else: public keys,
// database and map keys, CSRF tokens (sent to every browser), token
// counts and types, pagination cursors.
var notSecretNames = [][]byte{
	[]byte("publickey"), []byte("pubkey"), []byte("foreignkey"), []byte("primarykey"), []byte("uniquekey"),
	[]byte("sortkey"), []byte("partitionkey"), []byte("rangekey"), []byte("topologykey"),
	[]byte("cachekey"), []byte("lookupkey"), []byte("mapkey"), []byte("routingkey"), []byte("idempotencykey"),
	[]byte("indexkey"), []byte("labelkey"),
	[]byte("csrftoken"), []byte("xsrftoken"), []byte("csrfkey"), []byte("tokentype"), []byte("maxtokens"),
	[]byte("nexttoken"), []byte("pagetoken"), []byte("nextpagetoken"), []byte("continuationtoken"),
	[]byte("cancellationtoken"), []byte("synctoken"), []byte("resumetoken"), []byte("tokenendpoint"),
	[]byte("publishablekey"), []byte("sitekey"), []byte("recaptchakey"), []byte("passwordfield"),
	[]byte("translationkey"), []byte("i18nkey"), []byte("messagekey"), []byte("storagekey"), []byte("registrykey"),
}

// notSecretName reports whether the key name ending at k is one of
// notSecretNames.
func notSecretName(text []byte, k int) bool {
	var buf [keyLookback]byte
	s := foldKeyName(text, k, &buf)
	for _, n := range notSecretNames {
		if bytes.HasSuffix(s, n) {
			return true
		}
	}
	return false
}

// urlPlaceholders are user:password passwords that stand for one.
var urlPlaceholders = []string{"pass", "password", "passwd", "pwd", "mypass", "mypassword", "secret", "changeme",
	"yourpassword", "your_password", "your-password", "xxx", "xxxx", "xxxxxx", "pw", "p@ssw0rd", "example"}

// placeholderPassword reports whether the password of a URL's userinfo is
// a template or a placeholder: "%s", "${DB_PASSWORD}", "<password>",
// "{password}", "****", "pass".
func placeholderPassword(p []byte) bool {
	switch p[0] {
	case '%', '$', '<', '{', '*', '[':
		return true
	}
	var low [32]byte
	if len(p) > len(low) {
		return false
	}
	for i, c := range p {
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		low[i] = c
	}
	for _, s := range urlPlaceholders {
		if string(low[:len(p)]) == s {
			return true
		}
	}
	return placeholderBody(p)
}

// encodedValue returns the text a generic value decodes to when it is
// standard base64 of printable ASCII (as Kubernetes Secret manifests hold
// their values), so that the decoded value is what gets judged.
func encodedValue(v []byte, buf []byte) ([]byte, bool) {
	if len(v)%4 != 0 || len(v) < 8 {
		return nil, false
	}
	n, err := base64.StdEncoding.Decode(buf, v)
	if err != nil || n == 0 {
		return nil, false
	}
	for _, c := range buf[:n] {
		if c < 0x20 || c > 0x7e {
			return nil, false
		}
	}
	return buf[:n], true
}
