package filter

import (
	"maps"
	"slices"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/classifier"
	"github.com/warden-llm/warden/safety/detect/control"
	"github.com/warden-llm/warden/safety/detect/encoded"
	"github.com/warden-llm/warden/safety/detect/norm"
	"github.com/warden-llm/warden/safety/detect/phrase"
	"github.com/warden-llm/warden/safety/detect/pii"
	"github.com/warden-llm/warden/safety/detect/secret"
)

// DetectorOptions configures the built-in detector set.
type DetectorOptions struct {
	// PhoneRegions are the regions whose national phone formats count (nil:
	// pii.DefaultRegions).
	PhoneRegions []string
	// PrivateIPs makes private, loopback and other non-public addresses
	// count as ip findings too.
	PrivateIPs bool
	// Blocklists maps a category name (e.g. a Llama Guard code "S10") to a
	// term file, one term per line.
	Blocklists map[string]string
}

// Detectors returns a builder of the full built-in detector set, for
// Config.Detectors: PII, secrets, injection (the phrase grammar, and the
// classifier, which judges a prompt whole and an answer once it has
// ended), hidden Unicode, confusables,
// terminal control sequences, encoded payloads (decoded and scanned with
// the secret, PII, injection and blocklist detectors, so a finding inside
// takes its own category) and the blocklists, read from their files on
// every call.
func Detectors(o DetectorOptions) func() ([]detect.Detector, error) {
	return func() ([]detect.Detector, error) {
		pd := pii.New(pii.Options{Regions: o.PhoneRegions, PrivateIPs: o.PrivateIPs})
		phrases := []detect.Detector{phrase.NewInjection()}
		if len(o.Blocklists) > 0 {
			bl, err := phrase.LoadBlocklist(o.Blocklists)
			if err != nil {
				return nil, err
			}
			phrases = append(phrases, bl)
		}
		sec := secret.New()
		var ds, inner []detect.Detector
		ds = append(append(append(ds, pd...), sec), phrases...)
		inner = append(append(append(inner, sec), pd...), phrases...)
		ds = append(ds, norm.NewHiddenUnicode(), norm.NewConfusable(), control.New(), encoded.New(inner), classifier.New())
		return ds, nil
	}
}

// BlocklistCategories lists the categories of the configured blocklists.
func (o DetectorOptions) BlocklistCategories() []string {
	return slices.Sorted(maps.Keys(o.Blocklists))
}
