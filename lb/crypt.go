package lb

import (
	"crypto/md5"
	"strings"
)

// MD5-crypt and traditional DES crypt, the two oldest crypt(3) schemes,
// which `openssl passwd -1`, `mkpasswd -m md5crypt` and old marathon-lb
// guides produce for HAPROXY_{n}_AUTH. Both are written from the
// algorithms' descriptions (Poul-Henning Kamp's md5crypt; the Unix V7
// crypt built on DES with a salt-perturbed expansion).

// cryptB64 appends the n low 6-bit groups of w, least significant first,
// in crypt's alphabet.
func cryptB64(out []byte, w uint32, n int) []byte {
	for ; n > 0; n-- {
		out = append(out, cryptAlphabet[w&0x3f])
		w >>= 6
	}
	return out
}

// md5Crypt computes "$1$salt$hash" for pass with the salt of enc
// ("$1$salt$..." or "$1$salt").
func md5Crypt(enc, pass string) string {
	const magic = "$1$"
	rest := strings.TrimPrefix(enc, magic)
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > 8 {
		salt = salt[:8]
	}
	pw, s := []byte(pass), []byte(salt)

	alt := md5.New()
	alt.Write(pw)
	alt.Write(s)
	alt.Write(pw)
	altSum := alt.Sum(nil)

	ctx := md5.New()
	ctx.Write(pw)
	ctx.Write([]byte(magic))
	ctx.Write(s)
	for n := len(pw); n > 0; n -= 16 {
		ctx.Write(altSum[:min(n, 16)])
	}
	// For each bit of the password length: a zero byte when set, the
	// password's first byte when clear.
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			ctx.Write([]byte{0})
		} else {
			ctx.Write(pw[:1])
		}
	}
	f := ctx.Sum(nil)

	f = cryptRounds(md5.New, pw, s, f, 1000)

	out := make([]byte, 0, len(magic)+len(salt)+1+22)
	out = append(out, magic...)
	out = append(out, salt...)
	out = append(out, '$')
	for _, t := range [][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		out = cryptB64(out, uint32(f[t[0]])<<16|uint32(f[t[1]])<<8|uint32(f[t[2]]), 4)
	}
	out = cryptB64(out, uint32(f[11]), 2)
	return string(out)
}

// DES tables, bit positions counted from 1 at the most significant bit,
// as FIPS 46 gives them.
var (
	desIP = [64]byte{
		58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
		62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
		57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
		61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7}
	desFP = [64]byte{
		40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
		38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
		36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
		34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25}
	desE = [48]byte{
		32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9,
		8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
		16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25,
		24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1}
	desP = [32]byte{
		16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
		2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25}
	desPC1 = [56]byte{
		57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
		10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
		63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
		14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4}
	desPC2 = [48]byte{
		14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
		23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
		41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
		44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32}
	desShifts = [16]byte{1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1}
	desS      = [8][64]byte{
		{14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
			0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
			4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
			15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13},
		{15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
			3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
			0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
			13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9},
		{10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
			13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
			13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
			1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12},
		{7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
			13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
			10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
			3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14},
		{2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
			14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
			4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
			11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3},
		{12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
			10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
			9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
			4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13},
		{4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
			13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
			1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
			6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12},
		{13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
			1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
			7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
			2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11},
	}
)

// permute returns the bits of in (inWidth bits wide) picked by table, the
// first table entry becoming the most significant output bit.
func permute(in uint64, inWidth int, table []byte) uint64 {
	var out uint64
	for _, pos := range table {
		out = out<<1 | in>>(inWidth-int(pos))&1
	}
	return out
}

// desSubkeys is the DES key schedule: 16 48-bit round keys.
func desSubkeys(key uint64) [16]uint64 {
	cd := permute(key, 64, desPC1[:])
	c, d := uint32(cd>>28), uint32(cd&0xfffffff)
	rot := func(x uint32, n byte) uint32 { return (x<<n | x>>(28-n)) & 0xfffffff }
	var ks [16]uint64
	for i, s := range desShifts {
		c, d = rot(c, s), rot(d, s)
		ks[i] = permute(uint64(c)<<28|uint64(d), 56, desPC2[:])
	}
	return ks
}

// desEncrypt enciphers one block. saltMask (24 bits, bit 23 first) swaps
// the marked bits between the two halves of every expansion output: with
// 0 this is plain DES.
func desEncrypt(ks *[16]uint64, block uint64, saltMask uint64) uint64 {
	b := permute(block, 64, desIP[:])
	l, r := uint32(b>>32), uint32(b)
	for i := 0; i < 16; i++ {
		e := permute(uint64(r), 32, desE[:])
		if saltMask != 0 {
			hi, lo := e>>24, e&0xffffff
			x := (hi ^ lo) & saltMask
			e = (hi^x)<<24 | (lo ^ x)
		}
		e ^= ks[i]
		var sOut uint32
		for j := 0; j < 8; j++ {
			six := byte(e>>(42-6*j)) & 0x3f
			row := six>>4&2 | six&1
			col := six >> 1 & 0xf
			sOut = sOut<<4 | uint32(desS[j][row*16+col])
		}
		f := uint32(permute(uint64(sOut), 32, desP[:]))
		l, r = r, l^f
	}
	return permute(uint64(r)<<32|uint64(l), 64, desFP[:])
}

func cryptIndex(c byte) (uint32, bool) {
	i := strings.IndexByte(cryptAlphabet, c)
	return uint32(i), i >= 0
}

// desCrypt computes the 13-character traditional crypt(3) of pass with
// the two-character salt of enc; "" when the salt is not valid.
func desCrypt(enc, pass string) string {
	if len(enc) < 2 {
		return ""
	}
	s0, ok0 := cryptIndex(enc[0])
	s1, ok1 := cryptIndex(enc[1])
	if !ok0 || !ok1 {
		return ""
	}
	salt := s0 | s1<<6
	// Salt bit i swaps expansion bits i and i+24 (counted from the first).
	var mask uint64
	for i := 0; i < 12; i++ {
		if salt>>i&1 != 0 {
			mask |= 1 << (23 - i)
		}
	}
	var key uint64
	for i := 0; i < 8; i++ {
		var c byte
		if i < len(pass) {
			c = pass[i]
		}
		key = key<<8 | uint64(c<<1)
	}
	ks := desSubkeys(key)
	var block uint64
	for i := 0; i < 25; i++ {
		block = desEncrypt(&ks, block, mask)
	}
	out := make([]byte, 0, 13)
	out = append(out, enc[0], enc[1])
	for shift := 58; shift >= 0; shift -= 6 {
		out = append(out, cryptAlphabet[block>>shift&0x3f])
	}
	out = append(out, cryptAlphabet[block<<2&0x3f])
	return string(out)
}
