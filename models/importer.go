package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/ollama/ollama/api"
)

// demoParameters are the demo model's default options; a request's own
// options override them. The model may run for hundreds of tokens before it
// picks EOS, so it carries an output cap. It is far too small to gain from
// threads: with one it generates thousands of tokens per second, while two
// threads synchronising on a busy two-core machine crawl at tens.
var demoParameters = map[string]any{
	"num_predict": 512,
	"num_thread":  1,
}

// ImportDemo uploads the demo GGUF to the backend as a blob and creates the
// model DemoName from it, with DemoTemplate. Importing again replaces the model with an identical one.
func ImportDemo(ctx context.Context, c *api.Client) error {
	b, err := DemoGGUF()
	if err != nil {
		return fmt.Errorf("build demo model: %w", err)
	}
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
	if err := c.CreateBlob(ctx, digest, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("upload demo blob: %w", err)
	}

	stream := false
	req := &api.CreateRequest{
		Model:      DemoName,
		Stream:     &stream,
		Files:      map[string]string{DemoName + ".gguf": digest},
		Template:   DemoTemplate,
		Parameters: demoParameters,
	}
	if err := c.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		return fmt.Errorf("create demo model: %w", err)
	}
	return nil
}

// EnsureDemo imports the demo model when the backend has no models at all,
// and reports whether it did. A backend that holds any model, the demo or
// another, is left alone.
func EnsureDemo(ctx context.Context, c *api.Client) (imported bool, err error) {
	list, err := c.List(ctx)
	if err != nil {
		return false, fmt.Errorf("list models: %w", err)
	}
	if len(list.Models) > 0 {
		return false, nil
	}
	if err := ImportDemo(ctx, c); err != nil {
		return false, err
	}
	return true, nil
}
