package tokenizer

import "strings"

// addedToken is an entry of tokenizer.json's added_tokens. Added tokens are
// cut out of the text before normalisation and pre-tokenisation and map
// straight to their id, whatever add_special_tokens says.
type addedToken struct {
	ID      int
	Content string
	// Normalized tokens are matched in the normalised text, the others in
	// the raw text. CLIP's export has "<|startoftext|>" normalized and
	// "<|endoftext|>" not, so "<|STARTOFTEXT|>" is the special token while
	// "<|ENDOFTEXT|>" is ordinary text.
	Normalized bool
	// Special tokens are the ones decode drops with skip_special_tokens.
	Special bool
}

// tokenMatcher finds added tokens the way the Rust crate's Aho-Corasick
// automaton does (MatchKind::LeftmostLongest): the earliest match wins, the
// longest among those starting there.
type tokenMatcher struct {
	contents []string
	ids      []int
}

func newTokenMatcher(toks []addedToken, normalized bool, normalize func(string) string) *tokenMatcher {
	m := &tokenMatcher{}
	for _, t := range toks {
		if t.Normalized != normalized || t.Content == "" {
			continue
		}
		c := t.Content
		if normalized && normalize != nil {
			// The crate matches normalized tokens by their normalised form.
			c = normalize(c)
		}
		m.contents = append(m.contents, c)
		m.ids = append(m.ids, t.ID)
	}
	return m
}

// segments calls fn for each stretch of s in order: ordinary text with
// id -1, or an added token with its id.
func (m *tokenMatcher) segments(s string, fn func(text string, id int)) {
	for len(s) > 0 {
		start, end, id := m.find(s)
		if start < 0 {
			fn(s, -1)
			return
		}
		if start > 0 {
			fn(s[:start], -1)
		}
		fn(s[start:end], id)
		s = s[end:]
	}
}

func (m *tokenMatcher) find(s string) (start, end, id int) {
	start = -1
	for i, c := range m.contents {
		// Only a match at or before the current best can win, so each
		// search is bounded by it.
		limit := len(s)
		if start >= 0 {
			limit = min(len(s), start+len(c))
		}
		j := strings.Index(s[:limit], c)
		if j < 0 {
			continue
		}
		if start < 0 || j < start || (j == start && len(c) > end-start) {
			start, end, id = j, j+len(c), m.ids[i]
		}
	}
	return start, end, id
}
