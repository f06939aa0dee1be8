package sched

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/weftnet/weft/sched/api"
)

// TableSecrets holds the secret store: name → *SecretRecord, the value
// sealed with AES-256-GCM under a key derived from the join token.
const TableSecrets = "secrets"

func init() {
	tableTypes[TableSecrets] = func() any { return new(SecretRecord) }
}

// SecretRecord is a secret as raft keeps it. Sealed is nonce ‖ ciphertext;
// the secret's name is the additional data, so a value cannot be moved
// to another name.
type SecretRecord struct {
	Name      string `json:"name"`
	Sealed    []byte `json:"sealed"`
	UpdatedAt string `json:"updatedAt"`
	UpdatedBy string `json:"updatedBy,omitempty"`
}

// SecretsKeyInfo is the HKDF info string of the secret store's key.
const SecretsKeyInfo = "weft secrets v1"

// DeriveSecretsKey derives the secret store's AES-256 key from the
// cluster's join token (HKDF-SHA256, info "weft secrets v1"). Every master
// holding the token derives the same key; nothing else stores it.
func DeriveSecretsKey(token string) ([]byte, error) {
	if token == "" {
		return nil, errors.New("no join token to derive the secrets key from")
	}
	return hkdf.Key(sha256.New, []byte(token), nil, SecretsKeyInfo, 32)
}

// DeriveNodeSecret derives the bearer secret cluster nodes present to the
// master API from the join token (HKDF-SHA256, info "weft node api v1").
func DeriveNodeSecret(token string) (string, error) {
	if token == "" {
		return "", errors.New("no join token to derive the node secret from")
	}
	k, err := hkdf.Key(sha256.New, []byte(token), nil, "weft node api v1", 32)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("weft-node.%x", k), nil
}

func sealSecret(key []byte, name string, value []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(value)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, value, []byte(name)), nil
}

func openSecret(key []byte, name string, sealed []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, fmt.Errorf("secret %s: sealed value too short", name)
	}
	v, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("secret %s: cannot be opened with this cluster's key (was the join token changed?)", name)
	}
	return v, nil
}

var secretName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$`)

// ValidSecretName reports whether name may name a secret: segments of
// letters, digits, '.', '_' and '-' separated by '/', at most 256 bytes.
func ValidSecretName(name string) bool { return len(name) <= 256 && secretName.MatchString(name) }

const maxSecretValue = 64 << 10

// secretValue opens one secret of the store.
func (m *Master) secretValue(name string) ([]byte, error) {
	if len(m.cfg.SecretsKey) == 0 {
		return nil, errors.New("the secret store is off: this master has no join token")
	}
	e, ok := m.store.Get(TableSecrets, name)
	if !ok {
		return nil, fmt.Errorf("secret %q does not exist", name)
	}
	return openSecret(m.cfg.SecretsKey, name, e.Value.(*SecretRecord).Sealed)
}

// resolveSecrets is the values of a task's secret env references (env
// name → value), for its agent only; missing ones are left out and the
// agent fails the task naming them.
func (m *Master) resolveSecrets(spec *api.TaskSpec) map[string]string {
	if len(spec.SecretEnv) == 0 {
		return nil
	}
	out := make(map[string]string, len(spec.SecretEnv))
	for env, name := range spec.SecretEnv {
		v, err := m.secretValue(name)
		if err != nil {
			m.log.Warn("a task's secret cannot be resolved", "env", env, "secret", name, "err", err)
			continue
		}
		out[env] = string(v)
	}
	return out
}

func (m *Master) handleSecretPut(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !ValidSecretName(name) {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("secret name %q: use segments of letters, digits, '.', '_' and '-' separated by '/'", name))
		return
	}
	a := AuthzFrom(r.Context())
	if a.Secret(name) < AccessWrite {
		WriteForbidden(w, fmt.Sprintf("token %q has no write access to secret %s", a.Label(), name))
		return
	}
	if len(m.cfg.SecretsKey) == 0 {
		writeError(w, http.StatusPreconditionFailed, "the secret store is off: this master has no join token to derive its key from (start the masters with a token, e.g. --token-file)")
		return
	}
	value, err := io.ReadAll(io.LimitReader(r.Body, maxSecretValue+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the secret's value: "+err.Error())
		return
	}
	if len(value) > maxSecretValue {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a secret's value is at most %d bytes", maxSecretValue))
		return
	}
	if len(value) == 0 {
		writeError(w, http.StatusUnprocessableEntity, "the secret's value is empty (weft secret put NAME reads it from stdin)")
		return
	}
	sealed, err := sealSecret(m.cfg.SecretsKey, name, value)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "sealing the secret: "+err.Error())
		return
	}
	rec := &SecretRecord{Name: name, Sealed: sealed, UpdatedAt: api.Timestamp(m.cfg.Now()), UpdatedBy: a.Label()}
	if _, err := m.store.Apply(r.Context(), []Op{Put(TableSecrets, name, rec)}); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.SecretInfo{Name: name, UpdatedAt: rec.UpdatedAt, UpdatedBy: rec.UpdatedBy})
}

func (m *Master) handleSecrets(w http.ResponseWriter, r *http.Request) {
	a := AuthzFrom(r.Context())
	out := []api.SecretInfo{}
	for _, e := range m.store.List(TableSecrets) {
		rec := e.Value.(*SecretRecord)
		if a.Secret(rec.Name) >= AccessRead {
			out = append(out, api.SecretInfo{Name: rec.Name, UpdatedAt: rec.UpdatedAt, UpdatedBy: rec.UpdatedBy})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *Master) handleSecretDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	a := AuthzFrom(r.Context())
	if a.Secret(name) < AccessWrite {
		WriteForbidden(w, fmt.Sprintf("token %q has no write access to secret %s", a.Label(), name))
		return
	}
	e, ok := m.store.Get(TableSecrets, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("secret %q does not exist", name))
		return
	}
	if _, err := m.store.Apply(r.Context(), []Op{Check(TableSecrets, name, e.ModifyIndex), Delete(TableSecrets, name)}); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
}

// SecretExists reports whether the secret store holds name (frameworks
// check references when an app is written).
func (m *Master) SecretExists(name string) bool {
	_, ok := m.store.Get(TableSecrets, name)
	return ok
}

func (m *Master) mountSecrets(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/secrets", m.handleSecrets)
	mux.HandleFunc("PUT /v1/secrets/{name...}", m.handleSecretPut)
	mux.HandleFunc("DELETE /v1/secrets/{name...}", m.handleSecretDelete)
}
