package mesh

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
)

const blockFile = "block.json"

// blockClaim is a node's claim on one block of the overlay. Claims are
// ordered by (Time, Name): the earlier claim wins a conflict.
type blockClaim struct {
	Block  netip.Prefix `json:"block"`
	Salt   uint32       `json:"salt"`
	Time   uint64       `json:"time"` // Lamport time of the claim
	Static bool         `json:"static,omitempty"`
}

// deriveBlock maps a public key and a salt to a block of the overlay,
// deterministically: every node computes the same block for the same input.
func deriveBlock(overlay netip.Prefix, bits int, publicKey string, salt uint32) netip.Prefix {
	n := uint64(1) << uint(bits-overlay.Bits())
	h := sha256.New()
	h.Write([]byte(publicKey))
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], salt)
	h.Write(s[:])
	idx := binary.BigEndian.Uint64(h.Sum(nil)[:8]) % n
	base := binary.BigEndian.Uint32(overlay.Masked().Addr().AsSlice())
	a := base + uint32(idx)<<uint(32-bits)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return netip.PrefixFrom(netip.AddrFrom4(b), bits)
}

// claimLess orders two claims: the earlier Lamport time wins, then the
// smaller node name.
// Time 0 marks a provisional claim, later than every confirmed one.
func claimLess(t1 uint64, n1 string, t2 uint64, n2 string) bool {
	if t1 == 0 {
		t1 = math.MaxUint64
	}
	if t2 == 0 {
		t2 = math.MaxUint64
	}
	if t1 != t2 {
		return t1 < t2
	}
	return n1 < n2
}

// resolveBlock checks self's claim against the others' and returns the claim
// self should hold: unchanged when it wins (or is static), or a new
// derivation with the next salt (stamped with clock; 0 = provisional) when an earlier claim
// holds the same block. Blocks already held by others are skipped.
func resolveBlock(overlay netip.Prefix, bits int, publicKey, self string, mine blockClaim, others []peerInfo, clock uint64) (blockClaim, bool) {
	if mine.Static {
		return mine, false
	}
	taken := map[netip.Prefix]bool{}
	lost := false
	for _, p := range others {
		if p.Name == self || !p.Block.IsValid() || p.Status == "left" {
			continue
		}
		taken[p.Block] = true
		if p.Block == mine.Block && claimLess(p.BlockTime, p.Name, mine.Time, self) {
			lost = true
		}
	}
	if !lost {
		return mine, false
	}
	next := mine
	n := uint32(1) << uint(bits-overlay.Bits())
	for i := uint32(0); i < n*4; i++ {
		next.Salt++
		next.Block = deriveBlock(overlay, bits, publicKey, next.Salt)
		if !taken[next.Block] {
			break
		}
	}
	next.Time = clock
	return next, true
}

// loadClaim reads the persisted claim; ok is false when there is none (or it
// belongs to another overlay layout).
func loadClaim(dir string, overlay netip.Prefix, bits int) (blockClaim, bool, error) {
	if dir == "" {
		return blockClaim{}, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, blockFile))
	if errors.Is(err, fs.ErrNotExist) {
		return blockClaim{}, false, nil
	}
	if err != nil {
		return blockClaim{}, false, fmt.Errorf("reading block claim: %w", err)
	}
	var c blockClaim
	if err := json.Unmarshal(b, &c); err != nil {
		return blockClaim{}, false, fmt.Errorf("reading block claim %s: %w", filepath.Join(dir, blockFile), err)
	}
	if !c.Block.IsValid() || c.Block.Bits() != bits || !overlay.Contains(c.Block.Addr()) {
		return blockClaim{}, false, nil
	}
	return c, true, nil
}

func saveClaim(dir string, c blockClaim) error {
	if dir == "" {
		return nil
	}
	b, _ := json.Marshal(c)
	if err := writeFileAtomic(filepath.Join(dir, blockFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving block claim: %w", err)
	}
	return nil
}
