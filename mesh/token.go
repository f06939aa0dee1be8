package mesh

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// tokenPrefix versions the join token format.
const tokenPrefix = "weft1-"

// ErrBadToken is returned for a join token that is not one `weft mesh token`
// printed.
var ErrBadToken = errors.New("malformed join token")

// GenerateToken returns a new random cluster join token. Every node of a
// cluster is started with the same token; the gossip encryption key is
// derived from it.
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// gossipKey derives the 32-byte AES-256 gossip key from a join token. An
// empty token yields a nil key (unencrypted gossip, for `weft up` only).
func gossipKey(token string) ([]byte, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, nil
	}
	raw, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: it must start with %q (create one with `weft mesh token`)", ErrBadToken, tokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < 16 {
		return nil, fmt.Errorf("%w: the part after %q must be base64url of at least 16 bytes (create one with `weft mesh token`)", ErrBadToken, tokenPrefix)
	}
	h := sha256.New()
	h.Write([]byte("weft gossip key v1\x00"))
	h.Write(b)
	return h.Sum(nil), nil
}
