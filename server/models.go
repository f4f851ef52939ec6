package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/models"
)

// ModelCatalog is what the HTTP layer needs to know of the backend's
// models. Resolve and EmbeddingWidth report a name that is no model with an
// error wrapping models.ErrNotFound.
type ModelCatalog interface {
	Resolve(ctx context.Context, name string) (models.Info, error)
	All(ctx context.Context) ([]models.Info, error)
	EmbeddingWidth(ctx context.Context, name string) (int, error)
	PromptOverhead(ctx context.Context, name string) (int, error)
}

var _ ModelCatalog = (*models.Catalog)(nil)

// ModelGuard decides whether a model the backend has may be served (see
// models.Guard): Check's error wraps models.ErrNotFound for a model that
// must look absent (outside [models] allow, a kept version), or
// models.ErrDigestMismatch for a pinned model whose digest differs.
type ModelGuard interface {
	Visible(name string) bool
	Check(ctx context.Context, m models.Info) error
}

var _ ModelGuard = (*models.Guard)(nil)

// modelInfo is one model as the backend lists it.
type modelInfo = models.Info

// catalog is the handlers' view of a ModelCatalog: a model that is not
// there is the 404 clients see.
type catalog struct {
	models ModelCatalog
	guard  ModelGuard // nil: every model is served
}

// newCatalog returns the handlers' view of mc, or, when mc is nil, of a
// models.Catalog over the backend reusing its list for ttl.
func newCatalog(mc ModelCatalog, b Backend, ttl time.Duration, guard ModelGuard) *catalog {
	if mc == nil {
		mc = models.NewCatalog(backendModels{b}, models.Config{TTL: ttl})
	}
	return &catalog{models: mc, guard: guard}
}

// backendModels lets a models.Catalog read a Backend's models. The server
// never asks what is loaded.
type backendModels struct{ Backend }

func (backendModels) ListRunning(context.Context) (*api.ProcessResponse, error) {
	return nil, errors.New("server: the backend does not list running models")
}

// resolve finds the model a request names.
func (c *catalog) resolve(ctx context.Context, name string) (modelInfo, error) {
	m, err := c.models.Resolve(ctx, name)
	if err == nil && c.guard != nil {
		err = c.guard.Check(ctx, m)
	}
	if err == nil {
		return m, nil
	}
	var mismatch *models.MismatchError // escapes: made only for an error
	switch {
	case errors.Is(err, models.ErrNotFound):
		return modelInfo{}, modelNotFound(name)
	case errors.As(err, &mismatch):
		return modelInfo{}, &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "model_digest_mismatch", Param: "model",
			Message: fmt.Sprintf("The model '%s' is not served: its files are not the version it is pinned to.", name)}
	}
	return m, err
}

// all lists the models that may be served.
func (c *catalog) all(ctx context.Context) ([]modelInfo, error) {
	list, err := c.models.All(ctx)
	if err != nil || c.guard == nil {
		return list, err
	}
	out := make([]modelInfo, 0, len(list))
	for _, m := range list {
		if c.guard.Visible(m.Name) {
			out = append(out, m)
		}
	}
	return out, nil
}

// embeddingWidth reports the width of a model's embeddings.
func (c *catalog) embeddingWidth(ctx context.Context, m modelInfo) (int, error) {
	w, err := c.models.EmbeddingWidth(ctx, m.Name)
	if errors.Is(err, models.ErrNotFound) {
		return 0, modelNotFound(m.Name)
	}
	return w, err
}

// promptOverhead is what the model's template adds to every prompt, in
// tokens at most (see models.Catalog.PromptOverhead): 0 when the backend
// cannot describe the model, which then refuses the request anyway.
func (c *catalog) promptOverhead(ctx context.Context, m modelInfo) int64 {
	n, err := c.models.PromptOverhead(ctx, m.Name)
	if err != nil {
		return 0
	}
	return int64(n)
}

// wireModel is an entry of GET /v1/models.
type wireModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type wireModelList struct {
	Object string      `json:"object"`
	Data   []wireModel `json:"data"`
}

func toWireModel(m modelInfo) wireModel {
	owner := model.ParseName(m.Name).Namespace
	if owner == "" {
		owner = "library"
	}
	return wireModel{ID: m.Name, Object: "model", Created: m.Modified.Unix(), OwnedBy: owner}
}

func (s *Server) listModels(c *gin.Context) error {
	list, err := s.models.all(c.Request.Context())
	if err != nil {
		return err
	}
	p := principal(c)
	out := wireModelList{Object: "list", Data: make([]wireModel, 0, len(list))}
	for _, m := range list {
		if p.AllowsModel(m.Name) {
			out.Data = append(out.Data, toWireModel(m))
		}
	}
	return s.respond(c, out, outcome{})
}

func (s *Server) getModel(c *gin.Context) error {
	id := strings.TrimPrefix(c.Param("id"), "/")
	if id == "" {
		return s.listModels(c)
	}
	m, err := s.models.resolve(c.Request.Context(), id)
	if err != nil {
		return err
	}
	if !principal(c).AllowsModel(m.Name) {
		return modelNotFound(id) // as OpenAI does for models a key cannot see
	}
	noteModel(c, m)
	return s.respond(c, toWireModel(m), outcome{})
}
