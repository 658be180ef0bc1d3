package notification

import (
	"math"
	"time"
)

// jsonReady returns v ready for the JSON encoder: every NaN and ±Infinity
// replaced by nil, which JSON writes as null (Avro doubles and CEL results
// may hold them, and JSON has no way to say them), and every time.Duration
// (an Avro time-millis or time-micros) as its nanoseconds, the number
// encoding/json writes for it, where the faster encoder would write text.
// v is copied only where it holds one of them; otherwise v itself is
// returned.
func jsonReady(v any) any {
	if !needsRewrite(v) {
		return v
	}
	switch x := v.(type) {
	case float64, float32:
		return nil
	case time.Duration:
		return int64(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonReady(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonReady(e)
		}
		return out
	}
	return v
}

func needsRewrite(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x) || math.IsInf(x, 0)
	case float32:
		return math.IsNaN(float64(x)) || math.IsInf(float64(x), 0)
	case time.Duration:
		return true
	case map[string]any:
		for _, e := range x {
			if needsRewrite(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if needsRewrite(e) {
				return true
			}
		}
	}
	return false
}
