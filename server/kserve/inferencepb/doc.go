// Package inferencepb is the Go code generated from Triton's KServe v2 gRPC
// protocol: grpc_service.proto and model_config.proto, package inference,
// kept field for field as NVIDIA publishes them (BSD-3, see LICENSE), so
// that any client generated from the official files talks to imgserve.
// Regenerate with scripts/gen-proto.sh (make proto).
package inferencepb
