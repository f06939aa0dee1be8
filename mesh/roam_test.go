package mesh

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// A public peer can report where it sees us on the new network before the
// node notices its new address (a link that comes up late): that report
// must survive the move, and only what was reported before the old
// address went away is forgotten.
func TestUnderlayMovedKeepsReportsFromTheNewNetwork(t *testing.T) {
	m := &Mesh{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		reflexive:  map[netip.AddrPort]time.Time{},
		observedBy: map[string]observation{},
		forgotten:  map[netip.Addr]time.Time{},
		nat:        true,
	}
	oldEP := netip.MustParseAddrPort("172.31.3.1:51820")
	newEP := netip.MustParseAddrPort("172.31.5.1:51820")
	now := time.Now()
	m.reflexive[oldEP] = now.Add(-time.Minute)
	m.observedBy["o1"] = observation{ep: oldEP, at: now.Add(-time.Minute)}
	m.lostAt = now.Add(-2 * time.Second) // the old network went away
	m.reflexive[newEP] = now.Add(-time.Second)
	m.observedBy["m1"] = observation{ep: newEP, at: now.Add(-time.Second)}

	m.underlayMoved(nil)

	if _, ok := m.reflexive[oldEP]; ok {
		t.Errorf("the old network's reflexive endpoint %v survived the move", oldEP)
	}
	if _, ok := m.reflexive[newEP]; !ok {
		t.Errorf("the new network's reflexive endpoint %v, reported after the old address went away, was forgotten", newEP)
	}
	if _, ok := m.forgotten[oldEP.Addr()]; !ok {
		t.Errorf("reports of the old address %v are not ignored after the move", oldEP.Addr())
	}
	if _, ok := m.forgotten[newEP.Addr()]; ok {
		t.Errorf("reports of the new address %v are ignored after the move", newEP.Addr())
	}
	if _, ok := m.observedBy["o1"]; ok {
		t.Error("o1's observation of the old network survived the move")
	}
	if o, ok := m.observedBy["m1"]; !ok || o.ep != newEP {
		t.Errorf("m1's observation of the new network: %+v %v", o, ok)
	}
	if !m.nat || !m.lostAt.IsZero() {
		t.Errorf("after the move nat=%v lostAt=%v; want behind NAT and the loss consumed", m.nat, m.lostAt)
	}

	// A move with no loss first (a new address before the old one goes):
	// everything reported until now is of the old network.
	m.underlayMoved(nil)
	if len(m.reflexive) != 0 || len(m.observedBy) != 0 {
		t.Errorf("a second move kept %v and %v", m.reflexive, m.observedBy)
	}
}
