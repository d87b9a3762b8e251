package cluster

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIDeployBody feeds arbitrary deploy bodies to the handler: every
// answer is a 201 or a JSON error below 500, and the registry only sees
// bodies that decoded.
func FuzzAPIDeployBody(f *testing.F) {
	mod := testModule(64, 1)
	sha := sha256hex(mod)
	for _, seed := range []string{
		`{"sha256":"` + sha + `","size":64}`,
		`{"sha256":"` + sha + `","size":64,"mode":"pooled","env":{"A":"b"},"routes":[{"host":"*.x.com","path":"/a/*","methods":["GET"]}],"limits":{"timeout":"1s","memory_bytes":1024},"wait":false}`,
		`{"sha256":"` + sha + `","size":64,"wait_timeout":"-5s"}`,
		`{"limits":{"timeout":12}}`, `{"env":{"K":1}}`, `[]`, `null`, `{}{}`, `{"a":`, "",
	} {
		f.Add(seed)
	}
	reg, blobs := newMemRegistry(), newMemBlobs()
	if _, err := blobs.Put(sha, strings.NewReader(string(mod)), 1<<20); err != nil {
		f.Fatal(err)
	}
	h, err := NewAPI(APIConfig{Registry: reg, Blobs: blobs, TokenHash: HashToken(testToken)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/functions/fuzz", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusCreated {
			return
		}
		var env struct {
			Error *APIError `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Code == "" {
			t.Fatalf("%d %q: not an error envelope (%v)", rec.Code, rec.Body.String(), err)
		}
		if rec.Code >= 500 {
			t.Fatalf("body %q: %d %s", body, rec.Code, rec.Body.String())
		}
	})
}
