package models

import (
	"regexp"
	"strings"

	"github.com/ollama/ollama/types/model"
)

// keptPrefix starts the tag of a kept version. Ollama's names have no
// room for NAME@digest (an '@' starts a digest reference), so a version
// is kept under the same registry, namespace and model with the tag
// "warden-v-<12 hex of its manifest digest>.<tag>".
const keptPrefix = "warden-v-"

var keptTag = regexp.MustCompile(`^warden-v-[0-9a-f]{12}\.`)

// maxTag is the longest tag Ollama accepts.
const maxTag = 80

// KeptName is the hidden name a version of name with manifest digest is
// kept under, so its blobs stay referenced after the name moves on; ok is
// false for a name that is no model name or a digest shorter than 12 hex.
func KeptName(name, digest string) (string, bool) {
	canon, ok := Canonical(name)
	d := bareDigest(digest)
	if !ok || len(d) < 12 {
		return "", false
	}
	n := model.ParseName(canon)
	tag := keptPrefix + d[:12] + "." + n.Tag
	if len(tag) > maxTag {
		tag = tag[:maxTag]
	}
	n.Tag = tag
	return strings.ToLower(n.String()), true
}

// IsKept reports whether name is a kept version (KeptName): never served,
// never listed as a model of its own.
func IsKept(name string) bool {
	canon, ok := Canonical(name)
	return ok && keptTag.MatchString(model.ParseName(canon).Tag)
}

// keptOf is the name a kept version belongs to, with the tag cut short
// if the original was; "" for a name that is no kept version.
func keptOf(name string) string {
	canon, ok := Canonical(name)
	if !ok {
		return ""
	}
	n := model.ParseName(canon)
	if !keptTag.MatchString(n.Tag) {
		return ""
	}
	n.Tag = n.Tag[len(keptPrefix)+13:]
	return strings.ToLower(n.String())
}

// bareDigest is a digest without its "sha256:" prefix, lowercased.
func bareDigest(d string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "sha256:"))
}

// SameDigest reports whether two manifest digests are the same, with or
// without the "sha256:" prefix; a digest may be given by a prefix of 12 hex
// or more.
func SameDigest(a, b string) bool {
	a, b = bareDigest(a), bareDigest(b)
	if a == "" || b == "" {
		return false
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	return len(a) >= 12 && strings.HasPrefix(b, a)
}

// ValidManifestDigest reports whether d is a full manifest digest: 64
// hex, "sha256:" optional.
func ValidManifestDigest(d string) bool {
	return validDigest("sha256:" + bareDigest(d))
}
