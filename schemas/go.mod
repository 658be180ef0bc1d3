module github.com/heraldhq/herald/schemas

go 1.26.0

require github.com/twmb/avro v1.9.0
