package catalog_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/catalog"
)

// TestReadmeTableListsTheCatalog keeps the README's catalog table true:
// one row per entry, with its exclusions, as readmeRow writes it.
func TestReadmeTableListsTheCatalog(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var missing []string
	for _, e := range catalog.New().Entries() {
		if row := readmeRow(e); !strings.Contains(readme, "\n"+row+"\n") {
			missing = append(missing, row)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the README's catalog table lacks these rows:\n%s", strings.Join(missing, "\n"))
	}
}

func readmeRow(e *catalog.Entry) string {
	watches := strings.Join(e.On.EntityTypes, ", ")
	if watches == "" {
		watches = "`entityType`"
	}
	if len(e.On.Operations) > 0 {
		watches += ": " + strings.Join(e.On.Operations, ", ")
	}
	params := make([]string, 0, len(e.Parameters))
	for _, p := range e.Parameters {
		switch {
		case p.Required():
			params = append(params, "`"+p.Name+"` (required)")
		default:
			d, _ := json.Marshal(p.Default)
			params = append(params, fmt.Sprintf("`%s` = %s", p.Name, d))
		}
	}
	if len(params) == 0 {
		params = []string{"—"}
	}
	exclusions := strings.Join(e.Exclusions, "; ")
	if exclusions == "" {
		exclusions = "—"
	}
	return fmt.Sprintf("| %s | `%s` | `%s` | %s | %s | %s | %s |",
		e.Vendor, e.Name, e.Notification.State, e.Trigger, watches, strings.Join(params, ", "), exclusions)
}
