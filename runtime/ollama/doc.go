// Package ollama runs and talks to the Ollama backend: the supervised child process and a streaming client over its native API.
package ollama
