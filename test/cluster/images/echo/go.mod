module ktctl.local/cluster/echo

go 1.26.0

require (
	golang.org/x/net v0.62.0
	google.golang.org/grpc v1.75.0
)

require (
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250707201910-8d1bb00bc6a7 // indirect
	google.golang.org/protobuf v1.36.6 // indirect
)
