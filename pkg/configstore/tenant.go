package configstore

import (
	"slices"
	"strings"
)

// ListTenant returns every document of tenant, whatever its kind, ordered
// by kind and id: what goes when the tenant is deleted.
func (s *Store) ListTenant(tenant string) []Document {
	prefix := tenant + "/"
	s.mu.RLock()
	var out []Document
	for k, d := range s.docs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, d)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Document) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}
