package rules

import "testing"

func TestTranslate(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a AND b`, `a &&  b`},
		{`a OR b`, `a || b`},
		{`(x >= 1) AND ((y <= 2) OR (z == null))`, `(x >= 1) &&  ((y <= 2) || (z == null))`},
		{`new.name == "AND" AND new.kind == 'OR'`, `new.name == "AND" &&  new.kind == 'OR'`},
		{`new.s == "say \"AND\" here" OR true`, `new.s == "say \"AND\" here" || true`},
		{`new.s == """AND "quoted" OR""" AND true`, `new.s == """AND "quoted" OR""" &&  true`},
		{`new.s == r"\" AND x`, `new.s == r"\" &&  x`},
		{`new.s == b'OR' OR false`, `new.s == b'OR' || false`},
		{`new.ANDROID == new.ORDER`, `new.ANDROID == new.ORDER`},
		{`new.and AND new.or`, `new.and &&  new.or`},
		{`a&&b`, `a&&b`},
		{`"unterminated AND`, `"unterminated AND`},
	}
	for _, tt := range tests {
		if got := Translate(tt.in); got != tt.want {
			t.Errorf("Translate(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Translate(tt.in); len(got) != len(tt.in) {
			t.Errorf("Translate(%q) changed the length: columns would move", tt.in)
		}
	}
}
