// Package nodetls makes the cluster's join token into node identities: a
// cluster CA derived from the token deterministically (HKDF), node
// certificates each node issues itself, and the TLS configurations for
// mutual TLS between nodes (raft, agent ↔ master, master ↔ master, the
// agent API).
//
// Every node holding the token derives the same CA, so no operator runs a
// PKI and a host without the token cannot get a certificate the cluster
// accepts. It imports no other weft package.
package nodetls

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// ServerName is the name every node certificate carries and every node
// dials its peers by, whatever address it dials: any node of the cluster
// may answer for any other.
const ServerName = "node.weft"

// caInfo is the HKDF info string; a new derivation gets a new version.
const caInfo = "weft cluster ca v1"

// CA is the cluster certificate authority derived from the join token.
type CA struct {
	cert *x509.Certificate
	der  []byte
	key  ed25519.PrivateKey
	pool *x509.CertPool
}

// NewCA derives the cluster CA from token: the same token gives the same
// key and the same certificate, byte for byte, on every node.
func NewCA(token string) (*CA, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errors.New("deriving the cluster CA: no join token")
	}
	seed, err := hkdf.Key(sha256.New, []byte(token), nil, caInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("deriving the cluster CA key: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	skid := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft cluster CA " + hex.EncodeToString(skid[:4])},
		NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2124, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid[:20],
	}
	// Ed25519 signatures are deterministic: rand is not read.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("creating the cluster CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the cluster CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, der: der, key: key, pool: pool}, nil
}

// Pool holds only the cluster CA.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// PEM is the CA certificate in PEM (what `curl --cacert` takes).
func (ca *CA) PEM() []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}) }

// Issue makes a node certificate for name with a fresh P-256 key, valid
// for TLS servers and clients, under ServerName, name and the given
// addresses.
func (ca *CA) Issue(name string, ips []net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating the node key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName},
		IPAddresses:  ips,
	}
	if name != ServerName && validDNSName(name) {
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the node certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.der}, PrivateKey: key, Leaf: leaf}, nil
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// Identity is one node's certificate under the cluster CA.
type Identity struct {
	Name string
	CA   *CA
	Cert tls.Certificate
	// APICert, when set, is what the master API shows to clients that do
	// not ask for ServerName (--api-tls-cert); nodes still get Cert.
	APICert *tls.Certificate
}

// NewIdentity derives the CA from token and issues name's certificate.
func NewIdentity(token, name string, ips []net.IP) (*Identity, error) {
	ca, err := NewCA(token)
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(name, ips)
	if err != nil {
		return nil, err
	}
	return &Identity{Name: name, CA: ca, Cert: cert}, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, as colon-separated hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// ServerConfig is for a node-only server (raft, the agent API): a client
// without a certificate of the cluster CA fails the handshake.
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.CA.pool,
	}
}

// APIServerConfig is for the master API, which serves people and nodes:
// a client certificate is verified when given (NodeName then names the
// node) and not required. Clients that dial ServerName (nodes) get the
// node certificate, others APICert when set.
func (id *Identity) APIServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if id.APICert != nil && hello.ServerName != ServerName {
				return id.APICert, nil
			}
			return &id.Cert, nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  id.CA.pool,
		NextProtos: []string{"http/1.1"},
	}
}

// ClientConfig is for dialing another node: it shows this node's
// certificate and accepts only a server certificate of the cluster CA.
func (id *Identity) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.CA.pool,
		ServerName:   ServerName,
	}
}

// NodeName is the node a verified TLS connection comes from: the common
// name of a client certificate that chained to the cluster CA.
func NodeName(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	return cs.VerifiedChains[0][0].Subject.CommonName, true
}
