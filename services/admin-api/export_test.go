package adminapi

// MergePatch exposes mergePatch to the tests.
var MergePatch = mergePatch

// OperatorToken exposes the operator token a configuration gives.
func (c Config) OperatorToken() (string, error) { return c.operatorToken() }
