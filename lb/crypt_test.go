package lb

import (
	"crypto/des"
	"encoding/binary"
	"testing"
)

// Vectors made on this machine: `openssl passwd -1 -salt S P` for
// MD5-crypt and perl's crypt(P, S) (glibc's crypt(3)) for DES.
var cryptVectors = []struct{ enc, pass string }{
	{"$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/", "s3cret"},
	{"$1$x$1qCRnuKVJB0gRI72OR7wV1", "pw"},
	{"$1$saltsalt$mzRf.b1eQGj3v5mb/kQMU/", "Hello_world!"},
	{"$1$ab$dMLD29YAOmNTgeRHwM8Ls1", "''"},
	{"$1$12345678$4ZPu1XpOzP7yWHC/KN4Mn1", "a very long password that is longer than sixteen bytes"},
	{"$1$$B5ioctsLmp9rs5O3yyJa/0", "empty"},
	{"$1$xy$sCW6WZJsSz7hVuvH0BCaf.", "pw"},
	{"abhWCwoTZY2c6", "s3cret"},
	{"./C8Yx8rc0s.g", "Hello world!"},
	{"zZq3RWy/G71sk", "longpassword123"},
	{"abmF1QH4PEr.E", ""},
}

func TestMD5AndDESCrypt(t *testing.T) {
	for _, v := range cryptVectors {
		if !verifyPassword(v.enc, v.pass) {
			t.Errorf("%s does not verify %q", v.enc, v.pass)
		}
		if verifyPassword(v.enc, "x"+v.pass) {
			t.Errorf("%s verifies a wrong password", v.enc)
		}
	}
	// DES crypt reads 8 characters of the password, as crypt(3) does.
	if !verifyPassword("zZq3RWy/G71sk", "longpassXYZ") {
		t.Errorf("DES crypt must ignore characters past the eighth")
	}
	// A hash is not a password.
	if verifyPassword("abhWCwoTZY2c6", "abhWCwoTZY2c6") || verifyPassword("$1$x$1qCRnuKVJB0gRI72OR7wV1", "$1$x$1qCRnuKVJB0gRI72OR7wV1") {
		t.Errorf("the hash itself authenticates")
	}
}

// TestDESMatchesStdlib checks the DES core (unsalted) against crypto/des.
func TestDESMatchesStdlib(t *testing.T) {
	for _, k := range []uint64{0, 0x133457799BBCDFF1, 0x0123456789abcdef, 0xfefefefefefefefe} {
		var kb [8]byte
		binary.BigEndian.PutUint64(kb[:], k)
		c, err := des.NewCipher(kb[:])
		if err != nil {
			t.Fatal(err)
		}
		ks := desSubkeys(k)
		for _, blk := range []uint64{0, 0x0123456789ABCDEF, 0xffffffffffffffff} {
			var in, want [8]byte
			binary.BigEndian.PutUint64(in[:], blk)
			c.Encrypt(want[:], in[:])
			if got := desEncrypt(&ks, blk, 0); got != binary.BigEndian.Uint64(want[:]) {
				t.Errorf("DES(%016x, %016x) = %016x, want %x", k, blk, got, want)
			}
		}
	}
}
