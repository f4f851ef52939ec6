// Package models holds what Warden knows of models: the one canonical form
// of a model's name (Canonical), the catalog of the backend's models with
// what Ollama's load does with each (Catalog: resolution, slots, VRAM need,
// embedding width), the governed supply chain (Governor: allowlist, pull
// and GGUF import with progress, kept versions and rollback, pins,
// provenance, verification of the blobs on disk; Guard: what may be
// served), and the tiny built-in demo model that lets a machine without
// internet serve real completions, with the code that imports it into the
// Ollama backend.
package models
