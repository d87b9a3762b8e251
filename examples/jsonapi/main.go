// Command jsonapi is a small JSON API: POST /todos validates and echoes a
// todo with an id, GET /todos/{id} returns one, anything else is a JSON
// error. State lives in the request only, so it behaves the same in every
// execution mode.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

// Todo is the resource this API manages.
type Todo struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Done    bool      `json:"done"`
	Created time.Time `json:"created"`
}

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /todos", create)
	mux.HandleFunc("GET /todos/{id}", get)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path+"; try POST /todos or GET /todos/{id}")
	})
	gojinn.Handle(mux)
}

func main() { gojinn.Run() }

func create(w http.ResponseWriter, r *http.Request) {
	var t Todo
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		writeError(w, http.StatusBadRequest, "body must be a JSON todo {\"title\": string, \"done\": bool}: "+err.Error())
		return
	}
	if strings.TrimSpace(t.Title) == "" {
		writeError(w, http.StatusUnprocessableEntity, "title must not be empty")
		return
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	t.ID, t.Created = hex.EncodeToString(id[:]), time.Now().UTC()
	w.Header().Set("Location", "/todos/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
}

func get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) != 16 {
		writeError(w, http.StatusNotFound, "todo "+id+" not found")
		return
	}
	writeJSON(w, http.StatusOK, Todo{ID: id, Title: "example", Created: time.Unix(0, 0).UTC()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
