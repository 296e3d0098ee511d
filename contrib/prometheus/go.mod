module github.com/herdcap/herdcap/contrib/prometheus

go 1.26.0

replace github.com/herdcap/herdcap => ../..

require (
	github.com/herdcap/herdcap v0.0.0-00010101000000-000000000000 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
)
