package notification_test

import (
	"testing"

	"github.com/heraldhq/herald/pkg/notification"
)

// BenchmarkRenderNative measures a sender's render of one notification in
// Herald's native JSON format, with the images of a Balance event.
func BenchmarkRenderNative(b *testing.B) {
	f, err := notification.NewFormat("native", "", "")
	if err != nil {
		b.Fatal(err)
	}
	n := notification.Sample()
	old, new := `{"accountId":"acct-17","id":"bal-acct-17","remaining":500,"total":1000,"unit":"MB","used":500}`,
		`{"accountId":"acct-17","id":"bal-acct-17","remaining":490,"total":1000,"unit":"MB","used":510}`
	n.Old, n.New = &old, &new
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.Render(n); err != nil {
			b.Fatal(err)
		}
	}
}
