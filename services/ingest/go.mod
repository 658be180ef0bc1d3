module github.com/heraldhq/herald/services/ingest

go 1.26.0

require (
	github.com/heraldhq/herald/pkg v0.0.0
	github.com/oklog/ulid/v2 v2.1.2
	github.com/twmb/avro v1.9.0
	github.com/twmb/franz-go v1.22.2
	github.com/twmb/franz-go/pkg/kadm v1.19.0
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	github.com/twmb/franz-go/pkg/sr v1.8.0
)

require (
	github.com/caarlos0/env/v11 v11.4.2 // indirect
	github.com/heraldhq/herald/schemas v0.0.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.0 // indirect
	github.com/twmb/franz-go/plugin/kslog v1.0.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
)

replace (
	github.com/heraldhq/herald/pkg => ../../pkg
	github.com/heraldhq/herald/schemas => ../../schemas
)
