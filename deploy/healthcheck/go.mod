module github.com/heraldhq/herald/deploy/healthcheck

go 1.26.0
