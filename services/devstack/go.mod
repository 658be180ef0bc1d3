module github.com/heraldhq/herald/services/devstack

go 1.26.0

require (
	github.com/heraldhq/herald/pkg v0.0.0
	github.com/heraldhq/herald/schemas v0.0.0
)

replace (
	github.com/heraldhq/herald/pkg => ../../pkg
	github.com/heraldhq/herald/schemas => ../../schemas
)
