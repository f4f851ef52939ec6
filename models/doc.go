// Package models holds what Warden knows of models: the one canonical form
// of a model's name (Canonical), the catalog of the backend's models with
// what Ollama's load does with each (Catalog: resolution, slots, VRAM need,
// embedding width), and the tiny built-in demo model that lets a machine
// without internet serve real completions, with the code that imports it
// into the Ollama backend.
package models
