package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"

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

// filterChat scans every string of a chat request the chat template can
// render, on its way in: message contents (strings and text parts),
// reasoning, names, tool call ids (the calls' and the tool messages'),
// function names, tool call arguments parsed (keys and values, as the
// backend decodes them), and the tools' names, descriptions and parameter
// schemas (every key and string); fieldlist_test.go holds the list. A
// second pass scans each run of consecutive same-role messages joined, as
// the model receives them, for what spans texts (see scanRuns).
// Redactions are made in place; system and developer messages get the
// request's canary. A blocked prompt is refused before the model sees it.
func (s *Server) filterChat(c *gin.Context, req *chatRequest) (*filter.Request, error) {
	fr, err := s.startFilter(c)
	if fr == nil || err != nil {
		return nil, err
	}
	err = s.scanChat(fr, req)
	s.noteRedacted(c, req.Messages)
	return fr, err
}

// scanChat is filterChat's scan of req under fr.
func (s *Server) scanChat(fr *filter.Request, req *chatRequest) error {
	scan := func(text string) string {
		if text == "" {
			return text
		}
		return fr.Scan(filter.Input, text).Text
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		for _, t := range messageTexts(m) {
			t.set(scan(t.text))
		}
		m.Reasoning = scan(m.Reasoning)
		m.Name = scan(m.Name)
		m.ToolCallID = scan(m.ToolCallID)
		for j := range m.ToolCalls {
			m.ToolCalls[j].ID = scan(m.ToolCalls[j].ID)
			fn := &m.ToolCalls[j].Function
			fn.Name = scan(fn.Name)
			args, err := scanArguments(scan, fn.Arguments)
			if err != nil {
				return badArguments(fmt.Sprintf("messages[%d].tool_calls[%d].function.arguments", i, j))
			}
			fn.Arguments = args
		}
	}
	for i := range req.Tools {
		if err := scanTool(scan, &req.Tools[i]); err != nil {
			return invalidf(fmt.Sprintf("tools[%d]", i), "Invalid tool at 'tools[%d]'.", i)
		}
	}
	spanning, err := s.scanRuns(fr, req.Messages)
	if err != nil {
		return err
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		if m.Role != "system" && m.Role != "developer" {
			continue
		}
		if texts := messageTexts(m); len(texts) > 0 {
			last := texts[len(texts)-1]
			last.set(fr.Canary(last.text))
		}
	}
	cats := fr.Blocked(filter.Input)
	for _, c := range spanning {
		if !slices.Contains(cats, c) {
			cats = append(cats, c)
		}
	}
	if len(cats) > 0 {
		slices.Sort(cats)
		return contentFilterError("messages", cats)
	}
	return nil
}

// textSlot is one text of a message: its content string or one text part.
type textSlot struct {
	text string
	set  func(string)
}

// messageTexts returns the texts of m's content, in order.
func messageTexts(m *openai.Message) []textSlot {
	switch v := m.Content.(type) {
	case string:
		return []textSlot{{v, func(s string) { m.Content = s }}}
	case []any:
		var out []textSlot
		for _, p := range v {
			part, ok := p.(map[string]any)
			if !ok {
				continue
			}
			if t, ok := part["text"].(string); ok {
				out = append(out, textSlot{t, func(s string) { part["text"] = s }})
			}
		}
		return out
	}
	return nil
}

// badArguments refuses tool call arguments that are not a JSON object:
// the backend would decode them into something the filter did not see.
func badArguments(field string) error {
	return invalidf(field, "Invalid '%s': tool call arguments must be a JSON object encoded as a string.", field)
}

// scanArguments scans tool call arguments as the backend decodes them:
// every key and value, escapes resolved, numbers by their text. The text
// is returned as it came when nothing was redacted, else re-encoded.
func scanArguments(scan func(string) string, args string) (string, error) {
	var v map[string]any
	d := json.NewDecoder(strings.NewReader(args))
	d.UseNumber()
	if err := d.Decode(&v); err != nil || d.More() {
		return args, errors.New("not a JSON object")
	}
	out, changed := scanJSON(scan, v)
	if !changed {
		return args, nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return args, err
	}
	return string(b), nil
}

// scanTool scans a tool's name, description and parameter schema (every
// key and string of its JSON: property names, descriptions, enum values).
// The tool is rebuilt from the scanned JSON only when something changed.
func scanTool(scan func(string) string, t *api.Tool) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return err
	}
	out, changed := scanJSON(scan, v)
	if !changed {
		return nil
	}
	if b, err = json.Marshal(out); err != nil {
		return err
	}
	var nt api.Tool
	if err := json.Unmarshal(b, &nt); err != nil {
		return err
	}
	*t = nt
	return nil
}

// scanJSON scans every key and string of a decoded JSON value, and its
// numbers by their text (a card number sent as a number is still one).
// Maps are walked in key order, so placeholders are numbered the same
// way every time. It reports whether anything changed; a redacted number
// becomes its redacted text.
func scanJSON(scan func(string) string, v any) (any, bool) {
	switch x := v.(type) {
	case string:
		out := scan(x)
		return out, out != x
	case []any:
		changed := false
		for i := range x {
			var c bool
			x[i], c = scanJSON(scan, x[i])
			changed = changed || c
		}
		return x, changed
	case map[string]any:
		changed := false
		for _, k := range slices.Sorted(maps.Keys(x)) {
			val, c := scanJSON(scan, x[k])
			nk := scan(k)
			if nk != k {
				delete(x, k)
				c = true
			}
			x[nk] = val
			changed = changed || c
		}
		return x, changed
	}
	if t, ok := numberText(v); ok {
		if out := scan(t); out != t {
			return out, true
		}
	}
	return v, false
}

// numberText is a JSON number's text.
func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// scanRuns is the second pass over a chat's texts: each run of
// consecutive messages of one role (the parts of one message included) is
// joined as the model receives it and scanned again, so a phrase split
// over parts or messages ("ignore all" + "previous instructions") is
// found. The join is scanned by a scratch filter, so what one text shows
// alone is not counted twice; each finding that spans texts is then
// scanned in fr, which records it, and its redaction replaces the span:
// in the first text it touches, the rest removed from the others. It
// returns the categories of the blocking findings that span texts.
func (s *Server) scanRuns(fr *filter.Request, msgs []openai.Message) ([]string, error) {
	var (
		scratch *filter.Request
		blocked []string
	)
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && sameRole(msgs[j].Role, msgs[i].Role) {
			j++
		}
		var texts []textSlot
		for k := i; k < j; k++ {
			texts = append(texts, messageTexts(&msgs[k])...)
		}
		i = j
		if len(texts) < 2 {
			continue
		}
		if scratch == nil {
			var err error
			if scratch, err = s.cfg.Filter.Request(fr.Profile().Name); err != nil {
				return nil, fmt.Errorf("scratch filter: %w", err)
			}
		}
		var (
			joined strings.Builder
			starts = make([]int, len(texts)) // each text's offset in the join
		)
		for k, t := range texts {
			if k > 0 {
				joined.WriteString(textSeparator)
			}
			starts[k] = joined.Len()
			joined.WriteString(t.text)
		}
		all := joined.String()
		at := func(off int) int { // the text holding off (a separator: the one before)
			k, _ := slices.BinarySearch(starts, off+1)
			return k - 1
		}
		found := scratch.Scan(filter.Input, all).Findings
		slices.SortStableFunc(found, func(a, b filter.Finding) int { return a.Start - b.Start })
		last := len(all) + 1
		for _, f := range slices.Backward(found) {
			first, end := at(f.Start), at(f.End-1)
			if first == end || f.End > last {
				continue // within one text (already scanned), or overlapping one done
			}
			last = f.Start
			span := all[f.Start:f.End]
			r := fr.Scan(filter.Input, span)
			if (r.Blocked || f.Action == filter.Block) && !slices.Contains(blocked, f.Category) {
				blocked = append(blocked, f.Category)
			}
			if r.Text == span {
				continue
			}
			for k := first; k <= end; k++ {
				t := texts[k].text
				a := max(f.Start, starts[k]) - starts[k]
				b := min(f.End, starts[k]+len(t)) - starts[k]
				repl := ""
				if k == first {
					repl = r.Text
				}
				texts[k].text = t[:a] + repl + t[b:]
				texts[k].set(texts[k].text)
			}
		}
	}
	return blocked, nil
}

// textSeparator joins text parts (see joinTextParts) and, in scanRuns,
// consecutive messages.
const textSeparator = "\n"

// sameRole reports whether two messages reach the template as one role.
func sameRole(a, b string) bool {
	norm := func(r string) string {
		if r == "developer" {
			return "system"
		}
		return r
	}
	return norm(a) == norm(b)
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

// init sets a up for an admitted request and returns it.
func (a *answer) init(fr *filter.Request, adm *admission) *answer {
	*a = answer{fr: fr, chars: charCap{limit: adm.charCap}}
	if fr != nil {
		a.st = fr.Output()
	}
	return a
}

// tools filters the model's tool calls as answer text, redacting in
// place: each function name, and each argument key and value (numbers by
// their text), whole (Ollama sends a call complete). A blocking finding
// ends the answer, as one in its text does, and the calls must not be
// delivered.
func (a *answer) tools(calls []api.ToolCall) error {
	if a.fr == nil {
		return nil
	}
	blocked := false
	scan := func(text string) string {
		if text == "" {
			return text
		}
		res := a.fr.Scan(filter.Output, text)
		blocked = blocked || res.Blocked
		return res.Text
	}
	for i := range calls {
		fn := &calls[i].Function
		fn.Name = scan(fn.Name)
		args := api.NewToolCallFunctionArguments()
		for k, v := range fn.Arguments.All() {
			v, _ = scanJSON(scan, v)
			args.Set(scan(k), v)
		}
		fn.Arguments = args
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
