package notification

import (
	stdjson "encoding/json"
	"testing"
)

// TestNativePayloadIsWhatEncodingJSONWrites pins the native payload's text:
// byte for byte what encoding/json writes for the same notification, images
// compacted and HTML-escaped, so that receivers see the same body from
// release to release.
func TestNativePayloadIsWhatEncodingJSONWrites(t *testing.T) {
	full := Sample()
	spaced, html := `{ "remaining" : 150,  "note": "<a & b>" }`, `{"unit":"MB\u2028","x":[1e21, 0.1]}`
	full.Old, full.New = &spaced, &html
	full.Fields = map[string]string{"b": `"<b>"`, "a": "1.5", "list": `[1, 2]`}
	bare := Sample()
	bare.Old, bare.PrevState, bare.Threshold, bare.Fields = nil, nil, nil, nil
	bare.Event.AccountID, bare.Event.DeviceID, bare.Event.CorrelationID = nil, nil, nil
	for name, n := range map[string]*Notification{"every field": full, "optional fields absent": bare} {
		t.Run(name, func(t *testing.T) {
			got, err := n.JSON()
			if err != nil {
				t.Fatal(err)
			}
			want, err := stdjson.Marshal(n.payload())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("payload\n got %s\nwant %s", got, want)
			}
		})
	}
}
