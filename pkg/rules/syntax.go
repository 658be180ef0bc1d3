package rules

import "strings"

// Translate rewrites m3ter's spelling of the boolean operators into CEL's:
// the words AND and OR, standing alone in upper case, become && and ||.
// String and bytes literals, in any CEL quoting, are copied unchanged, so
// `new.name == "AND"` keeps its literal. The rewrite keeps every column
// where it stands (AND becomes "&& ", OR becomes "||"), so error positions
// point into the text the tenant wrote.
func Translate(src string) string {
	if !strings.Contains(src, "AND") && !strings.Contains(src, "OR") {
		return src
	}
	var b strings.Builder
	b.Grow(len(src))
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			word := src[i:j]
			switch {
			case word == "AND":
				b.WriteString("&& ")
			case word == "OR":
				b.WriteString("||")
			case j < len(src) && (src[j] == '"' || src[j] == '\'') && isLiteralPrefix(word):
				end := literalEnd(src, j, strings.ContainsAny(word, "rR"))
				b.WriteString(src[i:end])
				j = end
			default:
				b.WriteString(word)
			}
			i = j
		case c == '"' || c == '\'':
			end := literalEnd(src, i, false)
			b.WriteString(src[i:end])
			i = end
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

func isIdentStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || ('0' <= c && c <= '9') }

// isLiteralPrefix reports whether word, right before a quote, marks a raw
// or bytes literal (r, b, rb, br in either case).
func isLiteralPrefix(word string) bool {
	switch strings.ToLower(word) {
	case "r", "b", "rb", "br":
		return true
	}
	return false
}

// literalEnd returns the index just past the literal whose opening quote is
// at start. An unterminated literal runs to the end; CEL reports it.
func literalEnd(src string, start int, raw bool) int {
	quote := src[start : start+1]
	if strings.HasPrefix(src[start:], strings.Repeat(quote, 3)) {
		quote = strings.Repeat(quote, 3)
	}
	for i := start + len(quote); i < len(src); i++ {
		if src[i] == '\\' && !raw {
			i++
			continue
		}
		if strings.HasPrefix(src[i:], quote) {
			return i + len(quote)
		}
	}
	return len(src)
}
