package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/filter"
)

// errBlocked ends a backend call when the safety policy blocks the answer:
// returning it from the callback cancels the backend request.
var errBlocked = errors.New("answer blocked by the safety policy")

// contentFilterError refuses a prompt the policy blocks. It names the
// categories, never the matched text.
func contentFilterError(param string, cats []string) error {
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    typeInvalidRequest,
		Param:   param,
		Code:    "content_filter",
		Message: fmt.Sprintf("The prompt was refused by the safety policy (%s).", strings.Join(cats, ", ")),
	}
}

// startFilter starts filtering the request under its key's profile. It
// returns nil when no filter is configured.
func (s *Server) startFilter(c *gin.Context) (*filter.Request, error) {
	if s.cfg.Filter == nil {
		return nil, nil
	}
	fr, err := s.cfg.Filter.Request(principal(c).Profile)
	if err != nil {
		// The key names a profile the config no longer has: refuse rather
		// than fall back to a weaker one.
		s.log.Error("safety filter", "request_id", requestID(c), "err", err)
		return nil, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "safety_profile_missing",
			Message: "This key's safety profile is not configured; ask the operator."}
	}
	if tr := trailOf(c); tr != nil {
		tr.filter = fr
	}
	return fr, nil
}

// filterChat scans every text of a chat request on its way in: message
// contents (strings and text parts) and tool call arguments. Redactions
// are made in place; system and developer messages get the request's
// canary. A blocked prompt is refused before the model sees it.
func (s *Server) filterChat(c *gin.Context, req *chatRequest) (*filter.Request, error) {
	fr, err := s.startFilter(c)
	if fr == nil || err != nil {
		return nil, err
	}
	scan := func(text string) string { return fr.Scan(filter.Input, text).Text }
	for i := range req.Messages {
		m := &req.Messages[i]
		system := m.Role == "system" || m.Role == "developer"
		switch v := m.Content.(type) {
		case string:
			m.Content = scan(v)
			if system {
				m.Content = fr.Canary(m.Content.(string))
			}
		case []any:
			last := -1
			for j, p := range v {
				part, ok := p.(map[string]any)
				if !ok {
					continue
				}
				if t, ok := part["text"].(string); ok {
					part["text"] = scan(t)
					last = j
				}
			}
			if system && last >= 0 {
				part := v[last].(map[string]any)
				part["text"] = fr.Canary(part["text"].(string))
			}
		}
		for j := range m.ToolCalls {
			m.ToolCalls[j].Function.Arguments = scan(m.ToolCalls[j].Function.Arguments)
		}
	}
	s.noteRedacted(c, req.Messages)
	if cats := fr.Blocked(filter.Input); len(cats) > 0 {
		return fr, contentFilterError("messages", cats)
	}
	return fr, nil
}

// filterTexts scans the prompt texts of completions and embeddings,
// redacting in place.
func (s *Server) filterTexts(c *gin.Context, param string, texts []string) (*filter.Request, error) {
	fr, err := s.startFilter(c)
	if fr == nil || err != nil {
		return nil, err
	}
	for i, t := range texts {
		texts[i] = fr.Scan(filter.Input, t).Text
	}
	s.noteRedacted(c, texts)
	if cats := fr.Blocked(filter.Input); len(cats) > 0 {
		return fr, contentFilterError(param, cats)
	}
	return fr, nil
}

// noteRedacted keeps the prompt as the filter left it (as JSON: the chat
// messages, or the prompt texts) for the completion record, when the
// audit trail stores redacted text.
func (s *Server) noteRedacted(c *gin.Context, v any) {
	if s.cfg.AuditText != audit.StoreTextRedacted {
		return
	}
	if b, err := json.Marshal(v); err == nil {
		noteRedactedPrompt(c, string(b))
	}
}

// answer turns the backend's pieces into what the client gets: filtered by
// the safety policy, then held to the character cap.
type answer struct {
	fr     *filter.Request // nil: no filter
	st     *filter.Stream  // the text's filter; nil: no filter
	chars  charCap
	pieces int
	stop   string // "length" (cap reached) or "content_filter" (blocked)
}

func newAnswer(fr *filter.Request, adm *admission) *answer {
	a := &answer{fr: fr, chars: charCap{limit: adm.charCap}}
	if fr != nil {
		a.st = fr.Output()
	}
	return a
}

// tools filters the string values in the arguments of the model's tool
// calls as answer text (each value whole: Ollama sends a call complete),
// redacting in place. A blocking finding ends the answer, as one in its
// text does, and the calls must not be delivered.
func (a *answer) tools(calls []api.ToolCall) error {
	if a.fr == nil {
		return nil
	}
	blocked := false
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			res := a.fr.Scan(filter.Output, x)
			blocked = blocked || res.Blocked
			return res.Text
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = walk(x[k])
			}
		}
		return v
	}
	for i := range calls {
		args := &calls[i].Function.Arguments
		var keys []string
		for k := range args.All() {
			keys = append(keys, k)
		}
		for _, k := range keys {
			v, _ := args.Get(k)
			args.Set(k, walk(v))
		}
	}
	if blocked {
		a.stop = "content_filter"
		return errBlocked
	}
	return nil
}

// add takes one piece from the backend and returns the text to deliver
// now, and errCapped or errBlocked when the answer must end here.
func (a *answer) add(piece string) (string, error) {
	a.pieces++
	if a.st != nil {
		piece = a.st.Write(piece)
	}
	out, capped := a.chars.take(piece)
	switch {
	case a.st != nil && a.st.Blocked():
		a.stop = "content_filter"
		return out, errBlocked
	case capped:
		a.stop = "length"
		return out, errCapped
	}
	return out, nil
}

// end returns what the filter still held when the backend finished.
func (a *answer) end() string {
	if a.st == nil || a.stop != "" {
		return ""
	}
	out, capped := a.chars.take(a.st.Close())
	switch {
	case a.st.Blocked():
		a.stop = "content_filter"
	case capped:
		a.stop = "length"
	}
	return out
}

// reason is the finish reason: the backend's, unless the answer was cut.
func (a *answer) reason(backend string) string {
	if a.stop != "" {
		return a.stop
	}
	return backend
}

// stopped reports whether err is the answer's own cut rather than a
// failure.
func stopped(err error) bool { return errors.Is(err, errCapped) || errors.Is(err, errBlocked) }

// safetyRecord is the audit record's safety field: what the policy did,
// by direction, category and action, with counts. Never matched text.
func safetyRecord(fr *filter.Request) json.RawMessage {
	if fr == nil {
		return nil
	}
	ds := fr.Decisions()
	if len(ds) == 0 {
		return nil
	}
	b, _ := json.Marshal(filter.Summary{Profile: fr.Profile().Name, Decisions: ds})
	return b
}

// capChars applies the profile's output cap where it is tighter than the
// key's.
func (a *admission) capChars(fr *filter.Request) {
	if fr == nil {
		return
	}
	if p := fr.Profile().MaxOutputChars; p > 0 && (a.charCap == 0 || p < a.charCap) {
		a.charCap = p
	}
}

// safety counts the request's findings by direction, category and action.
func (m *Metrics) safety(fr *filter.Request) {
	if m == nil || fr == nil {
		return
	}
	for _, d := range fr.Decisions() {
		m.findings.WithLabelValues(string(d.Direction), d.Category, string(d.Action)).Add(float64(d.Count))
	}
}

// adminReloadSafety re-reads the blocklist files, as SIGHUP does. A file
// that cannot be read leaves the old lists in force and is reported.
func (s *Server) adminReloadSafety(c *gin.Context) error {
	if err := s.cfg.Filter.Reload(); err != nil {
		s.log.Error("safety reload", "err", err)
		return &apiError{Status: http.StatusUnprocessableEntity, Type: typeInvalidRequest, Code: "reload_failed",
			Message: "The blocklists were not reloaded (the old ones stay in force): " + err.Error()}
	}
	s.log.Info("safety blocklists reloaded")
	c.JSON(http.StatusOK, gin.H{"reloaded": true})
	return nil
}

// knownProfile refuses a key profile the filter does not define, so a typo
// fails when the key is made, not at its first request.
func (s *Server) knownProfile(name string) error {
	if name == "" || s.cfg.Filter == nil {
		return nil
	}
	if _, ok := s.cfg.Filter.Profile(name); !ok {
		return invalidf("profile", "Invalid 'profile': no safety profile %q is configured.", name)
	}
	return nil
}
