package mesh

import (
	"encoding/binary"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
)

// watchTUN is the userspace device's TUN with a tripwire for the probe
// back-off (probeStretch): while it is armed, the first packet the host
// sends into the overlay, other than gossip's own, disarms it and says so
// on C. Traffic that starts while the engine looks only every few periods
// then brings the look back at once, and a path that went down is found as
// fast as at the probe period. Gossip's packets (to or from the gossip
// port) do not count: memberlist probes some member every few seconds and
// has its own failure detection (and a direct path that its packets find
// cut is told to the peer at once: tellCuts).
type watchTUN struct {
	tun.Device
	gossipPort atomic.Uint32 // 0: every packet counts
	armed      atomic.Bool
	C          chan struct{} // capacity 1
}

func newWatchTUN(d tun.Device) *watchTUN {
	return &watchTUN{Device: d, C: make(chan struct{}, 1)}
}

// Read is tun.Device's Read; when armed it looks at the packets read.
func (w *watchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := w.Device.Read(bufs, sizes, offset)
	if w.armed.Load() {
		port := uint16(w.gossipPort.Load())
		for i := 0; i < n; i++ {
			if !isGossip(bufs[i][offset:offset+sizes[i]], port) {
				w.trip()
				break
			}
		}
	}
	return n, err
}

// arm sets the tripwire (again); disarm takes it off.
func (w *watchTUN) arm()    { w.armed.Store(true) }
func (w *watchTUN) disarm() { w.armed.Store(false) }

func (w *watchTUN) trip() {
	if w.armed.CompareAndSwap(true, false) {
		select {
		case w.C <- struct{}{}:
		default:
		}
	}
}

// isGossip reports whether an IP packet is UDP or TCP from or to port
// (never when port is 0, or the packet is not IPv4/IPv6 UDP or TCP with
// its ports in reach).
func isGossip(p []byte, port uint16) bool {
	if port == 0 || len(p) < 1 {
		return false
	}
	var proto byte
	var l4 int
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return false
		}
		proto, l4 = p[9], int(p[0]&0x0f)*4
	case 6:
		if len(p) < 40 {
			return false
		}
		proto, l4 = p[6], 40
	default:
		return false
	}
	if proto != 6 && proto != 17 || len(p) < l4+4 {
		return false
	}
	src, dst := binary.BigEndian.Uint16(p[l4:]), binary.BigEndian.Uint16(p[l4+2:])
	return src == port || dst == port
}
