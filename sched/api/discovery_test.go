package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDiscoveryPortsUseMarathonNames(t *testing.T) {
	in := `{"id":"/x","ipAddress":{"networkName":"weft","discovery":{"ports":[{"number":8080,"name":"http","protocol":"tcp"},{"port":9090,"name":"old"}]}}}`
	var a App
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	ps := a.IPAddress.Discovery.Ports
	if len(ps) != 2 || ps[0].Number != 8080 || ps[0].Name != "http" || ps[0].Protocol != "tcp" || ps[1].Number != 9090 {
		t.Fatalf("discovery ports: %+v", ps)
	}
	out, err := json.Marshal(a.IPAddress)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `{"number":8080,"name":"http","protocol":"tcp"}`) || strings.Contains(string(out), `"port"`) {
		t.Fatalf("discovery written as %s", out)
	}
}
