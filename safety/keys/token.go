package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
)

// A token is "wdn_" + id + "_" + secret. Both parts use lowercase base32
// without padding (a–z, 2–7): no '_' in the alphabet, so splitting on '_' is
// unambiguous, and nothing in a token needs escaping in a header or a shell.
const (
	prefix = "wdn_"
	// IDLen is the length of a key id: 12 characters, 60 random bits.
	IDLen = 12
	// secretBytes is the secret's entropy: 256 bits.
	secretBytes = 32
	// secretLen is the encoded secret: ceil(256/5) = 52 characters, the last
	// carrying 1 data bit and 4 zero bits.
	secretLen = (secretBytes*8 + 4) / 5
	tokenLen  = len(prefix) + IDLen + 1 + secretLen
)

const alphabet = "abcdefghijklmnopqrstuvwxyz234567"

var enc = base32.NewEncoding(alphabet).WithPadding(base32.NoPadding)

// b32 maps a byte to its base32 value, or 0xff if it is not in alphabet.
var b32 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// Parse splits a token into its id and secret. It refuses anything that
// Warden could not have issued (wrong prefix, length, alphabet, or non-zero
// padding bits in the secret's last character) with ErrInvalidKey, without
// allocating, so a formatted token is the only spelling of its key.
func Parse(token string) (id, secret string, err error) {
	if len(token) != tokenLen || token[:len(prefix)] != prefix || token[len(prefix)+IDLen] != '_' {
		return "", "", ErrInvalidKey
	}
	id = token[len(prefix) : len(prefix)+IDLen]
	secret = token[len(prefix)+IDLen+1:]
	if !ValidID(id) {
		return "", "", ErrInvalidKey
	}
	for i := 0; i < len(secret); i++ {
		if b32[secret[i]] == 0xff {
			return "", "", ErrInvalidKey
		}
	}
	// 52×5 = 260 bits carry 256: the last character's low 4 bits are zero.
	if b32[secret[secretLen-1]]&0x0f != 0 {
		return "", "", ErrInvalidKey
	}
	return id, secret, nil
}

// ValidID reports whether id has the form of a key id. It says nothing
// about whether the key exists.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b32[id[i]] == 0xff {
			return false
		}
	}
	return true
}

// format assembles a token; Parse(format(id, secret)) gives them back.
func format(id, secret string) string { return prefix + id + "_" + secret }

// newID returns a fresh random key id.
func newID() string {
	var b [8]byte // 64 bits, of which the first 60 are used
	rand.Read(b[:])
	return enc.EncodeToString(b[:])[:IDLen]
}

// newSecret returns a fresh encoded secret of 256 random bits.
func newSecret() string {
	var b [secretBytes]byte
	rand.Read(b[:])
	return enc.EncodeToString(b[:])
}

// hashSecret is what is stored and compared. The secret is 256 bits from
// crypto/rand, so one SHA-256 is enough: a slow password hash (bcrypt,
// argon2) defends low-entropy secrets against guessing, and nobody can guess
// 2^256. A fast hash also keeps authentication in the microseconds. The
// encoded form is hashed; Parse accepts exactly one encoding per secret.
func hashSecret(secret string) [sha256.Size]byte {
	if len(secret) != secretLen {
		return sha256.Sum256([]byte(secret))
	}
	// A stack copy: []byte(secret) would allocate above 32 bytes.
	var b [secretLen]byte
	copy(b[:], secret)
	return sha256.Sum256(b[:])
}
