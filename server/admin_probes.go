package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/safety/probe"
)

// ProbeRuns lists stored probe runs, newest first.
type ProbeRuns interface {
	List(ctx context.Context, limit int) ([]probe.RunInfo, error)
}

var _ ProbeRuns = probe.Store{}

// adminProbes lists the stored probe runs (GET /admin/probes?limit=N),
// newest first, with their per-category results; answers stay in the
// database (`warden probe report`).
func (s *Server) adminProbes(c *gin.Context) error {
	limit := 50
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "invalid_value", Param: "limit",
				Message: "limit must be a whole number from 1 to 1000."}
		}
		limit = n
	}
	runs, err := s.cfg.Probes.List(c.Request.Context(), limit)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": runs})
	return nil
}
