package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/models"
)

// catalog caches the backend's model list so resolving a model name costs no
// backend call on the hot path. A name that is not in the cache triggers one
// refresh before it is reported missing.
type catalog struct {
	backend Backend
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex
	fetched time.Time
	byName  map[string]modelInfo // canonical name → model
	list    []modelInfo
	widths  map[string]int // backend name → embedding width, filled lazily
}

// modelInfo is one model as the backend lists it.
type modelInfo struct {
	Name     string // the backend's name, e.g. "warden-demo:latest"
	Digest   string
	Modified time.Time
}

func newCatalog(b Backend, ttl time.Duration) *catalog {
	return &catalog{backend: b, ttl: ttl, now: time.Now, widths: map[string]int{}}
}

// resolve finds the model a request names.
func (c *catalog) resolve(ctx context.Context, name string) (modelInfo, error) {
	key, ok := models.Canonical(name)
	if !ok {
		return modelInfo{}, modelNotFound(name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.byName[key]; ok && c.now().Sub(c.fetched) < c.ttl {
		return m, nil
	}
	if err := c.refreshLocked(ctx); err != nil {
		return modelInfo{}, err
	}
	if m, ok := c.byName[key]; ok {
		return m, nil
	}
	return modelInfo{}, modelNotFound(name)
}

// all lists the models, refreshing a stale cache.
func (c *catalog) all(ctx context.Context) ([]modelInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byName == nil || c.now().Sub(c.fetched) >= c.ttl {
		if err := c.refreshLocked(ctx); err != nil {
			return nil, err
		}
	}
	return c.list, nil
}

func (c *catalog) refreshLocked(ctx context.Context) error {
	resp, err := c.backend.List(ctx)
	if err != nil {
		return fmt.Errorf("list models: %w", err)
	}
	byName := make(map[string]modelInfo, len(resp.Models))
	list := make([]modelInfo, 0, len(resp.Models))
	for _, m := range resp.Models {
		key, ok := models.Canonical(m.Name)
		if !ok {
			continue
		}
		mi := modelInfo{Name: m.Name, Digest: m.Digest, Modified: m.ModifiedAt}
		byName[key] = mi
		list = append(list, mi)
	}
	c.byName, c.list, c.fetched = byName, list, c.now()
	return nil
}

// embeddingWidth reports the width of a model's embeddings, read once from
// the backend's model info ("<arch>.embedding_length").
func (c *catalog) embeddingWidth(ctx context.Context, m modelInfo) (int, error) {
	key := m.Name + "@" + m.Digest
	c.mu.Lock()
	w, ok := c.widths[key]
	c.mu.Unlock()
	if ok {
		return w, nil
	}
	show, err := c.backend.Show(ctx, &api.ShowRequest{Model: m.Name})
	if err != nil {
		return 0, fmt.Errorf("show model: %w", err)
	}
	arch, _ := show.ModelInfo["general.architecture"].(string)
	switch v := show.ModelInfo[arch+".embedding_length"].(type) {
	case float64:
		w = int(v)
	case int:
		w = v
	}
	if w <= 0 {
		return 0, fmt.Errorf("show model %s: no embedding length", m.Name)
	}
	c.mu.Lock()
	c.widths[key] = w
	c.mu.Unlock()
	return w, nil
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
