package silence

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// MaxBodyBytes bounds a request body of the API.
const MaxBodyBytes = 64 << 10

// Matcher is an Alertmanager API v2 matcher. Only equality matchers (isRegex false,
// isEqual true or absent) are accepted: the alerter's silences match label values exactly.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual *bool  `json:"isEqual,omitempty"`
}

// APISilence is a silence as the Alertmanager API v2 writes and reads it.
type APISilence struct {
	ID        string    `json:"id,omitempty"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status,omitempty"`
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
}

// ToAPI is s as the API returns it, with its state at now.
func ToAPI(s Silence, now time.Time) APISilence {
	a := APISilence{ID: s.ID, StartsAt: s.StartsAt, EndsAt: s.EndsAt, CreatedBy: s.CreatedBy, Comment: s.Comment, UpdatedAt: &s.UpdatedAt}
	a.Matchers = []Matcher{}
	for _, k := range sortedKeys(s.Matchers) {
		eq := true
		a.Matchers = append(a.Matchers, Matcher{Name: k, Value: s.Matchers[k], IsEqual: &eq})
	}
	a.Status = &struct {
		State string `json:"state"`
	}{s.State(now)}
	return a
}

// FromAPI is the silence a posted APISilence describes.
func FromAPI(a APISilence) (Silence, error) {
	s := Silence{ID: a.ID, StartsAt: a.StartsAt, EndsAt: a.EndsAt, CreatedBy: a.CreatedBy, Comment: a.Comment, Matchers: map[string]string{}}
	for i, m := range a.Matchers {
		if m.IsRegex || (m.IsEqual != nil && !*m.IsEqual) {
			return Silence{}, fmt.Errorf("matchers[%d] (%s): only equality matchers are supported (isRegex false, isEqual true)", i, clip(m.Name))
		}
		if _, dup := s.Matchers[m.Name]; dup {
			return Silence{}, fmt.Errorf("matchers[%d]: label %q is matched twice", i, clip(m.Name))
		}
		s.Matchers[m.Name] = m.Value
	}
	return s, nil
}

// Handler serves the Alertmanager API v2 for silences under /api/v2/: GET and POST
// /api/v2/silences, GET and DELETE /api/v2/silence/{id}. It answers JSON; errors are a
// JSON string, as Alertmanager's are. When token is not empty, POST and DELETE need it as a
// bearer token (a silence mutes pages: whoever reaches the ops address must not be able to
// make one unless the operator says so).
func Handler(st *Store, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v2/silences", func(w http.ResponseWriter, r *http.Request) {
		all, err := st.List(r.Context())
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		now := st.now()
		out := make([]APISilence, 0, len(all))
		for _, s := range all {
			out = append(out, ToAPI(s, now))
		}
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /api/v2/silences", func(w http.ResponseWriter, r *http.Request) {
		var a APISilence
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("decode the silence: %w", err))
			return
		}
		if dec.More() {
			fail(w, http.StatusBadRequest, errors.New("decode the silence: more than one JSON value"))
			return
		}
		s, err := FromAPI(a)
		if err == nil {
			s, err = st.Create(r.Context(), s)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			fail(w, http.StatusNotFound, err)
		case err != nil:
			fail(w, http.StatusBadRequest, err)
		default:
			reply(w, http.StatusOK, map[string]string{"silenceID": s.ID})
		}
	})
	one := func(expire bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			var s Silence
			var err error
			if expire {
				s, err = st.Expire(r.Context(), id)
			} else {
				s, err = st.Get(r.Context(), id)
			}
			switch {
			case errors.Is(err, ErrNotFound):
				fail(w, http.StatusNotFound, err)
			case err != nil:
				fail(w, http.StatusInternalServerError, err)
			case expire:
				w.WriteHeader(http.StatusOK)
			default:
				reply(w, http.StatusOK, ToAPI(s, st.now()))
			}
		}
	}
	mux.HandleFunc("GET /api/v2/silence/{id}", one(false))
	mux.HandleFunc("DELETE /api/v2/silence/{id}", one(true))
	if token == "" {
		return mux
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			fail(w, http.StatusUnauthorized, errors.New("a silence needs the alerter's silence token (Authorization: Bearer …)"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, err error) {
	reply(w, status, strings.ReplaceAll(err.Error(), "\n", "; "))
}
