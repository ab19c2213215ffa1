//! Transport adapters: decode a request, call the [`Service`](crate::service::Service),
//! encode the reply. No operation is implemented here; `error` is the one place
//! where service errors become HTTP statuses (and gRPC codes).

pub mod error;
pub mod grpc;
pub mod rest;
