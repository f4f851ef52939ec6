package server

import (
	"bytes"
	"encoding/json"
	"testing"
)

// chunkAsMarshal is the text delta as json.Marshal writes the chatChunk.
func chunkAsMarshal(t *testing.T, c chatChunk, text string) []byte {
	t.Helper()
	c.Choices = []chatChunkChoice{{Delta: chatDelta{Content: &text}}}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var chunkTexts = []string{
	"", "a", "Hello, world.", `"quoted" \back\slash/`, "<b>&amp;</b>", "tab\tnew\nline\rcr\bback\ffeed",
	"\x00\x01\x1f\x7f", "é ü 日本語 🙂", "\u2028\u2029", "\xff\xfe bad \xc3", "\xed\xa0\x80", "a\u00a0b", "</script>",
}

func TestContentChunkAsMarshal(t *testing.T) {
	for _, c := range []chatChunk{
		{ID: "chatcmpl-abc", Object: "chat.completion.chunk", Created: 1796610671, Model: "demo", SystemFingerprint: systemFingerprint},
		{ID: "chatcmpl-<&>", Object: "chat.completion.chunk", Created: -1, Model: "llama3.2:1b \u2028\xff", SystemFingerprint: systemFingerprint},
	} {
		var cc contentChunk
		for _, text := range chunkTexts {
			if got, want := cc.event(&c, text), chunkAsMarshal(t, c, text); !bytes.Equal(got, want) {
				t.Errorf("%q:\n got %s\nwant %s", text, got, want)
			}
		}
	}
}

// FuzzContentChunk: for any text, the framed chunk is json.Marshal's.
func FuzzContentChunk(f *testing.F) {
	for _, text := range chunkTexts {
		f.Add("demo", text)
	}
	f.Fuzz(func(t *testing.T, model, text string) {
		c := chatChunk{ID: "chatcmpl-x", Object: "chat.completion.chunk", Created: 1, Model: model, SystemFingerprint: systemFingerprint}
		var cc contentChunk
		if got, want := cc.event(&c, text), chunkAsMarshal(t, c, text); !bytes.Equal(got, want) {
			t.Fatalf("%q %q:\n got %s\nwant %s", model, text, got, want)
		}
	})
}
