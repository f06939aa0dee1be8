package sched

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// counterFW counts its POSTs: a write that must not happen twice.
type counterFW struct {
	*testFramework
	n atomic.Int32
}

func (f *counterFW) Routes(mux *http.ServeMux, m MasterHandle) {
	mux.HandleFunc("POST /v2/count", func(w http.ResponseWriter, r *http.Request) {
		n := f.n.Add(1)
		writeJSON(w, http.StatusCreated, map[string]int32{"n": n})
	})
}

func TestIdempotencyKeyReplaysTheFirstAnswer(t *testing.T) {
	fw := &counterFW{testFramework: &testFramework{name: "count"}}
	tm := startMaster(t, NewStaticMembers(), fw)
	post := func(path, key string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, tm.srv.URL+path, strings.NewReader(`{}`))
		if key != "" {
			req.Header.Set(api.IdempotencyHeader, key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header.Get("Idempotent-Replayed")
	}
	code, body, _ := post("/v2/count", "k1")
	if code != http.StatusCreated || body != `{"n":1}` {
		t.Fatalf("first: %d %s", code, body)
	}
	for i := 0; i < 3; i++ {
		code, body, replayed := post("/v2/count", "k1")
		if code != http.StatusCreated || body != `{"n":1}` || replayed != "true" {
			t.Fatalf("repeat %d: %d %s replayed=%q, want the first answer replayed", i, code, body, replayed)
		}
	}
	if n := fw.n.Load(); n != 1 {
		t.Fatalf("the write ran %d times for one key", n)
	}
	if code, body, _ := post("/v2/count", "k2"); code != http.StatusCreated || body != `{"n":2}` {
		t.Fatalf("a new key acts: %d %s", code, body)
	}
	if code, _, _ := post("/v2/count", ""); code != http.StatusCreated || fw.n.Load() != 3 {
		t.Fatalf("no key acts each time: %d, %d writes", code, fw.n.Load())
	}
	if code, body, _ := post("/v2/count?x=1", "k1"); code != http.StatusUnprocessableEntity || !strings.Contains(body, "k1") {
		t.Fatalf("a key reused for another request: %d %s, want 422 naming the key", code, body)
	}
	if _, ok := tm.Store().Get(TableIdempotency, "k1"); !ok {
		t.Fatalf("the answer to k1 is not in raft (%s)", TableIdempotency)
	}
}
