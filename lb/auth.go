package lb

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// HAPROXY_{n}_AUTH is realm:user:encpass, where encpass is what HAProxy's
// userlist "password" takes: a crypt(3) hash. weft verifies bcrypt
// ($2a$, $2b$, $2y$), SHA-crypt ($5$ SHA-256, $6$ SHA-512, as
// `openssl passwd -5/-6` or `mkpasswd` make them), MD5-crypt ($1$,
// `openssl passwd -1`) and traditional DES crypt (13 characters of
// [./0-9A-Za-z], `mkpasswd -m descrypt`; only the first 8 characters of
// the password count, as with crypt(3)). Any other value that does not
// start with "$" is compared as a plain password (HAProxy's
// insecure-password); other "$" schemes never authenticate.

// checkAuth verifies an Authorization header value against the route's
// user; verified values are cached so bcrypt runs once per credential.
func (r *route) checkAuth(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	if _, ok := r.authOK.Load(string(h)); ok {
		return true
	}
	const prefix = "basic "
	if len(h) < len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(h[len(prefix):])))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user != r.svc.Auth.User || !verifyPassword(r.svc.Auth.Pass, pass) {
		return false
	}
	r.authOK.Store(string(h), true)
	return true
}

func verifyPassword(enc, pass string) bool {
	switch {
	case strings.HasPrefix(enc, "$2a$"), strings.HasPrefix(enc, "$2b$"), strings.HasPrefix(enc, "$2y$"):
		e := enc
		if strings.HasPrefix(e, "$2y$") {
			e = "$2a$" + e[4:] // same algorithm; x/crypto only knows a and b
		}
		return bcrypt.CompareHashAndPassword([]byte(e), []byte(pass)) == nil
	case strings.HasPrefix(enc, "$5$"):
		return subtle.ConstantTimeCompare([]byte(shaCrypt(enc, pass, false)), []byte(enc)) == 1
	case strings.HasPrefix(enc, "$6$"):
		return subtle.ConstantTimeCompare([]byte(shaCrypt(enc, pass, true)), []byte(enc)) == 1
	case strings.HasPrefix(enc, "$1$"):
		return subtle.ConstantTimeCompare([]byte(md5Crypt(enc, pass)), []byte(enc)) == 1
	case strings.HasPrefix(enc, "$"):
		return false
	case isDESHash(enc):
		return subtle.ConstantTimeCompare([]byte(desCrypt(enc, pass)), []byte(enc)) == 1
	default:
		return subtle.ConstantTimeCompare([]byte(enc), []byte(pass)) == 1
	}
}

// isDESHash reports whether enc has the shape of a traditional crypt(3)
// hash: 13 characters of the crypt alphabet.
func isDESHash(enc string) bool {
	if len(enc) != 13 {
		return false
	}
	for i := 0; i < len(enc); i++ {
		if strings.IndexByte(cryptAlphabet, enc[i]) < 0 {
			return false
		}
	}
	return true
}

const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var (
	sha256Perm = [][3]int{{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14}, {15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}}
	sha512Perm = [][3]int{{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10},
		{53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41}}
)

// shaCrypt computes Drepper's SHA-crypt of pass with the salt and rounds
// of the setting enc ("$5$[rounds=N$]salt$..." or "$6$...").
func shaCrypt(enc, pass string, is512 bool) string {
	prefix := enc[:3]
	rest := enc[3:]
	rounds, custom := 5000, false
	if strings.HasPrefix(rest, "rounds=") {
		num, after, ok := strings.Cut(rest[len("rounds="):], "$")
		if !ok {
			return ""
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			return ""
		}
		rounds, custom, rest = min(max(n, 1000), 999999999), true, after
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > 16 {
		salt = salt[:16]
	}
	newH := sha256.New
	if is512 {
		newH = sha512.New
	}
	key, s := []byte(pass), []byte(salt)
	sum := func(parts ...[]byte) []byte {
		h := newH()
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	b := sum(key, s, key)
	size := len(b)
	a := newH()
	a.Write(key)
	a.Write(s)
	repeat(a, b, len(key), size)
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(b)
		} else {
			a.Write(key)
		}
	}
	aSum := a.Sum(nil)
	dp := newH()
	for range len(key) {
		dp.Write(key)
	}
	p := stretch(dp.Sum(nil), len(key))
	ds := newH()
	for range 16 + int(aSum[0]) {
		ds.Write(s)
	}
	sb := stretch(ds.Sum(nil), len(s))
	c := cryptRounds(newH, p, sb, aSum, rounds)
	var out strings.Builder
	out.WriteString(prefix)
	if custom {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.WriteString(salt)
	out.WriteByte('$')
	enc24 := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for ; n > 0; n-- {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	if is512 {
		for _, t := range sha512Perm {
			enc24(c[t[0]], c[t[1]], c[t[2]], 4)
		}
		enc24(0, 0, c[63], 2)
	} else {
		for _, t := range sha256Perm {
			enc24(c[t[0]], c[t[1]], c[t[2]], 4)
		}
		enc24(0, c[31], c[30], 3)
	}
	_ = size
	return out.String()
}

func repeat(h hash.Hash, b []byte, n, size int) {
	for ; n > size; n -= size {
		h.Write(b)
	}
	h.Write(b[:n])
}

// cryptRounds is the key-stretching loop MD5-crypt and SHA-crypt share:
// each round hashes the password, the salt and the previous digest in an
// order set by the round number (odd, not a multiple of 3, not of 7).
func cryptRounds(newH func() hash.Hash, pw, salt, c []byte, rounds int) []byte {
	for i := 0; i < rounds; i++ {
		h := newH()
		if i&1 != 0 {
			h.Write(pw)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(salt)
		}
		if i%7 != 0 {
			h.Write(pw)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pw)
		}
		c = h.Sum(nil)
	}
	return c
}

func stretch(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(d) <= n {
		out = append(out, d...)
	}
	return append(out, d[:n-len(out)]...)
}
