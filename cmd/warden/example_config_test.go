package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// exampleConfig is the annotated config at the repository root that
// docs/configuration.md points at.
const exampleConfig = "../../warden.example.toml"

// TestExampleConfigIsTheDefaults loads warden.example.toml through the real
// loader (unknown settings are errors there) and checks that it validates
// and changes nothing: the example shows the defaults as the code has them.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	env := envMap(map[string]string{"HOME": "/home/u"})
	cfg, err := loadConfig(exampleConfig, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	want := defaultConfig(env)
	emptyToNil(reflect.ValueOf(&cfg).Elem())
	emptyToNil(reflect.ValueOf(&want).Elem())
	for _, d := range diffFields(reflect.ValueOf(cfg), reflect.ValueOf(want), "Config") {
		t.Errorf("warden.example.toml differs from the default in code: %s", d)
	}
}

// diffFields lists the fields where got and want differ, by Go path.
func diffFields(got, want reflect.Value, path string) []string {
	if got.Kind() == reflect.Struct {
		var out []string
		for i := range got.NumField() {
			if got.Type().Field(i).IsExported() {
				out = append(out, diffFields(got.Field(i), want.Field(i), path+"."+got.Type().Field(i).Name)...)
			}
		}
		return out
	}
	if reflect.DeepEqual(got.Interface(), want.Interface()) {
		return nil
	}
	return []string{fmt.Sprintf("%s = %v, want %v", path, got.Interface(), want.Interface())}
}

// exampleLine is a commented-out setting or table header: "#" directly
// followed by the TOML, unlike prose comments ("# ...").
var exampleLine = regexp.MustCompile(`^#([^\s#].*)$`)

// uncommentExamples turns every commented-out setting of the example on.
func uncommentExamples(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if m := exampleLine.FindStringSubmatch(l); m != nil {
			lines[i] = m[1]
		}
	}
	return strings.Join(lines, "\n")
}

// TestExampleConfigNamesEverySetting checks that every setting the Config
// struct defines appears in the example, active or as a commented-out
// example, so a new setting cannot ship without its line. With the examples
// uncommented the file must still load and validate (bar the certificate
// files, which must exist).
func TestExampleConfigNamesEverySetting(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	full := uncommentExamples(string(b))
	path := filepath.Join(t.TempDir(), "full.toml")
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, envMap(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatalf("the example with its commented-out settings turned on: %v", err)
	}
	for i := range cfg.Audit.Sinks {
		s := &cfg.Audit.Sinks[i]
		s.CAFile, s.CertFile, s.KeyFile = "", "", ""
	}
	for i := range cfg.Alerts.Sinks {
		s := &cfg.Alerts.Sinks[i]
		s.CAFile, s.CertFile, s.KeyFile = "", "", ""
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the example with its commented-out settings turned on does not validate: %v", err)
	}

	var decoded Config
	md, err := toml.Decode(full, &decoded)
	if err != nil {
		t.Fatal(err)
	}
	var present [][]string
	for _, k := range md.Keys() {
		present = append(present, k)
	}
	settings := tomlPaths(reflect.TypeFor[Config](), nil)
	if len(settings) < 60 {
		t.Fatalf("found only %d settings in Config: %v", len(settings), settings)
	}
	for _, want := range settings {
		if !slices.ContainsFunc(present, func(k []string) bool { return pathMatches(want, k) }) {
			t.Errorf("setting %s is not in warden.example.toml: add it with its default and a comment (and to docs/configuration.md)",
				strings.Join(want, "."))
		}
	}
}

// tomlPaths lists the TOML path of every setting under t. A table that
// holds named entries (a map of tables) contributes "*" for the name; a map
// of plain values (e.g. runtime.model_slots) is one setting. A table type
// met a second time (alerts.sink is an audit.sink) is listed once more only
// as its own path: its settings are shown at the first place.
func tomlPaths(t reflect.Type, prefix []string) [][]string {
	return tomlPathsSeen(t, prefix, map[reflect.Type]bool{})
}

func tomlPathsSeen(t reflect.Type, prefix []string, seen map[reflect.Type]bool) [][]string {
	var out [][]string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := append(slices.Clip(prefix), name)
		ft := f.Type
		var table reflect.Type // the element type of a list or map of tables
		switch {
		case ft.Kind() == reflect.Struct && hasTOMLTags(ft):
			out = append(out, tomlPathsSeen(ft, path, seen)...)
			continue
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			table = ft.Elem()
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			table, path = ft.Elem(), append(path, "*")
		default:
			out = append(out, path)
			continue
		}
		if seen[table] {
			out = append(out, path)
			continue
		}
		seen[table] = true
		out = append(out, tomlPathsSeen(table, path, seen)...)
	}
	return out
}

func hasTOMLTags(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}

// pathMatches reports whether key is the setting want ("*" matches any one
// name).
func pathMatches(want, key []string) bool {
	if len(want) != len(key) {
		return false
	}
	for i := range want {
		if want[i] != "*" && want[i] != key[i] {
			return false
		}
	}
	return true
}

// emptyToNil sets empty slices and maps under v to nil, so that a list
// written as [] compares equal to a default left unset.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 && !v.IsNil() && v.CanSet() {
			v.SetZero()
		}
	}
}

func TestTomlPathsSeesNestedSettings(t *testing.T) {
	var paths []string
	for _, p := range tomlPaths(reflect.TypeFor[Config](), nil) {
		paths = append(paths, strings.Join(p, "."))
	}
	for _, want := range []string{"data_dir", "server.listen", "runtime.model_slots", "audit.sink.ca_file",
		"alerts.sink", "safety.profiles.*.blocklist_action", "gpu.vram_headroom"} {
		if !slices.Contains(paths, want) {
			t.Errorf("%s missing from %v", want, paths)
		}
	}
	if slices.Contains(paths, "alerts.sink.url") {
		t.Errorf("alerts.sink's settings listed again after audit.sink's: %v", paths)
	}
}
