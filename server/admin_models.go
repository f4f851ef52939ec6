package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/models"
)

// ModelAdmin is what /admin/models needs: the `warden models` commands'
// operations (models.Governor).
type ModelAdmin interface {
	List(ctx context.Context) ([]models.Listed, error)
	Show(ctx context.Context, name string) (models.Shown, error)
	Pull(ctx context.Context, actor, name string, insecure bool, fn models.ProgressFunc) (models.Change, error)
	Remove(ctx context.Context, actor, name string) error
	Load(ctx context.Context, name string) error
	Unload(ctx context.Context, name string) error
	Pin(ctx context.Context, actor, name, digest string) (string, error)
	Unpin(ctx context.Context, actor, name string) error
	History(ctx context.Context, name string) ([]models.Version, error)
	Rollback(ctx context.Context, actor, name, to string) (models.Change, error)
	Verify(ctx context.Context, name string, fn models.ProgressFunc) ([]models.ModelVerify, error)
	Manifest(ctx context.Context) ([]models.Record, error)
	Annotate(ctx context.Context, actor, name, note string) error
}

var _ ModelAdmin = (*models.Governor)(nil)

// adminModelRoutes registers /admin/models on the admin group a. Model
// names go in the query (?name=) or the JSON body ("name"), since they
// hold '/' and ':'.
func (s *Server) adminModelRoutes(a *gin.RouterGroup) {
	a.GET("/models", s.h(s.adminModelList))
	a.GET("/models/show", s.h(s.adminModelShow))
	a.GET("/models/history", s.h(s.adminModelHistory))
	a.GET("/models/manifest", s.h(s.adminModelManifest))
	a.POST("/models/pull", s.h(s.adminModelPull))
	a.POST("/models/verify", s.h(s.adminModelVerify))
	a.POST("/models/remove", s.h(s.adminModelAction("remove")))
	a.POST("/models/load", s.h(s.adminModelAction("load")))
	a.POST("/models/unload", s.h(s.adminModelAction("unload")))
	a.POST("/models/pin", s.h(s.adminModelAction("pin")))
	a.POST("/models/unpin", s.h(s.adminModelAction("unpin")))
	a.POST("/models/rollback", s.h(s.adminModelAction("rollback")))
	a.POST("/models/annotate", s.h(s.adminModelAction("annotate")))
}

// modelAdminError maps the governor's errors to the API's shape; a
// backend or registry failure is a 502 that names it.
func modelAdminError(err error) error {
	var mismatch *models.MismatchError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, models.ErrBadName), errors.Is(err, models.ErrKept):
		return invalidf("name", "%s", capitalize(err.Error())+".")
	case errors.Is(err, models.ErrNotAllowed):
		return &apiError{Status: http.StatusForbidden, Type: typeInvalidRequest, Code: "model_not_allowed", Param: "name", Message: capitalize(err.Error()) + "."}
	case errors.Is(err, models.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: codeModelNotFound, Param: "name", Message: capitalize(err.Error()) + "."}
	case errors.Is(err, models.ErrNoVersion):
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "version_not_found", Param: "to", Message: capitalize(err.Error()) + "."}
	case errors.As(err, &mismatch):
		return &apiError{Status: http.StatusConflict, Type: typeInvalidRequest, Code: "model_digest_mismatch", Param: "name", Message: capitalize(err.Error()) + "."}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return &apiError{Status: http.StatusBadGateway, Type: typeServer, Code: "backend_error", Message: capitalize(err.Error()) + "."}
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func (s *Server) adminModelList(c *gin.Context) error {
	list, err := s.cfg.ModelAdmin.List(c.Request.Context())
	if err != nil {
		return modelAdminError(err)
	}
	if list == nil {
		list = []models.Listed{}
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": list})
	return nil
}

func queryName(c *gin.Context) (string, error) {
	name := c.Query("name")
	if name == "" {
		return "", invalidf("name", "Missing 'name': the model's name, e.g. ?name=llama3.2:3b.")
	}
	return name, nil
}

func (s *Server) adminModelShow(c *gin.Context) error {
	name, err := queryName(c)
	if err != nil {
		return err
	}
	m, err := s.cfg.ModelAdmin.Show(c.Request.Context(), name)
	if err != nil {
		return modelAdminError(err)
	}
	c.JSON(http.StatusOK, m)
	return nil
}

func (s *Server) adminModelHistory(c *gin.Context) error {
	name, err := queryName(c)
	if err != nil {
		return err
	}
	h, err := s.cfg.ModelAdmin.History(c.Request.Context(), name)
	if err != nil {
		return modelAdminError(err)
	}
	if h == nil {
		h = []models.Version{}
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": h})
	return nil
}

func (s *Server) adminModelManifest(c *gin.Context) error {
	recs, err := s.cfg.ModelAdmin.Manifest(c.Request.Context())
	if err != nil {
		return modelAdminError(err)
	}
	c.JSON(http.StatusOK, gin.H{"generated_at": time.Now().UTC(), "models": recs})
	return nil
}

// modelBody is the JSON body of the POST /admin/models routes.
type modelBody struct {
	Name     string `json:"name"`
	Insecure bool   `json:"insecure"` // pull: a registry over plain HTTP
	Digest   string `json:"digest"`   // pin: default the current digest
	To       string `json:"to"`       // rollback: default the previous version
	Note     string `json:"note"`     // annotate
}

func decodeModelBody(c *gin.Context, nameRequired bool) (modelBody, error) {
	var b modelBody
	if c.Request.ContentLength != 0 || nameRequired {
		if err := decodeJSON(c.Request.Body, &b); err != nil {
			return b, err
		}
	}
	if nameRequired && b.Name == "" {
		return b, invalidf("name", "Missing 'name': the model's name.")
	}
	return b, nil
}

func (s *Server) adminModelAction(action string) func(*gin.Context) error {
	return func(c *gin.Context) error {
		b, err := decodeModelBody(c, true)
		if err != nil {
			return err
		}
		ctx, actor, ma := c.Request.Context(), adminActor(c), s.cfg.ModelAdmin
		out := gin.H{"name": b.Name, "action": action}
		switch action {
		case "remove":
			err = ma.Remove(ctx, actor, b.Name)
		case "load":
			err = ma.Load(ctx, b.Name)
		case "unload":
			err = ma.Unload(ctx, b.Name)
		case "pin":
			var d string
			d, err = ma.Pin(ctx, actor, b.Name, b.Digest)
			out["digest"] = d
		case "unpin":
			err = ma.Unpin(ctx, actor, b.Name)
		case "annotate":
			err = ma.Annotate(ctx, actor, b.Name, b.Note)
		case "rollback":
			var ch models.Change
			if ch, err = ma.Rollback(ctx, actor, b.Name, b.To); err == nil {
				c.JSON(http.StatusOK, ch)
				return nil
			}
		}
		if err != nil {
			return modelAdminError(err)
		}
		c.JSON(http.StatusOK, out)
		return nil
	}
}

// ndjson streams progress objects, one per line, each write bounded by
// the write timeout; the first line commits the 200.
type ndjson struct {
	c       *gin.Context
	rc      *http.ResponseController
	timeout time.Duration
	started bool
}

func (s *Server) newNDJSON(c *gin.Context) *ndjson {
	return &ndjson{c: c, rc: http.NewResponseController(c.Writer), timeout: s.cfg.WriteTimeout}
}

func (n *ndjson) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if !n.started {
		n.started = true
		n.c.Header("Content-Type", "application/x-ndjson")
		n.c.Header("X-Accel-Buffering", "no")
		n.c.Status(http.StatusOK)
	}
	if n.timeout > 0 {
		_ = n.rc.SetWriteDeadline(time.Now().Add(n.timeout))
	}
	if _, err := n.c.Writer.Write(append(b, '\n')); err != nil {
		return err
	}
	return n.rc.Flush()
}

// end writes the last line: the result with status "success", or the
// error in the API's shape once the stream has started.
func (n *ndjson) end(result any, err error) error {
	if err != nil {
		err = modelAdminError(err)
		if !n.started {
			return err
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{Status: http.StatusInternalServerError, Type: typeServer, Message: "The operation failed."}
		}
		return n.line(map[string]any{"status": "error", "error": ae.body().Error})
	}
	return n.line(result)
}

// adminModelPull pulls a model through the backend, streaming its
// progress as NDJSON: Ollama's progress objects, then a last line with
// status "success" and the change (or "error" and the error). A client
// that goes away cancels the pull.
func (s *Server) adminModelPull(c *gin.Context) error {
	b, err := decodeModelBody(c, true)
	if err != nil {
		return err
	}
	out := s.newNDJSON(c)
	ch, err := s.cfg.ModelAdmin.Pull(c.Request.Context(), adminActor(c), b.Name, b.Insecure, func(p models.Progress) error { return out.line(p) })
	return out.end(struct {
		Status string `json:"status"`
		models.Change
	}{"success", ch}, err)
}

// adminModelVerify re-hashes a model's blobs (every model's without a
// name), streaming progress as NDJSON and the verdicts last.
func (s *Server) adminModelVerify(c *gin.Context) error {
	b, err := decodeModelBody(c, false)
	if err != nil {
		return err
	}
	out := s.newNDJSON(c)
	res, err := s.cfg.ModelAdmin.Verify(c.Request.Context(), b.Name, func(p models.Progress) error { return out.line(p) })
	ok := true
	for _, m := range res {
		ok = ok && m.OK
	}
	return out.end(gin.H{"status": "done", "ok": ok, "models": res}, err)
}
