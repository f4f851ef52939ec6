// Package safety will hold Warden's controls: API keys and quotas, content
// detectors and policies, the streaming output filter, the audit trail and
// probes. It knows nothing of HTTP; the server package calls into it.
//
// It is empty until the issues that build those controls land; the folder
// exists so the layout is the one DESIGN.md fixes.
package safety
